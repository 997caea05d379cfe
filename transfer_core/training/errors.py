"""How a run ends early: the exceptions the engine's steps raise and :func:`train` catches."""

from __future__ import annotations


class RunStopped(Exception):
    """Raised inside the engine when a stop was requested."""


class BudgetUsed(Exception):
    """Raised at an epoch boundary once the run's time budget is used; the run still finishes."""


class RunFailed(Exception):
    """Raised inside the engine for a failure with a user-facing reason."""
