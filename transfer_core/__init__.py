"""transfer_core: the library behind Transfer Lab's app and command line.

Importing this package is cheap (no TensorFlow); modules that need TensorFlow
import it inside their functions. Never imports streamlit.
"""

# Modules by job (none imports TensorFlow until a function that needs it runs).
from transfer_core import (
    charts,
    classroom,
    compare,
    data,
    evaluate,
    events,
    explain,
    export,
    fileio,
    freezing,
    inference,
    jobs,
    lr_finder,
    models,
    processes,
    project_file,
    run_text,
    runs,
    safe_load,
    training,
    workspace,
    zoo,
)
from transfer_core.config import (
    AUGMENTATIONS,
    FREEZE_MODES,
    OPTIMIZERS,
    STRATEGIES,
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)
from transfer_core.evaluate import evaluate_predictions
from transfer_core.jobs import enforce_stop, follow, queue_position, request_stop, start_run, stop_and_wait
from transfer_core.report import RunReport
from transfer_core.runs import RunInfo, RunStore, batch_frame, epoch_frame, load_run, read_events
from transfer_core.workspace import Workspace

__all__ = [
    "charts",
    "classroom",
    "compare",
    "data",
    "evaluate",
    "events",
    "explain",
    "export",
    "fileio",
    "freezing",
    "inference",
    "jobs",
    "lr_finder",
    "models",
    "processes",
    "project_file",
    "run_text",
    "runs",
    "safe_load",
    "training",
    "workspace",
    "zoo",
    "AUGMENTATIONS",
    "FREEZE_MODES",
    "OPTIMIZERS",
    "STRATEGIES",
    "DatasetSpec",
    "FreezePlan",
    "ModelSpec",
    "RunConfig",
    "RunInfo",
    "RunReport",
    "RunStore",
    "Settings",
    "TrainConfig",
    "Workspace",
    "batch_frame",
    "enforce_stop",
    "epoch_frame",
    "evaluate_predictions",
    "follow",
    "load_run",
    "queue_position",
    "read_events",
    "request_stop",
    "start_run",
    "stop_and_wait",
]
