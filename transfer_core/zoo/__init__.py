"""The backbone zoo: which pretrained networks exist, their facts, and their weights.

A backbone is one of the ``keras.applications`` constructors at a fixed width
(``alpha``), described by a frozen :class:`BackboneInfo`. This module answers
"what can I pick and is it usable offline?" without importing TensorFlow, so the
app's Model page and ``python -m transfer_core zoo`` stay fast; Keras is imported
lazily, inside the functions that build models or layers.

Pretrained weights are resolved offline first (see ARCHITECTURE.md):

1. the offline weights folder (``Settings.weights_dir``, ``TRANSFER_WEIGHTS_DIR``),
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``),
3. a download by ``keras.utils.get_file`` from Keras' own URL (skipped when
   ``Settings.offline`` is set, environment variable ``TRANSFER_OFFLINE``),
4. otherwise :class:`WeightsUnavailableError`, whose message names the file,
   the folders searched and where to put the file, and offers random
   initialisation (no transfer) as the alternative.

Local files are used as found: no hash is checked (Keras checks none for
MobileNet v1/v2 either), so a truncated file shows up when it is loaded, as a
:class:`WeightsUnavailableError` from :func:`build_backbone`.
"""

from transfer_core.zoo.build import (
    build_backbone,
    build_imagenet_classifier,
    decode_imagenet,
    imagenet_class_names,
    preprocessing_layers,
)
from transfer_core.zoo.catalog import (
    BACKBONES,
    CLASS_INDEX_FILE,
    CLASS_INDEX_URL,
    MAX_INPUT_SIZE,
    PREPROCESSING_MODES,
    BackboneInfo,
    WeightsUnavailableError,
    check_input_size,
    get_backbone_info,
)
from transfer_core.zoo.weights import (
    candidate_weight_files,
    offline_backbones,
    resolve_weights,
    weights_available_offline,
    zoo_table,
)

__all__ = [
    "BACKBONES",
    "CLASS_INDEX_FILE",
    "CLASS_INDEX_URL",
    "MAX_INPUT_SIZE",
    "PREPROCESSING_MODES",
    "BackboneInfo",
    "WeightsUnavailableError",
    "build_backbone",
    "build_imagenet_classifier",
    "candidate_weight_files",
    "check_input_size",
    "decode_imagenet",
    "get_backbone_info",
    "imagenet_class_names",
    "offline_backbones",
    "preprocessing_layers",
    "resolve_weights",
    "weights_available_offline",
    "zoo_table",
]
