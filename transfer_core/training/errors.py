"""How a run ends early: the two exceptions the engine's steps raise and :func:`train` catches."""

from __future__ import annotations


class RunStopped(Exception):
    """Raised inside the engine when a stop was requested."""


class RunFailed(Exception):
    """Raised inside the engine for a failure with a user-facing reason."""
