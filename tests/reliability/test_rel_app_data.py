"""Issue 6, bad input through the app: the Data page (AppTest, real ``st.file_uploader`` uploads) gets
every bad file, hostile archives, odd labels, a full disk, and server folders outside the allowed ones.
After each, the page shows what was skipped and why (or a clear error), never an exception, and nothing
is written outside the session's workspace.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest
from helpers.apptest import page_text
from helpers.bad_files import changes_outside, file_cases, good_files, snapshot, zip_bytes
from helpers.images import noise_png
from helpers.patience import patience

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    from ui import state

    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    monkeypatch.delenv("TRANSFER_ALLOWED_DATA_DIRS", raising=False)
    state.settings.cache_clear()
    yield tmp_path / "home"
    state.settings.cache_clear()


@pytest.fixture
def data_page(home):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=patience(120))
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    return at


def _skipped_tables(at) -> list:
    return [f.value for f in at.dataframe if list(f.value.columns) == ["file", "reason"]]


def _upload(at, per_class: dict[str, list[tuple[str, bytes]]]) -> None:
    """Name the classes and upload files into each (adding class slots as needed), then create."""
    while len(at.session_state["upload_classes"]) < len(per_class):
        at.button(key="upload_add_class").click().run()
    ids = [c["id"] for c in at.session_state["upload_classes"]]
    for class_id, (label, files) in zip(ids, per_class.items(), strict=False):
        at.text_input(key=f"upload_class_name_{class_id}").set_value(label)
        at.file_uploader(key=f"upload_class_files_{class_id}").set_value(
            [(name, data, "application/octet-stream") for name, data in files]
        )
    at.run()
    at.button(key="upload_create").click().run()
    assert not at.exception, at.exception


def _upload_zip(at, archive: bytes, name: str = "upload.zip") -> None:
    at.file_uploader(key="zip_file").set_value((name, archive, "application/zip"))
    at.run()
    at.button(key="zip_create").click().run()
    assert not at.exception, at.exception


def test_every_bad_file_uploaded_is_listed_with_its_reason_and_the_rest_loads(data_page, home) -> None:
    at = data_page
    cases = file_cases()
    good = good_files()
    cats = [(name.split("/")[1], data) for name, data in good.items() if name.startswith("cats/")]
    dogs = [(name.split("/")[1], data) for name, data in good.items() if name.startswith("dogs/")]
    before = snapshot(home.parent)
    _upload(at, {"cats": cats + [(case.name, case.data) for case in cases], "dogs": dogs})
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    tables = _skipped_tables(at)
    assert len(tables) == 2  # Right after the upload, and in the health report.
    reasons = dict(zip(tables[0]["file"], tables[0]["reason"], strict=True))
    expected = {f"cats/{case.name}": case.expect for case in cases if not case.kept}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])
    metrics = {m.label: m.value for m in at.metric}
    kept = sum(case.kept for case in cases)
    assert metrics["Images"] == str(6 + kept) and metrics["Skipped files"] == str(len(expected))
    assert "Notes (" in " ".join(e.label for e in at.expander)
    workspace = at.session_state["workspace"]
    allowed = str(workspace.datasets_dir.relative_to(home.parent))
    assert changes_outside(before, snapshot(home.parent), (allowed, "home/workspaces")) == []


def test_hostile_archive_entries_are_listed_and_nothing_escapes(data_page, home) -> None:
    at = data_page
    link = zipfile.ZipInfo("cats/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    entries = [
        *good_files().items(),
        ("../../evil.png", noise_png(90)),
        ("/abs/evil.png", noise_png(91)),
        (link, b"/etc/passwd"),
        ("cats/bomb.bmp", b"\x00" * (8 << 20)),
        ("cats/inner.zip", zip_bytes({"x/y.png": noise_png(92)})),
        ("__MACOSX/cats/._ok_0.png", b"\x00\x05\x16\x07"),
        ("readme.txt", b"hello"),
    ]
    before = snapshot(home.parent)
    _upload_zip(at, zip_bytes(entries))
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    reasons = dict(zip(_skipped_tables(at)[0]["file"], _skipped_tables(at)[0]["reason"], strict=True))
    assert reasons["../../evil.png"].startswith("unsafe path")
    assert reasons["/abs/evil.png"].startswith("unsafe path")
    assert reasons["cats/link.png"] == "symbolic links are not followed"
    assert "likely a ZIP bomb" in reasons["cats/bomb.bmp"]
    assert reasons["cats/inner.zip"] == "nested archives are not opened"
    assert reasons["__MACOSX/"].startswith("macOS metadata folder")
    assert reasons["readme.txt"] == "not inside a class folder"
    allowed = str(at.session_state["workspace"].datasets_dir.relative_to(home.parent))
    assert changes_outside(before, snapshot(home.parent), (allowed, "home/workspaces")) == []


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (b"PK\x03\x04 this is not really a zip", "not a readable ZIP archive"),
        (b"", "not a readable ZIP archive"),
        (
            zip_bytes({f"photo_{i}.png": noise_png(i) for i in range(3)}),
            "found: no class folders with images",
        ),
        (zip_bytes({f"cats/{i}.png": noise_png(i) for i in range(3)}), "found: 'cats' (3 images)"),
    ],
    ids=["corrupt", "empty", "no_class_folders", "one_class"],
)
def test_unusable_archives_give_a_clear_error_not_an_exception(data_page, archive, message) -> None:
    at = data_page
    _upload_zip(at, archive)
    errors = [e.value for e in at.error]
    assert any(e.startswith("Could not make the data set:") and message in e for e in errors), errors
    assert "dataset_root" not in at.session_state
    assert at.session_state["workspace"].dataset_dirs() == []


def test_odd_and_hostile_class_names_typed_in_the_page(data_page, home) -> None:
    at = data_page
    labels = ["../../x", "Katzen 🐱", "a/b", "..", "y" * 300, "Dogs", "dogs", "  spaced out  "]
    per_class = {
        label: [(f"../../{i}.png", noise_png(n * 10 + i)) for i in range(2)] for n, label in enumerate(labels)
    }
    before = snapshot(home.parent)
    _upload(at, per_class)
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    from transfer_core.data import load_dataset

    spec = load_dataset(at.session_state["dataset_root"])
    assert set(spec.class_names) == {label.strip() for label in labels}
    assert {m.label: m.value for m in at.metric}["Classes"] == str(len(labels))
    allowed = str(at.session_state["workspace"].datasets_dir.relative_to(home.parent))
    assert changes_outside(before, snapshot(home.parent), (allowed, "home/workspaces")) == []


def test_a_class_with_one_image_loads_and_the_page_warns(data_page) -> None:
    at = data_page
    good = good_files(per_class=6)
    _upload(
        at,
        {
            "cats": [(n.split("/")[1], d) for n, d in good.items() if n.startswith("cats/")],
            "dogs": [(n.split("/")[1], d) for n, d in good.items() if n.startswith("dogs/")],
            "bird": [("only.png", noise_png(77))],
        },
    )
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "Class 'bird' has only 1 image" in warnings and "'bird' has no validation images" in warnings


def test_one_hundred_classes_from_a_zip(data_page) -> None:
    at = data_page
    files = {f"class {k:03d}/{i}.png": noise_png(k * 10 + i, 8) for k in range(100) for i in range(5)}
    _upload_zip(at, zip_bytes(files))
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "100" and metrics["Images"] == "500"


def test_disk_full_during_an_upload_shows_an_error_and_keeps_no_data_set(data_page, monkeypatch) -> None:
    from transfer_core.data.ingest import store as ingest_module

    at = data_page
    written = {"n": 0}
    real = ingest_module.write_bytes_atomic

    def fills_up(path, data):
        written["n"] += 1
        if written["n"] > 2:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(ingest_module, "write_bytes_atomic", fills_up)
    good = good_files()
    _upload(
        at,
        {
            "cats": [(n.split("/")[1], d) for n, d in good.items() if n.startswith("cats/")],
            "dogs": [(n.split("/")[1], d) for n, d in good.items() if n.startswith("dogs/")],
        },
    )
    errors = [e.value for e in at.error]
    assert any("No space left on device" in e for e in errors), errors
    assert "dataset_root" not in at.session_state
    assert at.session_state["workspace"].dataset_dirs() == []


def test_server_folder_escaping_by_symlink_or_dots_is_refused_by_the_page(
    home, monkeypatch, tmp_path
) -> None:
    from streamlit.testing.v1 import AppTest

    from ui import state

    allowed = tmp_path / "allowed"
    secret = tmp_path / "secret"
    for root in (allowed / "set", secret):
        for name, data in good_files().items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    os.symlink(secret, allowed / "shortcut")
    monkeypatch.setenv("TRANSFER_ALLOWED_DATA_DIRS", str(allowed))
    state.settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=patience(60)).run()
    at.switch_page("pages/data.py").run()
    for attempt in (str(allowed / "shortcut"), str(allowed / ".." / "secret"), str(secret), "/"):
        at.text_input(key="folder_path").set_value(attempt).run()
        at.button(key="folder_create").click().run()
        assert not at.exception, at.exception
        assert any("outside the folders this server allows" in e.value for e in at.error), attempt
        assert "dataset_root" not in at.session_state


def test_a_session_over_its_disk_quota_is_refused_new_data_sets(home, monkeypatch) -> None:
    """TRANSFER_MAX_SESSION_DISK_MB=1: an upload that would take the session over 1 MB is refused before
    anything is written, and so is any upload once the session is full."""
    from streamlit.testing.v1 import AppTest

    from ui import state

    monkeypatch.setenv("TRANSFER_MAX_SESSION_DISK_MB", "1")
    state.settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=patience(120)).run()
    at.switch_page("pages/data.py").run()
    _upload_zip(at, zip_bytes(good_files()))  # A few kB: fits.
    assert any("is ready and active" in s.value for s in at.success), page_text(at)
    first = at.session_state["dataset_root"]
    workspace = at.session_state["workspace"]

    big = {
        f"{label}/{i}.png": noise_png(300 + 10 * n + i, 300)
        for n, label in enumerate(["a", "b"])
        for i in range(3)
    }
    _upload_zip(at, zip_bytes(big))  # About 1.6 MB: over the quota before a byte is stored.
    errors = " ".join(e.value for e in at.error)
    assert "of the 1 MB it may use and this upload needs 2 MB more" in errors, page_text(at)
    assert at.session_state["dataset_root"] == first and len(workspace.dataset_dirs()) == 1

    (workspace.datasets_dir / "filler.bin").write_bytes(b"\0" * 1_100_000)  # Full (e.g. by runs).
    _upload_zip(at, zip_bytes(good_files(labels=("x", "y"))))
    assert any("already uses 1 MB of the 1 MB" in e.value for e in at.error), page_text(at)
    assert len(workspace.dataset_dirs()) == 1
