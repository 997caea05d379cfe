"""Deterministic, stratified train/val/test split by content hash and seed.

Within each class, images are ordered by ``sha256(f"{seed}:{content_sha256}")``
and the first ones go to validation, the next to test, the rest to training.
The split therefore depends only on the files' content and the seed: renaming,
reordering or re-uploading the same files gives the same split, and every
strategy compared on a data set sees the same validation images.
A new split with other settings is a new version of the data set (``data.fixes.resplit``).
"""

from __future__ import annotations

import hashlib
import math

import pandas as pd


def hash_split(frame: pd.DataFrame, *, seed: int, val_fraction: float, test_fraction: float) -> pd.Series:
    """Assign each manifest row to ``train``, ``val`` or ``test``.

    Per class of ``n`` images: ``round(n * val_fraction)`` go to validation (at
    least 1 when ``n >= 2``), then ``round(n * test_fraction)`` to test (at least
    1 when ``test_fraction > 0`` and ``n >= 3``), always leaving at least one
    image for training. A class with a single image goes to training. Rounding
    is half-up, so 2.5 becomes 3.

    Args:
        frame: Rows with at least ``label`` and ``sha256`` columns.
        seed: Split seed.
        val_fraction: Share of each class for validation.
        test_fraction: Share of each class for test.

    Returns:
        A string Series aligned with ``frame.index``.
    """
    splits = pd.Series("train", index=frame.index, dtype=object)
    if frame.empty:
        return splits
    order_key = frame["sha256"].map(lambda digest: hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest())
    for _, group in frame.assign(_order=order_key).groupby("label", sort=False):
        # Ties (the same content twice in one class) are broken by the content hash
        # and then the path, so even then the order does not depend on input order.
        ordered = group.sort_values(["_order", "sha256", "path"] if "path" in group else ["_order", "sha256"])
        n_val, n_test = split_sizes(len(ordered), val_fraction, test_fraction)
        splits.loc[ordered.index[:n_val]] = "val"
        splits.loc[ordered.index[n_val : n_val + n_test]] = "test"
    return splits


# Public because the reproduce script (transfer_core/export/script.py) is given this function's source.
def split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``count`` images go to validation and test."""
    if count < 2:
        return 0, 0
    n_val = max(1, math.floor(count * val_fraction + 0.5))
    n_test = math.floor(count * test_fraction + 0.5)
    if test_fraction > 0 and count >= 3:
        n_test = max(1, n_test)
    # Training needs at least one image; take it from test first, then validation.
    while n_val + n_test > count - 1 and n_test > 0:
        n_test -= 1
    n_val = min(n_val, count - 1 - n_test)
    return n_val, n_test
