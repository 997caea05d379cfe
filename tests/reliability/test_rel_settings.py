"""Issue 6, bad settings: zero or negative epochs, a batch larger than the data set, absurd learning
rates, input sizes a backbone rejects. Each gets a clear message before any work starts: the config
refuses it, ``training.preflight`` refuses it, the command line exits with code 2 and the message, and
the Train page shows ``st.error`` without creating a run directory.

A batch larger than the data set is not an error: Keras trains on one smaller batch per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers.bad_files import good_files
from helpers.patience import patience

from transfer_core.config import DatasetSpec, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.training import preflight

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")

BAD_TRAIN = [
    ({"epochs": 0}, "epochs must be between 1 and 1000. Received: epochs=0"),
    ({"epochs": -3}, "Received: epochs=-3"),
    ({"epochs": 10**9}, "Received: epochs=1000000000"),
    ({"strategy": "fine_tuning", "fine_tune_epochs": -1}, "Received: fine_tune_epochs=-1"),
    ({"batch_size": 0}, "Received: batch_size=0"),
    ({"batch_size": -8}, "Received: batch_size=-8"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0 and <= 10. Received: learning_rate=0.0"),
    ({"learning_rate": -0.001}, "Received: learning_rate=-0.001"),
    ({"learning_rate": 1e9}, "Received: learning_rate=1000000000.0"),
    ({"learning_rate": math.nan}, "Received: learning_rate=nan"),
    ({"learning_rate": math.inf}, "Received: learning_rate=inf"),
    ({"fine_tune_learning_rate": 100.0}, "Received: fine_tune_learning_rate=100.0"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_TRAIN, ids=[str(k) for k, _ in BAD_TRAIN])
def test_absurd_training_settings_are_refused_with_the_value(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> DatasetSpec:
    from transfer_core.data import ingest_uploads

    files = [(name, data, name.split("/")[0]) for name, data in good_files(per_class=5).items()]
    return ingest_uploads(files, tmp_path_factory.mktemp("data") / "ds", settings=Settings()).spec


@pytest.mark.parametrize(
    ("backbone", "input_size", "message"),
    [
        ("inception_v3", 32, "InceptionV3 accepts input sizes from 75 to 1024 pixels"),
        ("xception", 64, "accepts input sizes from 71"),
        ("no_such_net", 0, "no_such_net"),
    ],
)
def test_input_sizes_a_backbone_rejects_fail_in_preflight(
    small_dataset, backbone, input_size, message
) -> None:
    config = RunConfig(
        dataset=small_dataset, model=ModelSpec(backbone=backbone, input_size=input_size, weights="random")
    )
    with pytest.raises(ValueError, match=message):
        preflight(config, Settings())


def test_input_sizes_outside_any_backbone_are_refused_by_the_config() -> None:
    for size in (-1, 8, 31, 5000):
        with pytest.raises(ValueError, match=f"input_size={size}"):
            ModelSpec(input_size=size)


def test_preflight_refuses_a_data_set_without_validation_images(tmp_path) -> None:
    from transfer_core.data import ingest_uploads

    files = [
        (f"{label}/{i}.png", data, label)
        for (name, data), label, i in zip(good_files(per_class=1).items(), ["a", "b"], range(2), strict=True)
    ]
    spec = ingest_uploads(files, tmp_path / "ds", settings=Settings()).spec
    with pytest.raises(ValueError, match="both the training and the validation split"):
        preflight(RunConfig(dataset=spec, model=ModelSpec(input_size=32, weights="random")), Settings())


# ---------------------------------------------------------------------------------------------
# The command line: exit code 2 and the message, no run directory.


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name, data in good_files(per_class=5).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


CLI_CASES = [
    (["--epochs", "0"], "epochs=0"),
    (["--epochs", "-2"], "epochs=-2"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--learning-rate", "0"], "learning_rate=0.0"),
    (["--learning-rate", "1e9"], "learning_rate=1000000000.0"),
    (["--learning-rate", "nan"], "learning_rate=nan"),
    (["--backbone", "inception_v3", "--input-size", "32", "--random-weights"], "accepts input sizes from 75"),
    (["--input-size", "8"], "input_size=8"),
]


@pytest.mark.parametrize(("flags", "message"), CLI_CASES, ids=[" ".join(f) for f, _ in CLI_CASES])
def test_cli_exits_2_with_the_message_and_creates_no_run(capsys, tmp_path, flags, message) -> None:
    from transfer_core.cli import main

    home = tmp_path / "home"
    code = main(["train", "--data", str(_folder(tmp_path)), "--home", str(home), "--quiet", *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_cli_checks_flags_before_it_ingests_the_data(capsys, tmp_path) -> None:
    from transfer_core.cli import main

    home = tmp_path / "home"
    assert main(["train", "--data", str(_folder(tmp_path)), "--home", str(home), "--epochs", "0"]) == 2
    assert not list(home.rglob("dataset.json"))


# ---------------------------------------------------------------------------------------------
# Batch size larger than the data set: works.


def test_batch_larger_than_the_data_set_trains(small_dataset, tmp_path) -> None:
    from transfer_core.training import train

    for strategy in ("feature_extraction", "from_scratch"):
        config = RunConfig(
            dataset=small_dataset,
            model=ModelSpec(input_size=32, weights="random", dropout_rate=0.0),
            train=TrainConfig(strategy=strategy, epochs=2, batch_size=4096),
        )
        preflight(config, Settings(home=tmp_path))
        events = []
        result = train(config, emit=events.append, settings=Settings(home=tmp_path))
        assert result.status == "finished", result.reason
        batches = [e for e in events if e["type"] == "batch_end"]
        assert batches and all(e["batches"] == 1 for e in batches)  # One (smaller) batch per epoch.


# ---------------------------------------------------------------------------------------------
# The Train page: st.error, and no run directory.


def click_start(at) -> None:
    """Press "Start training" (keyed ``train_start``; older pages had only the form's generated key)."""
    keys = {button.key for button in at.button}
    key = "train_start" if "train_start" in keys else "FormSubmitter:train_form-Start training"
    at.button(key=key).click().run()


@pytest.fixture
def train_page(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    monkeypatch.delenv("TRANSFER_ALLOWED_DATA_DIRS", raising=False)
    state.settings.cache_clear()
    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=10, image_size=32)
    at = AppTest.from_file(APP, default_timeout=patience(60))
    at.session_state["workspace"] = workspace
    at.session_state["dataset_root"] = spec.root
    yield at, workspace
    state.settings.cache_clear()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ModelSpec(backbone="inception_v3", input_size=32, weights="random"), "accepts input sizes from 75"),
        (ModelSpec(backbone="xception", input_size=64, weights="random"), "accepts input sizes from 71"),
    ],
)
def test_train_page_refuses_a_rejected_input_size_before_any_work(train_page, model, message) -> None:
    at, workspace = train_page
    at.session_state["model_spec"] = model
    at.run()
    at.switch_page("pages/train.py").run()
    at.radio(key="train_strategy").set_value("feature_extraction")
    click_start(at)
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("Cannot start:") and message in e for e in errors), errors
    assert "run_id" not in at.session_state
    assert list(workspace.runs_dir.iterdir()) == []


def test_train_page_refuses_a_data_set_that_was_deleted_underneath(train_page) -> None:
    at, workspace = train_page
    at.session_state["model_spec"] = ModelSpec(input_size=32, weights="random")
    at.run()
    at.switch_page("pages/train.py").run()
    (Path(at.session_state["dataset_root"]) / "manifest.csv").unlink()
    click_start(at)
    assert not at.exception, at.exception
    assert any("Choose a data set first" in i.value for i in at.info) or at.error
    assert list(workspace.runs_dir.iterdir()) == []
