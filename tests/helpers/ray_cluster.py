"""A real local Ray head for the job tests of the Ray executor (``TRANSFER_EXECUTOR=ray``).

Import the ``ray_address`` fixture into a test module. The head listens on loopback only,
with 2 CPUs, no dashboard and a small object store (runs pass no data through it); this
test process is its driver, as the app server is in production. Skips when Ray is absent.
"""

from __future__ import annotations

import os

import pytest

_cluster = {"users": 0, "address": None}


@pytest.fixture(scope="session")
def ray_address() -> str:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    if _cluster["address"] is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                           object_store_memory=80 * 1024**2, log_to_driver=False, configure_logging=False)
        _cluster["address"] = context.address_info["gcs_address"]
    _cluster["users"] += 1
    yield _cluster["address"]
    _cluster["users"] -= 1
    if _cluster["users"] == 0:
        ray.shutdown()  # Stops the head and its workers, which this process started.
        _cluster["address"] = None
