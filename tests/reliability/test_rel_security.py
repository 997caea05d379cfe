"""Issue 6, security: per-session workspaces, nothing written outside them whatever a name says, server
folders only under the operator's allowed list, uploaded models only in Keras' safe mode, and limits
that are settings with safe defaults documented in README."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from helpers.bad_files import changes_outside, good_files, snapshot
from helpers.images import noise_png

from transfer_core.config import Settings
from transfer_core.data import ingest_uploads, read_manifest
from transfer_core.display.views import resolve_server_folder
from transfer_core.sessions.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]

HOSTILE_LABELS = ["../../x", "/etc", "..", "a/../../b", "..\\..\\win", "~root", "$HOME", "x" * 500, "\x00nul"]
HOSTILE_FILE_NAMES = [
    "../../../evil.png",
    "/etc/passwd.png",
    "..\\..\\evil.png",
    "~/.bashrc.png",
    "a/../../b.png",
]


# ---------------------------------------------------------------------------------------------
# Workspaces and hostile names.


def test_workspace_ids_are_unguessable_and_unique(tmp_path) -> None:
    settings = Settings(home=tmp_path)
    ids = {Workspace.open(settings).workspace_id for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", workspace_id) for workspace_id in ids)  # 128 random bits.


def test_hostile_class_and_file_names_never_escape_the_workspace(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home")
    workspace = Workspace.open(settings)
    other = Workspace.open(settings)
    files = [
        (file_name, noise_png(n * 10 + i), label)
        for n, label in enumerate(HOSTILE_LABELS)
        for i, file_name in enumerate(HOSTILE_FILE_NAMES[:2])
    ]
    before = snapshot(tmp_path)
    dest = workspace.new_dataset_dir("../../escape")
    assert dest.parent == workspace.datasets_dir  # The data set's own name is slugged too.
    result = ingest_uploads(files, dest, settings=settings)
    prefix = str(dest.relative_to(tmp_path))
    assert (
        changes_outside(
            before, snapshot(tmp_path), (prefix, str(workspace.datasets_dir.relative_to(tmp_path)))
        )
        == []
    )
    assert not any(other.root.rglob("*.png"))
    root = Path(result.spec.root).resolve()
    for relative in read_manifest(result.spec)["path"]:
        assert (root / relative).resolve().parent.parent == root / "images"
    assert "../../x" in result.spec.class_names


def test_run_and_workspace_ids_from_the_url_cannot_point_outside(tmp_path) -> None:
    from transfer_core.runs import RunStore

    settings = Settings(home=tmp_path)
    for bad in ["../" * 5 + "etc", "/etc", "0" * 31 + "/", "..", "%2e%2e"]:
        assert Workspace.open(settings, bad).root.parent == settings.workspaces_dir
        with pytest.raises(ValueError, match="Not a run id"):
            RunStore(tmp_path / "runs").path_of("../" + bad)


# ---------------------------------------------------------------------------------------------
# "Use a folder on the server": only under Settings.allowed_data_dirs.


@pytest.fixture
def allowed(tmp_path) -> Path:
    root = tmp_path / "allowed"
    for name, data in good_files().items():
        (root / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "set" / name).write_bytes(data)
    (tmp_path / "allowed-but-not").mkdir()
    (tmp_path / "secret").mkdir()
    return root


def test_server_folders_are_off_by_default() -> None:
    assert Settings().allowed_data_dirs == ()
    with pytest.raises(PermissionError, match="TRANSFER_ALLOWED_DATA_DIRS"):
        resolve_server_folder("/", Settings().allowed_data_dirs)


def test_a_folder_under_an_allowed_one_is_read(allowed) -> None:
    assert resolve_server_folder(str(allowed / "set"), [allowed]) == (allowed / "set").resolve()
    assert resolve_server_folder(str(allowed), [allowed]) == allowed.resolve()


@pytest.mark.parametrize(
    "attempt",
    [
        "/etc",
        "{tmp}/secret",
        "{tmp}/allowed/../secret",
        "{tmp}/allowed/set/../../secret",
        "{tmp}/allowed-but-not",
        "{tmp}/allowed/link_out",
        "{tmp}/allowed/set/link_up",
        "~",
        "{tmp}/allowed/../allowed/../secret",
    ],
)
def test_folders_outside_the_allowed_ones_are_refused(allowed, tmp_path, attempt) -> None:
    os.symlink(tmp_path / "secret", allowed / "link_out")
    os.symlink("../..", allowed / "set" / "link_up")
    with pytest.raises(PermissionError, match="outside the folders this server allows"):
        resolve_server_folder(attempt.format(tmp=tmp_path), [allowed])


def test_an_allowed_folder_given_through_a_symlink_is_resolved(allowed, tmp_path) -> None:
    os.symlink(allowed, tmp_path / "alias")
    assert resolve_server_folder(str(allowed / "set"), [tmp_path / "alias"]) == (allowed / "set").resolve()


def test_a_symlink_inside_an_allowed_folder_is_not_followed_by_the_ingest(allowed, tmp_path) -> None:
    from transfer_core.data import ingest_folder

    (tmp_path / "secret" / "cats").mkdir(parents=True)
    (tmp_path / "secret" / "cats" / "private.png").write_bytes(noise_png(999))
    os.symlink(tmp_path / "secret" / "cats", allowed / "set" / "more_cats")
    source = resolve_server_folder(str(allowed / "set"), [allowed])
    result = ingest_folder(source, tmp_path / "ds", settings=Settings())
    reasons = {s.name: s.reason for s in result.skipped}
    assert reasons["more_cats/"] == "symbolic links are not followed"
    assert len(read_manifest(result.spec)) == 6


# ---------------------------------------------------------------------------------------------
# Uploaded model files: only .keras, only built-in layers, only safe mode.


def _lambda_model_file(path: Path, marker: Path) -> Path:
    """A .keras file whose Lambda layer writes ``marker`` when its code runs."""
    import keras

    code = f"lambda t: (open({str(marker)!r}, 'w').write('code ran'), t)[1]"
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(eval(code))(inputs)  # noqa: S307 - the test's own payload.
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    marker.unlink(missing_ok=True)  # Building the model ran the lambda once.
    model.save(path)
    return path


def _rewrite_config(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    change(config)
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


@pytest.fixture(scope="module")
def plain_model_file(tmp_path_factory) -> Path:
    import keras

    path = tmp_path_factory.mktemp("models") / "plain.keras"
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs)).save(path)
    return path


def test_the_lambda_payload_really_runs_without_safe_mode(tmp_path) -> None:
    """Proof that the crafted file is dangerous: loading it unsafely runs its code (the marker appears)."""
    import keras

    marker = tmp_path / "marker.txt"
    path = _lambda_model_file(tmp_path / "evil.keras", marker)
    assert not marker.exists()
    keras.saving.load_model(path, safe_mode=False)
    assert marker.read_text() == "code ran"


def test_a_keras_file_with_a_lambda_layer_is_refused_and_no_code_runs(tmp_path) -> None:
    from transfer_core.explore.safe_load import UnsafeModelError, load_keras_model

    marker = tmp_path / "marker.txt"
    path = _lambda_model_file(tmp_path / "evil.keras", marker)
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        load_keras_model(path)
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        load_keras_model(path.read_bytes(), name="evil.keras")
    assert not marker.exists()


def test_a_config_naming_an_outside_module_is_refused_before_keras_sees_it(
    tmp_path, plain_model_file
) -> None:
    """The shape of the safe-mode bypasses (CVE-2025-1550): a config that names e.g. ``os.system``."""
    from transfer_core.explore.safe_load import UnsafeModelError, load_keras_model

    def inject(config):
        layer = config["config"]["layers"][1]
        layer["config"]["activation"] = {
            "module": "os",
            "class_name": "function",
            "config": "system",
            "registered_name": "system",
        }

    def custom_class(config):
        config["config"]["layers"][1]["module"] = "evil_package.layers"

    def registered(config):
        config["config"]["layers"][1]["registered_name"] = "evil_package>Backdoor"

    for change, message in (
        (inject, "'os'"),
        (custom_class, "evil_package.layers"),
        (registered, "custom object"),
    ):
        path = _rewrite_config(plain_model_file, tmp_path / f"{change.__name__}.keras", change)
        with pytest.raises(UnsafeModelError, match=message):
            load_keras_model(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "only Keras 3 '.keras' model files"),
        ("model.pkl", b"\x80\x04K\x01.", "only Keras 3 '.keras' model files"),
        ("saved_model.pb", b"\x08\x01", "only Keras 3 '.keras' model files"),
        ("model.keras", b"not a zip at all", "not a readable Keras model file"),
        ("model.keras", b"", "not a readable Keras model file"),
    ],
)
def test_other_model_files_are_refused_with_a_clear_message(name, data, message) -> None:
    from transfer_core.explore.safe_load import UnsafeModelError, load_keras_model

    with pytest.raises(UnsafeModelError, match=re.escape(message)):
        load_keras_model(data, name=name)


def test_a_keras_file_without_config_and_an_oversized_one_are_refused(tmp_path) -> None:
    from transfer_core.explore.safe_load import UnsafeModelError, load_keras_model

    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(UnsafeModelError, match="no config.json"):
        load_keras_model(empty)
    with pytest.raises(UnsafeModelError, match="larger than the limit of 1 MB"):
        load_keras_model(b"PK" + b"\x00" * (2 << 20), name="big.keras", max_bytes=1 << 20)


@pytest.mark.slow
def test_a_plain_keras_model_and_a_real_transfer_lab_model_load_in_safe_mode(
    tmp_path, plain_model_file
) -> None:
    import numpy as np

    from transfer_core.config import ModelSpec
    from transfer_core.explore.safe_load import load_keras_model
    from transfer_core.jobs import save_model
    from transfer_core.models import build_classifier

    assert load_keras_model(plain_model_file).predict(np.zeros((1, 4)), verbose=0).shape == (1, 2)
    for backbone in (
        "mobilenet_v2_0.35",
        "resnet50",
        "densenet121",
        "efficientnet_b0",
    ):  # tf, caffe, torch, none.
        classifier = build_classifier(ModelSpec(backbone=backbone, input_size=32, weights="random"), 3)
        path = tmp_path / f"{backbone}.keras"
        save_model(classifier.model, path)
        images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        loaded = load_keras_model(path.read_bytes(), name=path.name)
        np.testing.assert_allclose(
            loaded.predict(images, verbose=0), classifier.model.predict(images, verbose=0), atol=1e-5
        )


# ---------------------------------------------------------------------------------------------
# Limits are settings with safe defaults, and README's table says so truthfully.


LIMITS = {
    "max_upload_mb": ("TRANSFER_MAX_UPLOAD_MB", 200),
    "max_files": ("TRANSFER_MAX_FILES", 20000),
    "max_pixels": ("TRANSFER_MAX_PIXELS", 40_000_000),
    "max_concurrent_runs": ("TRANSFER_MAX_CONCURRENT_RUNS", 1),
    "max_session_disk_mb": ("TRANSFER_MAX_SESSION_DISK_MB", 2000),
    "allowed_data_dirs": ("TRANSFER_ALLOWED_DATA_DIRS", ()),
}


def _readme_settings() -> dict[str, str]:
    rows = {}
    for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*`(TRANSFER_[A-Z_]+)`\s*\|\s*([^|]*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip("` ")
    return rows


def test_every_limit_is_a_setting_with_a_safe_default_documented_in_readme(monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("TRANSFER_")]:
        monkeypatch.delenv(name)
    defaults = Settings.from_env()
    readme = _readme_settings()
    fields = {f.name for f in dataclasses.fields(Settings)}
    for field_name, (env_name, default) in LIMITS.items():
        assert field_name in fields
        assert getattr(defaults, field_name) == default, field_name
        assert env_name in readme, f"README's settings table lacks {env_name}"
        shown = readme[env_name].replace(",", "").replace("_", "")
        expected = "empty" if default == () else str(default)
        assert shown == expected, (
            f"README says {env_name}={readme[env_name]!r}, the code's default is {default!r}"
        )
    # Every TRANSFER_* variable the code reads is in README's table.
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "transfer_core").rglob("*.py"))
    read = set(re.findall(r"[\"'](TRANSFER_[A-Z_]+)[\"']", source))
    assert read - set(readme) == set(), f"undocumented: {sorted(read - set(readme))}"


def test_streamlit_upload_limit_matches_the_setting() -> None:
    import tomllib

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == Settings().max_upload_mb


@pytest.mark.parametrize(
    "name", ["max_upload_mb", "max_files", "max_pixels", "max_concurrent_runs", "max_session_disk_mb"]
)
@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_nonsense_limits_are_refused_at_start(monkeypatch, name, value) -> None:
    monkeypatch.setenv(LIMITS[name][0], value)
    with pytest.raises(ValueError, match=LIMITS[name][0] if value == "lots" else f"{name} must be >= 1"):
        Settings.from_env()


def test_image_input_size_accepts_classifiers_and_refuses_other_models(plain_model_file) -> None:
    import keras

    from transfer_core.explore.safe_load import UnsafeModelError, image_input_size, load_keras_model

    with pytest.raises(UnsafeModelError, match="does not take square RGB images"):
        image_input_size(load_keras_model(plain_model_file))
    inputs = keras.Input((48, 48, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    assert image_input_size(keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(pooled))) == (
        48,
        5,
    )
