"""The training engine, split by job (see ARCHITECTURE.md):

- :mod:`~transfer_core.training.api`: :func:`train`, :func:`preflight`, :func:`compute_head_features`
- :mod:`~transfer_core.training.recipes`: the three strategies as small named steps
- :mod:`~transfer_core.training.loop`: the one lean training loop and its batch adapters
- :mod:`~transfer_core.training.inputs`: splits, tf.data pipelines, the decode-once image cache
- :mod:`~transfer_core.training.feature_cache`: backbone/prefix outputs cached on disk
- :mod:`~transfer_core.training.progress`: epoch rows, stop/divergence/early stopping, the callback
- :mod:`~transfer_core.training.evaluation`: metrics of the kept model and the run report
- :mod:`~transfer_core.training.keras_state`: the one place that resets Keras' global state

Importing this package does not import TensorFlow; a run does.
"""

from transfer_core.training.api import TrainResult, compute_head_features, preflight, train
from transfer_core.training.context import SplitData
from transfer_core.training.errors import BudgetUsed, RunFailed, RunStopped
from transfer_core.training.inputs import load_split
from transfer_core.training.keras_state import (
    make_optimizer,
    release_run_state,
    reset_keras_state,
    resolve_precision,
)

__all__ = [
    "BudgetUsed",
    "RunFailed",
    "RunStopped",
    "SplitData",
    "TrainResult",
    "compute_head_features",
    "load_split",
    "make_optimizer",
    "preflight",
    "release_run_state",
    "reset_keras_state",
    "resolve_precision",
    "train",
]
