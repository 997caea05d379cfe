"""The inference worker: TensorFlow work of the pages, outside the web server (ARCHITECTURE.md, decision 8).

Pages call the functions re-exported here; they return plain data. The worker process
is started on first use, keeps models loaded, and retires when idle or orphaned.
"""

from transfer_core.inference.api import (
    augmentation_preview,
    block_map,
    cell_grad_cams,
    embeddings,
    embeddings_request,
    explain_images,
    export_and_check,
    export_request,
    imagenet_preview,
    lr_find,
    lr_find_request,
    model_input_size,
    model_view,
    reproduction_script,
    user_model_info,
    user_model_predict,
    validation_predictions,
)
from transfer_core.inference.client import (
    IDLE_SECONDS,
    Done,
    Pending,
    Progress,
    call,
    ensure_worker,
    peek,
    request,
    shutdown,
    worker_pid,
)
from transfer_core.inference.protocol import (
    InferenceError,
    InferenceTaskError,
    InferenceTimeout,
    InferenceWorkerDied,
)
from transfer_core.inference.results import ImageExplanation, UserModelInfo

__all__ = [
    "augmentation_preview",
    "Done",
    "IDLE_SECONDS",
    "ImageExplanation",
    "InferenceError",
    "InferenceTaskError",
    "InferenceTimeout",
    "InferenceWorkerDied",
    "Pending",
    "Progress",
    "UserModelInfo",
    "block_map",
    "call",
    "cell_grad_cams",
    "embeddings",
    "embeddings_request",
    "ensure_worker",
    "explain_images",
    "export_and_check",
    "export_request",
    "imagenet_preview",
    "lr_find",
    "lr_find_request",
    "model_input_size",
    "model_view",
    "peek",
    "reproduction_script",
    "request",
    "shutdown",
    "user_model_info",
    "user_model_predict",
    "validation_predictions",
    "worker_pid",
]
