"""Load a Keras model file that a person uploaded, without running any code it carries.

A ``.keras`` file is a ZIP holding ``config.json`` (the architecture), the
weights and ``metadata.json``. The architecture can name Python code: a
``Lambda`` layer stores a function's bytecode, and any object may name a
module and a class or function to import. Keras' safe mode refuses lambdas,
but safe mode has had bypasses (CVE-2025-1550, CVE-2025-8747), so this module
checks the configuration itself before Keras sees the file:

* only ``.keras`` files (a legacy ``.h5`` / SavedModel can hold pickled or
  marshalled code and has no safe mode);
* the file is a ZIP with a ``config.json`` of sane size;
* no ``Lambda`` layer, no serialised Python function (``__lambda__``), and every
  ``module`` named in the configuration belongs to Keras;

and only then calls ``keras.saving.load_model(..., safe_mode=True)``. Anything
else raises :class:`UnsafeModelError` with a message a person can act on.

Keras is imported only inside :func:`load_keras_model`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TensorFlow out of imports.
    import keras

__all__ = ["UnsafeModelError", "check_keras_config", "image_input_size", "load_keras_model"]

# Largest config.json read (architectures of the zoo are well under 2 MB).
MAX_CONFIG_BYTES = 32 * 1024 * 1024
_DEFAULT_MAX_BYTES = 200 * 1024 * 1024
_TRUSTED_MODULE_ROOTS = ("keras",)
_CODE_CLASS_NAMES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"}


class UnsafeModelError(ValueError):
    """A model file that is refused; ``str(error)`` says why and what to do."""


def load_keras_model(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> keras.Model:
    """Load a user's ``.keras`` model for inference, refusing files that carry code.

    Args:
        source: A path to a ``.keras`` file, or its bytes (a browser upload).
        name: The file name as the user gave it (checked for ``.keras`` when
            ``source`` is bytes; defaults to the path's name).
        max_bytes: Largest file accepted (``Settings.max_upload_mb`` in bytes).

    Returns:
        The model (not compiled), loaded with ``safe_mode=True``.

    Raises:
        UnsafeModelError: The file is not a ``.keras`` file, is too large, is
            not a readable Keras archive, or its configuration holds a
            ``Lambda`` layer, a serialised Python function or a class from
            outside Keras; also when Keras itself refuses or fails to load it.
    """
    data, shown = _read_source(source, name, max_bytes)
    config = _read_config(data, shown)
    check_keras_config(config, shown)

    import keras

    # Keras reads a path; a private temporary file keeps the bytes away from anything shared.
    with tempfile.TemporaryDirectory(prefix="transfer-upload-") as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as error:  # noqa: BLE001 - any failure is the file's, reported plainly.
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UnsafeModelError(
                f"{shown} could not be loaded in Keras' safe mode ({type(error).__name__}: {text[:300]})."
            ) from None


def image_input_size(model: keras.Model) -> tuple[int, int]:
    """The square image side and the number of classes of an image classifier.

    Args:
        model: A loaded model.

    Returns:
        ``(input_side, num_classes)``.

    Raises:
        UnsafeModelError: The model does not take one square RGB image
            (``(None, side, side, 3)``) or does not output one score per class.
    """
    inputs = model.inputs
    input_shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
    output_shape = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else ()
    if len(input_shape) != 4 or input_shape[3] != 3 or not input_shape[1] or input_shape[1] != input_shape[2]:
        raise UnsafeModelError(
            f"This model does not take square RGB images (its input is {input_shape or 'several tensors'}); "
            "it cannot be used here."
        )
    if len(output_shape) != 2 or not output_shape[1] or output_shape[1] < 2:
        raise UnsafeModelError(
            f"This model does not output one score per class (its output is {output_shape or 'several tensors'})."
        )
    return int(input_shape[1]), int(output_shape[1])


def check_keras_config(config: Any, shown: str = "the model") -> None:
    """Refuse a Keras configuration that names code.

    Args:
        config: The parsed ``config.json`` of a ``.keras`` file.
        shown: How to name the file in messages.

    Raises:
        UnsafeModelError: For a ``Lambda`` layer, a serialised Python function,
            or a ``module`` outside Keras (a custom or arbitrary class).
    """
    for node in _dicts(config):
        class_name = node.get("class_name")
        if class_name in _CODE_CLASS_NAMES:
            what = "a Lambda layer" if "Lambda" in str(class_name) else "a serialised Python function"
            raise UnsafeModelError(
                f"{shown} is refused: it contains {what}, which holds Python code that would run on this "
                "server. Rebuild the model without Lambda layers (use built-in Keras layers) and save it again."
            )
        module = node.get("module")
        if module is not None and not _trusted_module(module):
            raise UnsafeModelError(
                f"{shown} is refused: it names {module!r}.{class_name} outside Keras (a custom class or "
                "function, whose code would have to run on this server). Only models made of built-in Keras "
                "layers can be uploaded."
            )
        registered = node.get("registered_name")
        if (
            isinstance(registered, str)
            and ">" in registered
            and not _trusted_module(registered.split(">")[0])
        ):
            raise UnsafeModelError(
                f"{shown} is refused: it uses the custom object {registered!r}, whose code is not part of Keras."
            )


def _trusted_module(module: Any) -> bool:
    if not isinstance(module, str):
        return False
    root = module.split(".", 1)[0]
    return root in _TRUSTED_MODULE_ROOTS


def _dicts(value: Any, depth: int = 0) -> Iterator[dict]:
    """Every dict inside ``value``, depth first (bounded, so a hostile nesting cannot recurse forever)."""
    if depth > 200:
        raise UnsafeModelError("The model's configuration is nested too deeply to check.")
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item, depth + 1)


def _read_source(source: str | os.PathLike | bytes, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        shown = name or "the uploaded model"
        if name is not None and not name.lower().endswith(".keras"):
            raise UnsafeModelError(_not_keras_message(name))
        if len(source) > max_bytes:
            raise UnsafeModelError(f"{shown} is larger than the limit of {max_bytes // (1024 * 1024)} MB.")
        return bytes(source), shown
    path = Path(source)
    shown = name or path.name
    if not shown.lower().endswith(".keras"):
        raise UnsafeModelError(_not_keras_message(shown))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UnsafeModelError(f"{shown} is larger than the limit of {max_bytes // (1024 * 1024)} MB.")
        return path.read_bytes(), shown
    except OSError as error:
        raise UnsafeModelError(f"{shown} could not be read ({error.strerror or error}).") from None


def _not_keras_message(name: str) -> str:
    return (
        f"{name} is refused: only Keras 3 '.keras' model files can be uploaded (legacy .h5 files, SavedModel "
        "folders and pickles can carry code that would run on this server). Save the model with "
        "model.save('model.keras')."
    )


def _read_config(data: bytes, shown: str) -> Any:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise UnsafeModelError(f"{shown} is not a Keras model file: it has no config.json.") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise UnsafeModelError(f"{shown} has an implausibly large configuration; refused.")
            with archive.open(info) as handle:
                text = handle.read(MAX_CONFIG_BYTES + 1)
    except UnsafeModelError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as error:
        raise UnsafeModelError(
            f"{shown} is not a readable Keras model file ({type(error).__name__}: {error})."
        ) from None
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise UnsafeModelError(f"{shown} has an unreadable configuration ({error}).") from None
