"""Project files: a workspace saved as one ZIP and opened again; hostile and broken files refused."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from helpers.runs import make_finished_run, tiny_config

from transfer_core.config import ModelSpec, Settings
from transfer_core.data import load_dataset, make_demo_dataset, read_manifest
from transfer_core.sessions import project_file
from transfer_core.sessions.project_file import ProjectError, export_project, open_project
from transfer_core.sessions.workspace import SessionChoices, Workspace


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workspace with a demo data set, one finished run and saved choices, and its project file."""
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    workspace = Workspace.open(settings)
    dataset = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=10, image_size=32)
    run_dir, _ = make_finished_run(workspace.runs_dir, tiny_config(dataset, name="saved run"), settings)
    choices = SessionChoices(dataset=Path(dataset.root).name, model=ModelSpec(backbone="mobilenet_v2_0.35"))
    workspace.save_choices(choices)
    (run_dir / "worker.pid").write_text(json.dumps({"pid": 1, "start_time": 0}))  # Left out of the file.
    return {"settings": settings, "workspace": workspace, "dataset": dataset, "run_id": run_dir.name,
            "choices": choices, "file": export_project(workspace)}


def _fresh(saved, **limits) -> tuple[Workspace, Settings]:
    settings = Settings(home=saved["settings"].home, **limits)
    return Workspace.open(settings), settings


def _contents(workspace: Workspace) -> list[str]:
    return sorted(str(p.relative_to(workspace.root)) for p in workspace.root.rglob("*"))


def test_round_trip_restores_data_set_run_and_choices(saved):
    workspace, settings = _fresh(saved)
    opened = open_project(workspace, saved["file"], settings, file_name="lab.zip")
    name = Path(saved["dataset"].root).name
    assert opened.datasets == (name,) and opened.runs == (saved["run_id"],) and opened.renamed == ()
    assert opened.choices == saved["choices"]
    restored = load_dataset(workspace.datasets_dir / name)
    assert restored.class_names == saved["dataset"].class_names
    assert read_manifest(restored).equals(read_manifest(saved["dataset"]))
    info = workspace.store.load(saved["run_id"])
    original = saved["workspace"].store.load(saved["run_id"])
    assert info.status == "finished" and info.report == original.report
    assert abs(info.created - original.created) <= 2  # ZIP times have a 2 s resolution.
    assert (info.path / "model.keras").read_bytes() == (original.path / "model.keras").read_bytes()
    assert not (info.path / "worker.pid").exists()
    # The run names its data set where it now lives, so the pages that reopen its images find them.
    assert Path(info.config.dataset.root) == (workspace.datasets_dir / name).resolve()
    assert not [p for p in workspace.root.iterdir() if p.name.startswith(".")]  # The staging folder is gone.


def test_opening_twice_renames_instead_of_overwriting(saved):
    workspace, settings = _fresh(saved)
    open_project(workspace, saved["file"], settings)
    model_file = workspace.runs_dir / saved["run_id"] / "model.keras"
    before = model_file.stat().st_mtime_ns
    second = open_project(workspace, saved["file"], settings)
    name = Path(saved["dataset"].root).name
    assert second.datasets == (f"{name}-2",) and second.runs == (f"{saved['run_id']}-2",)
    assert dict(second.renamed) == {name: f"{name}-2", saved["run_id"]: f"{saved['run_id']}-2"}
    assert second.choices.dataset == f"{name}-2"
    assert model_file.stat().st_mtime_ns == before
    assert len(workspace.dataset_dirs()) == 2 and len(workspace.store.ids()) == 2
    run = workspace.store.load(f"{saved['run_id']}-2")
    assert Path(run.config.dataset.root).name == f"{name}-2"


def _project(entries, manifest=None) -> bytes:
    """A ZIP with a project manifest (listing data set ``d`` and run ``r`` unless given) and ``entries``."""
    manifest = manifest or {"format": "transfer-lab-project", "version": 1, "datasets": ["d"], "runs": ["r"]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(manifest))
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, entry.comment or b"x")
            else:
                archive.writestr(*entry)
    return buffer.getvalue()


