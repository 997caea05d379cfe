"""The programs an export hands out: real template files, filled in one marked block, and a reproduce
script that splits and augments exactly as Transfer Lab does (no training here: these tests are fast).
The folder branch of the script's split (no manifest) is tested end to end in test_export.py."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import inspect
import itertools
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.models import TINY_MODEL as TINY
from helpers.runs import tiny_config

from transfer_core import export
from transfer_core.config import AUGMENTATIONS
from transfer_core.data import augment, read_manifest
from transfer_core.data.split import hash_split, split_sizes

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLIT_SETTINGS = [(0, 0.2, 0.0), (1, 0.3, 0.0), (7, 0.2, 0.1), (42, 0.25, 0.25), (123, 0.5, 0.2), (5, 0.1, 0.05)]


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    """A real data set (the demo generator, ingested like an upload) and its manifest."""
    return tiny_dataset, read_manifest(tiny_dataset)


def _load_generated(script: str, folder: Path, name: str = "generated"):
    path = folder / f"{name}.py"
    path.write_text(script)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _items(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(frame["label"], frame["sha256"], frame["path"], strict=True))


# ----- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reproduce.py", "predict.py", "predict_tflite.py", "predict_onnx.py"])
def test_templates_are_package_files_that_lint_clean(name):
    path = REPO_ROOT / "transfer_core" / "export" / "templates" / name
    assert export.read_template(name) == path.read_text(encoding="utf-8")
    ast.parse(path.read_text())
    completed = subprocess.run([sys.executable, "-m", "ruff", "check", str(path)], capture_output=True, text=True,
                               cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stdout


def _generated_block(script: str) -> str:
    return script.split("# <generated>", 1)[1].split("# </generated>", 1)[0]


def test_only_the_generated_block_varies_and_the_scripts_lint_clean(dataset, tmp_path):
    spec, _ = dataset
    template = export.read_template("reproduce.py")
    script = export.generate_script(tiny_config(spec, model=TINY), "run-7", 0.5)
    # Outside the generated block, the script is the template (plus training's own augmenter, tested below).
    before, after = template.split("# <generated>", 1), script.split("# <generated>", 1)
    assert before[0] == after[0]
    assert before[1].split("# </generated>", 1)[1].split("# <shared:")[0] == (
        after[1].split("# </generated>", 1)[1].split("# <shared:")[0])
    assert "Transfer Lab run run-7 (validation accuracy 0.5000)" in _generated_block(script)
    assert "CLASS_NAMES = " + repr(list(spec.class_names)) in _generated_block(script)
    snippet = export.predict_snippet(tiny_config(spec, model=TINY))
    assert "MODEL_FILE = 'model.keras'" in _generated_block(snippet) and "INPUT_SIZE = 32" in snippet
    for text, file in ((script, "train.py"), (snippet, "predict.py")):
        (tmp_path / file).write_text(text)
        completed = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(REPO_ROOT / "pyproject.toml"),
                                    str(tmp_path / file)], capture_output=True, text=True, cwd=REPO_ROOT)
        assert completed.returncode == 0, completed.stdout


def test_a_template_and_the_generator_that_disagree_fail_loudly(dataset, monkeypatch):
    spec, _ = dataset
    stale = export.read_template("reproduce.py").replace("TRAIN_BATCHNORM = False\n", "")
    monkeypatch.setattr(export.script, "read_template", lambda name: stale)
    with pytest.raises(RuntimeError, match="generated block"):
        export.generate_script(tiny_config(spec, model=TINY))


# ----- the split rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "val_fraction", "test_fraction"), SPLIT_SETTINGS)
def test_generated_split_assigns_every_manifest_row_as_hash_split_does(dataset, tmp_path, seed, val_fraction,
                                                                      test_fraction):
    """The script's split rule, with the settings the generator wrote, on a real manifest: the exact same
    train/val/test assignment as ``data/split.py``. Classes are cut down to 1..12 images (tiny ones too)."""
    spec, manifest = dataset
    spec = dataclasses.replace(spec, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    module = _load_generated(export.generate_script(tiny_config(spec, model=TINY)), tmp_path)
    assert (seed, val_fraction, test_fraction) == (module.SPLIT_SEED, module.VAL_FRACTION, module.TEST_FRACTION)
    sizes = itertools.cycle([1, 2, 3, 4, 5, 7, 12])
    frame = pd.concat([group.head(next(sizes)) for _, group in manifest.groupby("label", sort=False)])
    for rows in (manifest, frame):
        expected = hash_split(rows, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
        got = module.assign_splits(_items(rows), module.SPLIT_SEED, module.VAL_FRACTION, module.TEST_FRACTION)
        assert got == list(expected), (seed, val_fraction, test_fraction)


def test_generated_split_matches_on_every_class_size_and_on_duplicate_images(dataset, tmp_path):
    """Synthetic manifests: class sizes 1..40, the same content twice in a class (ties broken by path)."""
    spec, _ = dataset
    module = _load_generated(export.generate_script(tiny_config(spec, model=TINY)), tmp_path)
    rows = []
    for size in range(1, 41):
        for index in range(size):
            digest = hashlib.sha256(f"{size}-{index % max(1, size - 2)}".encode()).hexdigest()  # Some repeat.
            rows.append({"label": f"class_{size}", "sha256": digest, "path": f"class_{size}/{index:03d}.png"})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # Input order must not matter.
    assert frame.duplicated(["label", "sha256"]).any()
    for seed, val_fraction, test_fraction in SPLIT_SETTINGS:
        expected = hash_split(frame, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
        assert module.assign_splits(_items(frame), seed, val_fraction, test_fraction) == list(expected)


# ----- the augmenter ------------------------------------------------------------------------------------


def _layers(sequential) -> list[tuple[str, dict]]:
    return [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
            for layer in sequential.layers]


def test_the_script_holds_trainings_own_augmenter_and_split_sizes(dataset, tmp_path):
    spec, _ = dataset
    script = export.generate_script(tiny_config(spec, model=TINY))
    assert inspect.getsource(augment.build_augmenter) in script
    assert inspect.getsource(split_sizes) in script
    assert "NotImplementedError" not in script  # Every placeholder of the template was filled.
    module = _load_generated(script, tmp_path)
    for count, val_fraction, test_fraction in itertools.product(range(0, 30), (0.0, 0.1, 0.2, 0.5), (0.0, 0.15, 0.3)):
        assert module.split_sizes(count, val_fraction, test_fraction) == split_sizes(count, val_fraction, test_fraction)


PRESETS = [combo for n in range(len(AUGMENTATIONS) + 1) for combo in itertools.combinations(AUGMENTATIONS, n)]


@pytest.mark.parametrize("augmentation", PRESETS, ids=lambda combo: "+".join(combo) or "none")
def test_generated_augmenter_equals_trainings_for_every_augmentation(dataset, tmp_path, augmentation):
    """For each combination: the layers the script builds from its generated settings have the same classes and
    configurations (strength, seed, value range) as the ones training builds from the run's config."""
    spec, _ = dataset
    config = tiny_config(spec, model=TINY, augmentation=augmentation, seed=11)
    module = _load_generated(export.generate_script(config), tmp_path)
    assert tuple(module.AUGMENTATION) == augmentation and module.SEED == 11
    ours = augment.build_augmenter(config.train.augmentation, config.train.seed)
    theirs = module.build_augmenter(module.AUGMENTATION, module.SEED)
    assert _layers(theirs) == _layers(ours)
    assert len(theirs.layers) == len(augmentation)


