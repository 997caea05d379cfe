"""transfer_core: the library behind Transfer Lab's app and command line.

Importing this package is cheap (no TensorFlow); modules that need TensorFlow
import it inside their functions. Never imports streamlit.
"""

import importlib
from typing import Any

# Submodules and re-exported names are imported on first use (PEP 562): a worker process or the
# CLI that needs only the job runner does not pay for pandas' and plotly's imports up front
# (8 queued workers starting at once on 2 cores; BENCHMARKS.md, "A classroom on one server").
_SUBMODULES = frozenset({
    "cli", "cli_export", "compare", "config", "data", "display", "doctor", "events", "explore", "export", "fileio",
    "freezing", "frozen_runtime", "inference", "jobs", "live", "metrics", "models", "processes", "report", "runs",
    "sessions", "strategies", "training", "zoo",
})
_NAMES = {
    **dict.fromkeys(("AUGMENTATIONS", "FREEZE_MODES", "OPTIMIZERS", "STRATEGIES", "DatasetSpec", "FreezePlan",
                     "ModelSpec", "RunConfig", "Settings", "TrainConfig"), "config"),
    "evaluate_predictions": "metrics",
    **dict.fromkeys(("enforce_stop", "follow", "queue_position", "request_stop", "start_run", "stop_and_wait"),
                    "jobs"),
    "RunReport": "report",
    **dict.fromkeys(("RunInfo", "RunStatus", "RunStore", "batch_frame", "epoch_frame", "load_run", "read_events"), "runs"),
    "Workspace": "sessions.workspace",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = sorted(_SUBMODULES | _NAMES.keys())  # One list of names: the two tables above.
