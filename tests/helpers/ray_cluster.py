"""A real local Ray head for the job tests of the Ray executor (``TRANSFER_EXECUTOR=ray``).

Import the ``ray_address`` fixture into a test module. The head listens on loopback only,
with 2 CPUs, no dashboard and a small object store (runs pass no data through it); this
test process is its driver, as the app server is in production. Skips when Ray is absent.

Its task processes run at the local workers' nice value (10), not Ray's default 15: beside a CPU hog
at nice 0 on every core a nice-15 task gets ~3.4 % of a core (CFS weights 36 against 1024), a third of
a local worker's share, and the Ray runs outlasted waits that hold for local runs (BENCHMARKS.md, the
suite under a CPU hog, attempt 13).
"""

from __future__ import annotations

import os

import pytest

from transfer_core.config import Settings

_cluster = {"users": 0, "address": None}


@pytest.fixture(scope="session")
def ray_address() -> str:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    if _cluster["address"] is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                           object_store_memory=80 * 1024**2, log_to_driver=False, configure_logging=False,
                           _system_config={"worker_niceness": Settings.worker_nice})
        _cluster["address"] = context.address_info["gcs_address"]
    _cluster["users"] += 1
    yield _cluster["address"]
    _cluster["users"] -= 1
    if _cluster["users"] == 0:
        ray.shutdown()  # Stops the head and its workers, which this process started.
        _cluster["address"] = None