def test_the_scripts_keep_best_callback_keeps_the_runs_best_epoch_across_stages(dataset, tmp_path):
    """As training does (tests/unit/test_training_budget_best.py): a fit that completes ends at its best
    validation-loss epoch, and a second stage that only did worse gives back the first stage's best."""
    import keras
    import numpy as np

    spec, _ = dataset
    module = _load_generated(export.generate_script(tiny_config(spec, model=TINY)), tmp_path)
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(size=(64, 8)).astype("float32"), rng.normal(size=(32, 8)).astype("float32")
    y, y_val = (x[:, 0] > 0).astype("int32"), (x_val[:, 0] > 0).astype("int32")  # Learnable.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    seen: list[tuple[float, list]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((logs["val_loss"], model.get_weights())))
    keep_best = module.KeepBestWeights(model)
    for learning_rate in (0.3, 200.0):  # Stage 2 at a learning rate that makes everything worse.
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="sparse_categorical_crossentropy")
        model.fit(x, y, validation_data=(x_val, y_val), epochs=6, verbose=0, callbacks=[keep_best, record])
    best = min(range(len(seen)), key=lambda index: seen[index][0])
    best_weights = seen[best][1]
    assert best < 6, f"stage 2 was better: the test shows nothing ({[round(s[0], 3) for s in seen]})"
    assert keep_best.best_epoch == best + 1
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best_weights, strict=True))


def test_the_script_reads_the_data_set_version_its_run_used(tmp_path):
    from transfer_core.data import make_demo_dataset, relabel_image

    spec = make_demo_dataset(tmp_path / "data", images_per_class=6, image_size=32)
    frame = read_manifest(spec)
    row = frame[frame["split"] == "train"].iloc[0]
    new_label = next(name for name in spec.class_names if name != row["label"])
    fixed = relabel_image(spec.root, row["path"], new_label).spec
    image = str(Path(spec.root) / row["path"])
    for config_spec, label in ((spec, row["label"]), (fixed, new_label)):
        module = _load_generated(export.generate_script(tiny_config(config_spec, model=TINY)), tmp_path,
                                 name=f"v{config_spec.version}")
        splits, source = module.load_file_lists(Path(spec.root))
        paths, labels = splits["train"]
        assert module.CLASS_NAMES[labels[paths.index(image)]] == label
        expected = config_spec.manifest_path.relative_to(spec.root).as_posix()
        assert expected == module.MANIFEST and source.startswith(expected)
    (Path(spec.root) / "versions").rename(tmp_path / "elsewhere")
    with pytest.raises(SystemExit, match="not the version this run used: versions/2/manifest.csv"):
        module.load_file_lists(Path(spec.root))
