"""Reading /proc: a command name with spaces and ")" does not shift the fields; our own process is alive."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from transfer_core import processes
from transfer_core.processes import process_alive, process_start_time, stat_fields


def test_stat_fields_split_after_the_last_parenthesis(tmp_path):
    stat = tmp_path / "stat"
    # proc(5): pid (comm) state ppid ... ; a comm may be "a) b" (a process can name itself anything).
    stat.write_text("4242 (a) b) S 1 4242 4242 0 -1 4194560 10 0 0 0 1 2 0 0 20 10 3 0 123456 0 0\n")
    fields = stat_fields(stat)
    assert fields[0] == "S"
    assert fields[16] == "10"  # The nice value.
    assert fields[19] == "123456"  # Start time, in clock ticks since boot.


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc only")
def test_this_process_is_alive_and_a_wrong_start_time_is_another_process():
    started = process_start_time(os.getpid())
    assert started is not None and abs(started - time.time()) < 24 * 3600 * 365
    assert process_alive(os.getpid(), started)
    assert process_alive(os.getpid(), None)
    assert not process_alive(os.getpid(), started - 3600)  # A recycled pid: not the process that wrote the file.
    assert int(stat_fields(Path(f"/proc/{os.getpid()}/stat"))[16]) == os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc only")
def test_a_process_reaped_between_the_kill_check_and_the_proc_read_is_dead(monkeypatch):
    """A worker killed with -9 is a zombie, then reaped by the spawner's thread: if the reap lands between
    ``os.kill(pid, 0)`` and reading ``/proc/<pid>/stat``, the process must still count as ended (CI once
    showed a killed run's page with Start disabled: the run read as running again)."""
    process = subprocess.Popen(["sleep", "60"])
    started = process_start_time(process.pid)
    assert started is not None and process_alive(process.pid, started)
    process.kill()
    process.wait()  # Reaped: /proc/<pid> is gone.
    assert not process_alive(process.pid, started)
    monkeypatch.setattr(processes.os, "kill", lambda pid, signal: None)  # os.kill ran just before the reap.
    assert not process_alive(process.pid, started)
