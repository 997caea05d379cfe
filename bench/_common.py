"""Small helpers shared by the benchmark scripts (timing, medians, data, output)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFER_OFFLINE", "1")

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "hymenoptera_data"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "weights"


@contextmanager
def stopwatch(into: list[float]):
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values)


def repeat(fn: Callable[[], float], times: int) -> list[float]:
    return [fn() for _ in range(times)]


def ingest(source: Path, home: Path):
    """An ingested DatasetSpec for a folder or ZIP (cached under ``home``)."""
    from transfer_core.cli import prepare_dataset
    from transfer_core.config import Settings

    return prepare_dataset(Path(source), Settings(home=home), quiet=True)


def rss_mb(pid: int | None = None) -> float:
    """Current resident memory of ``pid`` (default: this process) in MB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_result(result: dict, out: str | None) -> None:
    print(json.dumps(result, indent=2))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
