"""Shared test helpers, one module per job; tests import them as ``from helpers.runs import wait_for``.

- ``models``: the tiny models the fast tests train (``TINY_MODEL`` and its variants).
- ``datasets``: tiny synthetic data sets (the demo shapes generator at 32x32).
- ``runs``: finished runs made in-process, ``tiny_config``, ``wait_for``.
- ``browser``: a real ``streamlit run`` server and headless Chromium (also used by bench/).
- ``ray_cluster``: a local Ray head as a fixture.
- ``bad_files``: every kind of bad upload, archives and folder snapshots.
- ``workspaces``: a workspace with finished runs for the page tests.
- ``app_env``: the environment variables the app reads, pointed at a test's TRANSFER_HOME.
- ``images``: encoded images and seeded noise PNGs.

How they are found: ``pythonpath = ["tests"]`` in pyproject.toml's pytest options puts ``tests/`` on
``sys.path`` before any test is collected, so ``helpers`` is a top-level package wherever a test lives.
This is one explicit setting instead of relying on where pytest's rootdir conftest sits, and it keeps
test files out of a package tree (pytest's default ``prepend`` import mode, no ``tests/__init__.py``).
Programs outside pytest do the same by hand: bench/ scripts insert ``<repo>/tests`` into ``sys.path``,
and tests that start a child Python which imports a test module put ``tests/`` on its ``PYTHONPATH``.
"""
