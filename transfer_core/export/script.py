"""Programs handed out with an export: the reproduce script and predict.py.

Both are real, linted files in ``templates/`` (read with :mod:`importlib.resources`).
Each has one block between ``# <generated>`` and ``# </generated>`` that holds the
run's values; :func:`generate_script` and :func:`predict_snippet` replace exactly
that block with ``NAME = value`` lines, and nothing else in the template varies.

The reproduce script augments with :func:`transfer_core.data.augment.build_augmenter`
and sizes its splits with :func:`transfer_core.data.split.split_sizes` themselves:
their source replaces the template's ``# <shared: NAME>`` blocks, so the script
cannot drift from them. The rest of its split rule (the hash order) is plain
Python (no pandas), tested to assign every manifest row exactly as
:func:`transfer_core.data.split.hash_split` does (see ARCHITECTURE.md, "Export").
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import time
from importlib import resources
from typing import Any

from transfer_core.config import AUGMENTATIONS, RunConfig
from transfer_core.export.formats import EXPORT_FORMATS

__all__ = ["RUNNER_TEMPLATES", "generate_script", "predict_snippet", "read_template", "runner_script"]

GENERATED_START, GENERATED_END = "# <generated>", "# </generated>"
# The runner program handed out with each format that has one (the .keras file's is predict.py).
RUNNER_TEMPLATES = {
    "tflite_float": "predict_tflite.py",
    "tflite_float16": "predict_tflite.py",
    "tflite_quantized": "predict_tflite.py",
    "tflite_int8": "predict_tflite.py",
    "onnx": "predict_onnx.py",
}
SHARED_START, SHARED_END = "# <shared: ", "# </shared>"


def read_template(name: str) -> str:
    """The text of a template shipped in ``transfer_core/export/templates``.

    Args:
        name: ``"reproduce.py"`` or ``"predict.py"``.

    Returns:
        The file's text.
    """
    return resources.files("transfer_core.export").joinpath("templates", name).read_text(encoding="utf-8")


def _block(lines: list[str], start: str, end: str) -> tuple[int, int]:
    """Indices of the lines that open and close a marked block (the marker lines themselves)."""
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i, line in enumerate(lines) if i > first and line.startswith(end))
    return first, last


def _replace_block(source: str, start: str, end: str, body: str) -> str:
    """``source`` with the lines strictly between the ``start`` and ``end`` markers replaced by ``body``."""
    lines = source.splitlines(keepends=True)
    first, last = _block(lines, start, end)
    return "".join(lines[: first + 1]) + body.rstrip("\n") + "\n" + "".join(lines[last:])


def _fill_generated(template: str, comments: list[str], constants: dict[str, Any]) -> str:
    """Write the run's values into the template's generated block.

    Raises:
        RuntimeError: The template's block names other constants than ``constants`` (the template and
            this generator disagree: a bug, caught by the tests).
    """
    lines = template.splitlines(keepends=True)
    first, last = _block(lines, GENERATED_START, GENERATED_END)
    expected = [
        target.id
        for node in ast.parse("".join(lines[first + 1 : last])).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    if expected != list(constants):
        raise RuntimeError(f"The template's generated block holds {expected}; the generator wrote {list(constants)}.")
    body = [f"# {line}" for line in comments] + [f"{name} = {value!r}" for name, value in constants.items()]
    return _replace_block(template, GENERATED_START, GENERATED_END, "\n".join(body))


def _fill_shared(template: str, functions: dict[str, Any] | None = None) -> str:
    """Replace each ``# <shared: module.function>`` block with that Transfer Lab function's source.

    Args:
        template: The template's text.
        functions: Qualified name -> function; the reproduce script's two when None.

    Raises:
        RuntimeError: A block names something other than the functions given.
    """
    if functions is None:
        from transfer_core.data import augment, split

        functions = {
            "transfer_core.data.augment.build_augmenter": augment.build_augmenter,
            "transfer_core.data.split.split_sizes": split.split_sizes,
        }
    named = [line[len(SHARED_START):].split(">", 1)[0] for line in template.splitlines() if line.startswith(SHARED_START)]
    if sorted(named) != sorted(functions):
        raise RuntimeError(f"The template shares {named}; the generator fills {list(functions)}.")
    for name in named:
        template = _replace_block(template, f"{SHARED_START}{name}>", SHARED_END, inspect.getsource(functions[name]))
    return template


def _stage2_trainable(config: RunConfig) -> tuple[str | None, list[str]]:
    """Backbone layers that fine-tuning unfreezes: ``(first_layer, [])`` for a suffix, else ``(None, names)``."""
    from transfer_core import freezing, zoo

    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    base = zoo.build_backbone(config.model.backbone, size, weights="random")
    # BatchNorm is handled by the script itself (TRAIN_BATCHNORM), so mark it trainable here.
    freezing.apply_freeze_plan(base, dataclasses.replace(config.freeze, train_batchnorm=True))
    mask = [bool(layer.trainable) for layer in base.layers] if base.trainable else [False] * len(base.layers)
    names = [layer.name for layer in base.layers]
    if True in mask:
        first = mask.index(True)
        if all(mask[first:]):
            return names[first], []
    return None, [n for n, m in zip(names, mask, strict=True) if m]


def generate_script(config: RunConfig, run_id: str = "", val_accuracy: float | None = None) -> str:
    """A standalone Python script that reproduces a run with plain Keras/TensorFlow.

    The script reads the manifest of the data set version the run used when the
    folder has it (the run's exact split and labels), else a folder with one sub-folder per class (inside
    ``train/`` and ``val/`` when present, otherwise split by the same
    content-hash rule). It builds the same backbone, preprocessing and head,
    trains with the same recipe and settings, prints the validation accuracy
    and saves ``model.keras``.

    Args:
        config: The run's configuration.
        run_id: Named in the script's settings block.
        val_accuracy: The run's validation accuracy, quoted in the settings block.

    Returns:
        The script's source text.
    """
    from transfer_core import zoo

    model, train, freeze, dataset = config.model, config.train, config.freeze, config.dataset
    info = zoo.get_backbone_info(model.backbone)
    size = zoo.check_input_size(model.backbone, model.input_size)
    unfreeze_from, trainable_layers = (None, [])
    if train.strategy == "fine_tuning":
        unfreeze_from, trainable_layers = _stage2_trainable(config)
    accuracy = f" (validation accuracy {val_accuracy:.4f})" if val_accuracy is not None else ""
    comments = [
        f"Transfer Lab run {run_id or '(unnamed)'}{accuracy}, generated {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC.",
        f"Strategy: {train.strategy.replace('_', ' ')}; backbone: {info.display_name} at {size}x{size} pixels.",
    ]
    constants = {
        "CLASS_NAMES": list(dataset.class_names),
        "BACKBONE": info.constructor,
        "BACKBONE_KWARGS": dict(info.constructor_kwargs),
        "BACKBONE_FAMILY": info.family,
        "PREPROCESSING": info.preprocessing,
        "INPUT_SIZE": size,
        "WEIGHTS": model.weights,
        "WEIGHTS_FILES": zoo.candidate_weight_files(info.key, size, include_top=False),
        "WEIGHTS_ORIGIN": info.weights_origin,
        "DROPOUT_RATE": model.dropout_rate,
        "HIDDEN_UNITS": model.hidden_units,
        "HEAD_POOLING": model.head,
        "STRATEGY": train.strategy,
        "EPOCHS": train.epochs,
        "FINE_TUNE_EPOCHS": train.fine_tune_epochs if train.strategy == "fine_tuning" else 0,
        "BATCH_SIZE": train.batch_size,
        "LEARNING_RATE": train.learning_rate,
        "FINE_TUNE_LEARNING_RATE": train.fine_tune_learning_rate,
        "OPTIMIZER": train.optimizer,
        "AUGMENTATIONS": tuple(AUGMENTATIONS),
        "AUGMENTATION": list(train.augmentation),
        "EARLY_STOPPING_PATIENCE": train.early_stopping_patience,
        "CLASS_WEIGHTS": train.class_weights,
        "SEED": train.seed,
        "PRECISION": train.precision,
        "SPLIT_SEED": dataset.seed,
        "VAL_FRACTION": dataset.val_fraction,
        "TEST_FRACTION": dataset.test_fraction,
        "MANIFEST": dataset.manifest_path.relative_to(dataset.root).as_posix(),
        "UNFREEZE_FROM_LAYER": unfreeze_from,
        "UNFREEZE_LAYERS": trainable_layers,
        "TRAIN_BATCHNORM": bool(freeze.train_batchnorm or train.strategy == "from_scratch"),
    }
    # Training's own augmenter and split sizes, verbatim: the script cannot do them differently from the app.
    return _fill_shared(_fill_generated(read_template("reproduce.py"), comments, constants))


def predict_snippet(config: RunConfig, model_file: str = EXPORT_FORMATS["keras"].file_name) -> str:
    """A short script that loads the exported ``.keras`` model and predicts one image.

    Args:
        config: The run's configuration (class names, input size).
        model_file: The exported model's file name.

    Returns:
        Python source text.
    """
    from transfer_core import zoo

    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    constants = {"CLASS_NAMES": list(config.dataset.class_names), "INPUT_SIZE": size, "MODEL_FILE": model_file}
    return _fill_generated(read_template("predict.py"), ["CLASS_NAMES are also in labels.txt, one per line, in this order."],
                           constants)


def runner_script(config: RunConfig, key: str) -> str:
    """A short program that runs one exported TFLite or ONNX file on an image and prints the top classes.

    It needs NumPy, Pillow and the format's runtime (LiteRT or onnxruntime), no TensorFlow: it decodes and
    resizes the image like the app (:func:`transfer_core.export.pixels.load_pixels`, written into it).

    Args:
        config: The run's configuration (class names, input size).
        key: A format of :data:`RUNNER_TEMPLATES`.

    Returns:
        Python source text.

    Raises:
        ValueError: A format without a runner.
    """
    from transfer_core import zoo
    from transfer_core.export import pixels

    if key not in RUNNER_TEMPLATES:
        raise ValueError(f"format must be among {tuple(RUNNER_TEMPLATES)}. Received: format={key!r}")
    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    constants = {"CLASS_NAMES": list(config.dataset.class_names), "INPUT_SIZE": size,
                 "MODEL_FILE": EXPORT_FORMATS[key].file_name}
    source = _fill_generated(read_template(RUNNER_TEMPLATES[key]),
                             ["CLASS_NAMES are also in labels.txt, one per line, in this order."], constants)
    return _fill_shared(source, {"transfer_core.export.pixels.load_pixels": pixels.load_pixels})
