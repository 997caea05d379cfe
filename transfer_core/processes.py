"""Is a process still the one that wrote a pid file? (Linux /proc, with a portable fallback.)

A leaf module (standard library only): the run store and the job runner both ask it.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int, start_time: float | None) -> bool:
    """True if ``pid`` runs and (on Linux) is the same process that wrote the pid file."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start_time is None:
        return True
    try:
        fields = stat_fields(Path(f"/proc/{pid}/stat"))
        if fields[0] in ("Z", "X"):  # A zombie, or one being reaped ("X"), has finished.
            return False
        return abs(_started(fields) - start_time) < 5.0
    except FileNotFoundError:
        # Reaped between os.kill and the read (a zombie that was "dead" a moment ago must not come
        # back to life: a page would show a killed run as running). Without /proc: os.kill said it ran.
        return not Path("/proc/self/stat").exists()
    except (OSError, IndexError, ValueError):
        return True  # Unreadable /proc: os.kill said it ran.


def process_start_time(pid: int) -> float | None:
    """Start time of ``pid`` in seconds since the epoch (Linux), else None."""
    try:
        return _started(stat_fields(Path(f"/proc/{pid}/stat")))
    except (OSError, IndexError, ValueError):
        return None


def stat_fields(stat_path: Path) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` (or ``/proc/<pid>/task/<tid>/stat``) file after the command.

    Index 0 is the state (field 3 in proc(5)), 16 the nice value, 19 the start time in clock ticks.
    The command comes first, in parentheses, and may itself hold spaces and ")", hence the split at
    the last ")".
    """
    return stat_path.read_text().rsplit(")", 1)[1].split()


def _started(fields: list[str]) -> float:
    return boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime"):
            return float(line.split()[1])
    return 0.0


def lower_priority(niceness: int) -> None:
    """Raise this process's nice value to at least ``niceness``; never lowers it (that needs root).

    On Linux the nice value belongs to each thread and threads started later inherit it; threads
    already running (a BLAS pool started by an import) are raised one by one.
    """
    if niceness <= 0 or not hasattr(os, "getpriority"):
        return
    tasks = Path("/proc/self/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for thread in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
                os.setpriority(os.PRIO_PROCESS, thread, niceness)
        except OSError:
            pass  # A thread that ended, or a sandbox that refuses: it runs at the server's priority.
