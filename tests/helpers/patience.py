"""How long a test waits for an event on this machine now; a leaf module (no TensorFlow), so browser
tests and the benches that drive browsers can use it too."""

from __future__ import annotations

import os


def patience(seconds: float) -> float:
    """A wait limit for this machine now: ``seconds`` on a quiet machine, longer under load.

    Scaled by the 1-minute load average per core (1x to 6x), read at each call (``wait_for`` calls it at every poll): with other work on
    every core (a CPU hog at normal priority) the workers, at nice 10, get a fraction of a core, and a
    run that takes 20 s on a quiet machine can take minutes. Tests wait for events; this only bounds
    how long a wait for an event that never comes takes to fail.
    """
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * min(6.0, max(1.0, load))


def wait_ms(seconds: float) -> int:
    """:func:`patience` of ``seconds``, in the milliseconds Playwright's ``timeout=`` takes. Read when the
    wait starts: a Playwright wait cannot re-read the load while it waits."""
    return int(patience(seconds) * 1000)
