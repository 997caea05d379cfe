"""Where a warm worker's demo run spends its time, and what reusing traced steps saves.

One process plays a warm worker (``recycle_backbones``, then per run ``jobs.runner.train_claimed_run``
and ``release_run_state``, as ``jobs.standby_worker`` does) and trains the app's demo run again and
again. After one untimed run (imports, LiteRT conversion, caches), runs alternate between

- ``kept``: the traced steps of the previous run are reused (``training.step_cache``), and
- ``traced``: ``step_cache.forget()`` before the run, so it builds its head and traces its steps
  as every warm run did before the cache,

so both see the same load on a shared machine. Per run: wall and CPU seconds of
``train_claimed_run``, seconds per stage from the run's own events, and the first call of each
traced step (trace + graph optimisation + one step) against its later calls.

    python bench/bench_warm_steps.py --pairs 5 --out bench/results/warm_steps.json
    python bench/bench_warm_steps.py --pairs 15 --modes kept --out bench/results/warm_steps_15_kept.json

(the second: 15 runs that all reuse the steps, for growth in CPU, memory or Python objects.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_WEIGHTS, median, write_result

_calls: list[tuple[str, int, float]] = []  # (step name, call number, seconds)


def _time_fit_loop_steps() -> None:
    """Wrap the steps that ``training.loop`` traces so each call is timed (the steps themselves are
    the library's: only the ``tf.function`` objects are wrapped)."""
    import tensorflow as tf

    original = tf.function

    def timed_function(*args, **kwargs):
        if args and callable(args[0]):
            return original(*args, **kwargs)
        decorator = original(*args, **kwargs)

        def wrap(fn):
            function = decorator(fn)
            if not fn.__qualname__.startswith("_trace"):
                return function
            calls = [0]

            def call(*inputs):
                started = time.perf_counter()
                out = function(*inputs)
                _calls.append((fn.__name__, calls[0], time.perf_counter() - started))
                calls[0] += 1
                return out

            return call

        return wrap

    tf.function = timed_function


def _stages(run_dir: Path) -> dict[str, float]:
    from transfer_core.runs import read_events

    events = read_events(run_dir / "events.jsonl")[0]
    marks = [("to_run_started", events[0]["time"])]
    for event in events:
        if event["type"] == "run_started":
            marks.append(("setup", event["time"]))
        elif event["type"] == "stage":
            marks.append((event["stage"], event["time"]))
        elif event["type"] == "finished":
            marks.append(("finished", event["time"]))
    # Each mark's time runs until the next mark: "setup" is run_started -> first stage, a stage runs
    # until the next one starts, the last one until `finished` (evaluation and saving included).
    names = [name for name, _ in marks[:-1]]
    return {name: round(end - start, 3)
            for name, (_, start), (_, end) in zip(names, marks[:-1], marks[1:], strict=True)} | {
        "total": round(marks[-1][1] - marks[0][1], 3)}


def _first_calls() -> dict[str, float]:
    """The first call of each traced step minus the median of its later calls (the trace's cost)."""
    out: dict[str, float] = {}
    later: dict[str, list[float]] = {}
    firsts: list[tuple[str, float]] = []
    for name, number, seconds in _calls:
        if number == 0:
            firsts.append((name, seconds))
        else:
            later.setdefault(name, []).append(seconds)
    for index, (name, seconds) in enumerate(firsts):
        out[f"{name}_{index}"] = round(seconds - median(later.get(name, [0.0])), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--modes", default="traced,kept", help="comma-separated, alternated per pair")
    parser.add_argument("--out")
    args = parser.parse_args()
    _time_fit_loop_steps()

    import gc

    from transfer_core.config import RunConfig, Settings
    from transfer_core.data import make_demo_dataset
    from transfer_core.jobs.runner import train_claimed_run
    from transfer_core.jobs.standby_worker import resident_mb
    from transfer_core.models import recycle_backbones
    from transfer_core.runs import RunStore
    from transfer_core.sessions import presets
    from transfer_core.training import release_run_state, step_cache

    recycle_backbones()
    work = Path(tempfile.mkdtemp(prefix="bench-warm-steps-"))
    settings = Settings(home=work / "home", weights_dir=Path(args.weights_dir))
    choice = presets.choose_demo_backbone(settings)
    data = make_demo_dataset(work / "demo", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                             image_size=presets.DEMO_IMAGE_SIZE)
    config = RunConfig(dataset=data, model=presets.demo_model_spec(choice), freeze=presets.demo_freeze_plan(),
                       train=presets.demo_train_config(choice))
    store = RunStore(work / "runs")

    def one_run(mode: str) -> dict:
        if mode == "traced":
            step_cache.forget()
        _calls.clear()
        run_dir = store.create(config)
        started, cpu = time.perf_counter(), time.process_time()
        assert train_claimed_run(run_dir, settings, None) == 0
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        release_started = time.perf_counter()
        release_run_state()
        row = {"mode": mode, "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
               "release_seconds": round(time.perf_counter() - release_started, 3),
               "stages": _stages(run_dir), "first_call_over_later": _first_calls(),
               "steps_traced": sum(1 for _, number, _ in _calls if number == 0),
               "resident_mb": round(resident_mb()), "python_objects": len(gc.get_objects())}
        print(row, flush=True)
        return row

    one_run("warm-up")
    modes = args.modes.split(",")
    rows = [one_run(mode) for _ in range(args.pairs) for mode in modes]
    result: dict = {"pairs": args.pairs, "runs": rows}
    for mode in modes:
        mine = [row for row in rows if row["mode"] == mode]
        result[mode] = {
            "median_wall_seconds": median([row["wall_seconds"] for row in mine]),
            "median_cpu_seconds": median([row["cpu_seconds"] for row in mine]),
            "median_stage_seconds": {stage: median([row["stages"][stage] for row in mine])
                                     for stage in mine[0]["stages"]},
        }
    if {"traced", "kept"} <= set(modes):
        result["wall_saved_seconds"] = round(result["traced"]["median_wall_seconds"]
                                             - result["kept"]["median_wall_seconds"], 3)
        result["cpu_saved_seconds"] = round(result["traced"]["median_cpu_seconds"]
                                            - result["kept"]["median_cpu_seconds"], 3)
    print({key: value for key, value in result.items() if key != "runs"})
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