def _images_zip() -> bytes:
    """A ZIP of images (a data set upload, not a project)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/a.png", b"\x89PNG")
    return buffer.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.comment = b"/etc/passwd"
    return info


HOSTILE = {
    "traversal": (_project([("datasets/d/../../../../evil.txt", "x")]), "'..' leads outside"),
    "absolute path": (_project([("/datasets/d/evil.txt", "x")]), "absolute path"),
    "symlink entry": (_project([_symlink("datasets/d/link")]), "symbolic link"),
    "bomb ratio": (_project([("datasets/d/zeros.bin", b"\0" * (8 << 20))]), "ZIP bomb"),
    "unlisted entry": (_project([("elsewhere/x.txt", "x")]), "not part of a data set or run"),
    "hidden entry": (_project([("datasets/d/.bashrc", "x")]), "hidden files"),
    "newer version": (_project([], {"format": "transfer-lab-project", "version": 7, "datasets": [], "runs": []}),
                      "newer Transfer Lab"),
    "other format": (_project([], {"format": "something", "version": 1}), "not a Transfer Lab project"),
    "no manifest": (_images_zip(), "no project.json"),
    "bad names": (_project([], {"format": "transfer-lab-project", "version": 1, "datasets": ["../x"], "runs": []}),
                  "unusable names"),
    "not a zip": (b"this is not a zip file at all" * 10, "not a readable ZIP"),
    "truncated": (None, "not a readable ZIP"),
    "broken data set": (_project([("datasets/d/readme.txt", "x")]), "data set 'd' is broken"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_or_broken_files_are_refused_and_add_nothing(saved, case, tmp_path):
    content, reason = HOSTILE[case]
    if content is None:
        content = saved["file"][: len(saved["file"]) // 2]
    workspace, settings = _fresh(saved)
    before = _contents(workspace)
    with pytest.raises(ProjectError, match=reason) as error:
        open_project(workspace, content, settings, file_name="hostile.zip")
    assert "hostile.zip" in str(error.value)
    assert _contents(workspace) == before
    assert not (tmp_path.parent / "evil.txt").exists() and not (settings.home / "evil.txt").exists()


def test_over_quota_is_refused_before_extracting(saved):
    size_mb = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(saved["file"])).infolist()) / 1e6
    quota = int(size_mb) + 2
    workspace, settings = _fresh(saved, max_session_disk_mb=quota)
    (workspace.root / "earlier-upload.bin").write_bytes(b"\1" * 2_500_000)  # What the session already uses.
    before = _contents(workspace)
    with pytest.raises(ProjectError, match=rf"does not fit: .*over its limit of {quota} MB"):
        open_project(workspace, saved["file"], settings, file_name="big.zip")
    assert _contents(workspace) == before


def test_too_many_entries_is_refused(saved):
    workspace, settings = _fresh(saved, max_files=2)
    entries = [(f"datasets/d/f{i}.txt", "x") for i in range(2 * 4 + 1001)]
    with pytest.raises(ProjectError, match="more than the limit"):
        open_project(workspace, _project(entries), settings)


def test_export_leaves_out_active_runs_and_temporary_files(saved, tmp_path):
    workspace, settings = _fresh(saved)
    open_project(workspace, saved["file"], settings)
    (workspace.datasets_dir / Path(saved["dataset"].root).name / ".manifest.csv.tmp").write_text("half")
    names = zipfile.ZipFile(io.BytesIO(export_project(workspace))).namelist()
    assert not [n for n in names if "/." in n or n.endswith("worker.pid")]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(export_project(workspace))).read("project.json"))
    assert manifest["version"] == project_file.PROJECT_VERSION and manifest["runs"] == [saved["run_id"]]


def test_a_project_keeps_the_data_set_versions_and_the_version_each_run_used(tmp_path):
    from transfer_core.data import list_versions, relabel_image
    from transfer_core.runs import EventLog, RunStore

    settings = Settings(home=tmp_path / "home")
    workspace = Workspace.open(settings)
    dataset = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=6, image_size=32)
    path = read_manifest(dataset)["path"].iloc[0]
    relabel_image(dataset.root, path, dataset.class_names[-1])
    run_dir = RunStore(workspace.runs_dir).create(tiny_config(dataset, name="on v1"))
    with EventLog(run_dir / "events.jsonl") as log:  # Ended (an active run is not saved), no training needed.
        log.write({"type": "failed", "reason": "made by the test"})
    file = export_project(workspace)
    assert json.loads(zipfile.ZipFile(io.BytesIO(file)).read("project.json"))["version"] == 2

    fresh = Workspace.open(settings)
    opened = open_project(fresh, file, settings)
    restored = fresh.datasets_dir / opened.datasets[0]
    assert load_dataset(restored).version == 2
    assert [r.kind for r in list_versions(restored)] == ["original", "relabel"]
    config = fresh.store.load(opened.runs[0]).config
    assert config.dataset.version == 1 and Path(config.dataset.root) == restored.resolve()
    assert read_manifest(config.dataset).equals(read_manifest(dataset))  # The run still reads version 1.


def test_an_old_project_without_versions_still_opens(saved, tmp_path):
    old = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved["file"])) as source, zipfile.ZipFile(old, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "project.json":
                data = json.dumps({**json.loads(data), "version": 1}).encode()
            elif info.filename.endswith("/dataset.json"):
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "version"}).encode()
            elif info.filename.endswith("/config.json"):
                config = json.loads(data)
                config["dataset"].pop("version", None)
                data = json.dumps(config).encode()
            target.writestr(info, data)
    workspace, settings = _fresh(saved)
    opened = open_project(workspace, old.getvalue(), settings)
    assert load_dataset(workspace.datasets_dir / opened.datasets[0]).version == 1
    assert workspace.store.load(opened.runs[0]).config.dataset.version == 1


def test_a_version_that_lists_a_path_outside_is_refused(saved, tmp_path):
    from transfer_core.data import relabel_image

    settings = Settings(home=tmp_path / "home")
    workspace = Workspace.open(settings)
    dataset = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=6, image_size=32)
    relabel_image(dataset.root, read_manifest(dataset)["path"].iloc[0], dataset.class_names[-1])
    manifest = Path(dataset.root) / "versions" / "2" / "manifest.csv"
    lines = manifest.read_text().splitlines()
    lines[1] = "../../../outside.png" + lines[1][lines[1].index(","):]
    manifest.write_text("\n".join(lines) + "\n")
    fresh = Workspace.open(settings)
    before = _contents(fresh)
    with pytest.raises(ProjectError, match="version 2 lists '../../../outside.png'"):
        open_project(fresh, export_project(workspace), settings, file_name="lab.zip")
    assert _contents(fresh) == before
