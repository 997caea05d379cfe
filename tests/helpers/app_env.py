"""The environment the app reads, set for one test: light (no TensorFlow), so any conftest may import it."""

from __future__ import annotations

from pathlib import Path

import pytest


def point_app_at(home: Path, patch: pytest.MonkeyPatch, *, weights_dir: Path | None) -> None:
    """Set the environment the app reads: ``home`` as TRANSFER_HOME, offline, no data-folder allow-list,
    and ``weights_dir`` as TRANSFER_WEIGHTS_DIR (unset when None). The caller clears ``state.settings``."""
    patch.setenv("TRANSFER_HOME", str(home))
    patch.setenv("TRANSFER_OFFLINE", "1")
    patch.delenv("TRANSFER_ALLOWED_DATA_DIRS", raising=False)
    if weights_dir is not None:
        patch.setenv("TRANSFER_WEIGHTS_DIR", str(weights_dir))
    else:
        patch.delenv("TRANSFER_WEIGHTS_DIR", raising=False)
