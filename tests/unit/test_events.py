"""Every event a code path writes is declared in transfer_core.events, with its fields.

(a) Real runs (tiny synthetic data, random weights, 32 px; one pretrained pair for the cache-hit
event) of all three strategies, a stopped and a failed one, and runs through the real job runner:
every line of their events.jsonl must match its declaration, and every declared type and field
must be written by one of them (no stale declarations). (b) An AST scan of transfer_core: every
dict literal with a "type" key passed to emit/log/write names a declared type.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from helpers.models import TINY_MODEL
from helpers.runs import patience

from transfer_core import events as event_schema
from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.events import EVENT_SCHEMAS, EVENT_TYPES, fields_of, validate_event
from transfer_core.runs import EventLog, RunStore, read_events

PACKAGE = Path(__file__).resolve().parents[2] / "transfer_core"


# ----- (b) static: what the code can emit ---------------------------------------------------------


def _emitted_literals() -> list[tuple[str, int, ast.Dict]]:
    """Dict literals with a "type" key passed to emit / log / write / a ``log`` EventLog call."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("emit", "log", "write"):
                continue
            for arg in node.args:
                if isinstance(arg, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == "type" for k in arg.keys
                ):
                    found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, arg))
    return found


def _literal_types(literal: ast.Dict) -> list[str] | None:
    value = next(v for k, v in zip(literal.keys, literal.values, strict=True)
                 if isinstance(k, ast.Constant) and k.value == "type")
    if isinstance(value, ast.Constant):
        return [value.value]
    return None  # Computed (the job runner's terminal event: one of TERMINAL_EVENTS).


def test_every_emitted_literal_names_a_declared_type_and_fields():
    literals = _emitted_literals()
    # The engine, the decode/feature progress and the job runner all emit literals.
    files = {path for path, _, _ in literals}
    assert {"transfer_core/jobs/queue.py", "transfer_core/training/progress.py"} <= files, files
    problems = []
    for path, line, literal in literals:
        kinds = _literal_types(literal) or list(event_schema.TERMINAL_EVENTS)
        keys = [k.value for k in literal.keys if isinstance(k, ast.Constant)]
        for kind in kinds:
            if kind not in EVENT_SCHEMAS:
                problems.append(f"{path}:{line}: undeclared event type {kind!r}")
                continue
            required, optional = fields_of(kind)
            problems += [f"{path}:{line}: {kind} has undeclared field {key!r}"
                         for key in keys if key not in required | optional]
    assert not problems, "\n".join(problems)


def test_validate_event_names_each_problem():
    assert validate_event({"type": "stopped", "reason": "x"}) == []
    assert validate_event({"type": "epochs_end"}) == [
        "undeclared event type 'epochs_end' (declare it in transfer_core.events)"]
    problems = validate_event({"type": "progress", "stage": "features", "done": "3", "total": 4, "extra": 1})
    assert "progress: undeclared field 'extra'" in problems
    assert any("'done' should be int" in p for p in problems)
    assert validate_event({"type": "epoch_end", "epoch": 1}, complete=False) == []
    assert "epoch_end: missing field 'val_loss'" in validate_event({"type": "epoch_end", "epoch": 1})
    assert validate_event({"type": "batch_end", "stage": "head", "epoch": 1, "batch": 1, "batches": 2,
                           "step": 1, "loss": float("nan"), "accuracy": 0.5}) == []  # NaN is a loss.


def test_an_event_log_that_checks_refuses_an_undeclared_event(tmp_path):
    with EventLog(tmp_path / "events.jsonl", check=True) as log:
        log.write({"type": "stage", "stage": "head"})  # Partial but declared: accepted.
        with pytest.raises(ValueError, match="undeclared field 'colour'"):
            log.write({"type": "stage", "colour": "red"})
        with pytest.raises(ValueError, match="undeclared event type 'epoch_done'"):
            log.write({"type": "epoch_done"})
    assert [e["type"] for e in read_events(tmp_path / "events.jsonl")[0]] == ["stage"]


# ----- (a) dynamic: what real runs write ----------------------------------------------------------


def _config(spec, model=TINY_MODEL, **train_kwargs) -> RunConfig:
    return RunConfig(dataset=spec, model=model, freeze=FreezePlan(mode="top_blocks", top_blocks=2),
                     train=TrainConfig(**{"epochs": 2, "batch_size": 8, **train_kwargs}))


def _train_to_file(config: RunConfig, settings: Settings, path: Path, stop_after_batches: int | None = None):
    from transfer_core.training import train

    with EventLog(path, check=False) as log:  # Unchecked: the test validates every line itself.
        batches = 0

        def emit(event):
            nonlocal batches
            batches += event["type"] == "batch_end"
            log.write(event)

        def should_stop():
            return stop_after_batches is not None and batches >= stop_after_batches

        return train(config, emit=emit, should_stop=should_stop, settings=settings)


