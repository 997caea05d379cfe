"""The tiny models the fast tests train: MobileNetV2 0.35 at 32x32 with random weights (seconds on a CPU)."""

from __future__ import annotations

from transfer_core.config import ModelSpec

# No dropout: the tests that compare predictions or weights need a deterministic head.
TINY_MODEL = ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random", dropout_rate=0.0)

# The same with ModelSpec's default dropout, as the app would build it; the worker-process tests use it.
TINY_MODEL_DEFAULT_DROPOUT = ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random")