@pytest.fixture(scope="module")
def written(tiny_dataset, tmp_path_factory, shared_weights_dir) -> dict[str, list[dict]]:
    """Each run's events as read back from its events.jsonl, by run name."""
    from transfer_core import jobs

    home = tmp_path_factory.mktemp("events")
    settings = Settings(home=home / "home", weights_dir=shared_weights_dir, max_concurrent_runs=1)
    logs = home / "logs"
    results = {
        "feature_extraction": _train_to_file(_config(tiny_dataset), settings, logs / "fe.jsonl"),
        # Stopped in its second stage, after 2 fine-tuning batches (3 batches per epoch).
        "fine_tuning_stopped": _train_to_file(
            _config(tiny_dataset, strategy="fine_tuning", epochs=1, fine_tune_epochs=3), settings,
            logs / "ft.jsonl", stop_after_batches=5),
        "from_scratch_diverged": _train_to_file(
            _config(tiny_dataset, strategy="from_scratch", epochs=3, learning_rate=10.0), settings,
            logs / "scratch.jsonl"),
        # A budget far below one batch: the epoch ends part-way and its epoch_end says after how many.
        "from_scratch_budget": _train_to_file(
            _config(tiny_dataset, strategy="from_scratch", epochs=2, batch_size=1, time_budget_seconds=0.001),
            settings, logs / "budget.jsonl"),
    }
    pretrained = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")
    for name in ("pretrained_cold", "pretrained_cached"):  # The second reads the features from the cache.
        results[name] = _train_to_file(_config(tiny_dataset, model=pretrained, epochs=1), settings,
                                       logs / f"{name}.jsonl")
    assert results["feature_extraction"].status == "finished", results["feature_extraction"].reason
    assert results["fine_tuning_stopped"].status == "stopped"
    assert results["from_scratch_diverged"].status == "failed"
    assert results["from_scratch_budget"].report["stopped_by_budget"] is True
    assert results["pretrained_cached"].report["cache_hits"] == ["pool", "pool"]
    written = {name: read_events(logs / f"{file}.jsonl")[0] for name, file in (
        ("feature_extraction", "fe"), ("fine_tuning_stopped", "ft"), ("from_scratch_diverged", "scratch"),
        ("from_scratch_budget", "budget"),
        ("pretrained_cold", "pretrained_cold"), ("pretrained_cached", "pretrained_cached"))}

    # Through the real job runner: one run finishes; one waits in the queue behind it and is stopped
    # there; one has an unreadable config and fails in its worker.
    runs_dir = home / "runs"
    finished = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=runs_dir, settings=settings)
    queued = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=runs_dir, settings=settings)
    jobs.follow(queued, lambda event: event["type"] == "queued" and jobs.request_stop(queued), timeout=patience(180))
    assert jobs.follow(finished, timeout=patience(180)) == "finished"
    # Stopped while it trains: the worker answers with "stopping" before it saves.
    live = jobs.start_run(_config(tiny_dataset, epochs=50), runs_dir=runs_dir, settings=settings)
    assert jobs.follow(live, lambda event: event["type"] == "epoch_end" and jobs.request_stop(live),
                       timeout=patience(180)) == "stopped"
    broken = RunStore(runs_dir).create(_config(tiny_dataset))
    (broken / "config.json").write_text("{not json")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "transfer_core", "worker", str(broken)], check=False, timeout=120,
                   env={**jobs.settings_env(settings), **_python_env()})
    for name, run_dir in (("job_finished", finished), ("job_stopped_in_queue", queued), ("job_stopped_live", live),
                          ("job_failed", broken)):
        written[name] = read_events(run_dir / "events.jsonl")[0]
    assert written["job_stopped_in_queue"][-1]["type"] == "stopped"
    assert written["job_failed"][-1]["type"] == "failed"
    live_types = [e["type"] for e in written["job_stopped_live"]]
    assert live_types[-1] == "stopped" and live_types.count("stopping") == 1, live_types
    return written


def _python_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME", "TRANSFER_CHECK_EVENTS")} | {
        "PYTHONPATH": str(PACKAGE.parent)}


@pytest.mark.slow
def test_every_line_real_runs_write_matches_its_declaration(written):
    problems = [f"{name}: {problem}  in {json.dumps(event)[:200]}"
                for name, lines in written.items() for event in lines for problem in validate_event(event)]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_declared_type_and_field_is_written_by_some_run(written):
    seen: dict[str, set[str]] = {}
    for lines in written.values():
        for event in lines:
            seen.setdefault(event["type"], set()).update(event)
    assert set(seen) == set(EVENT_TYPES)
    for kind in EVENT_TYPES:
        required, optional = fields_of(kind)
        assert required | optional == seen[kind], kind
