"""What a person waits for in the app: from "Start" (``jobs.start_run``) to the run's ``finished``
event, for the app's demo run ("Try the demo": the generated 4-class set, the demo backbone,
fine-tuning at 96 px) and a feature-extraction run on hymenoptera (mobilenet_v2_0.35, 224 px).

Three situations, each on its own server home (this process plays the server: it owns the runs
and its keeper starts the workers, as the app server does):

- ``fresh_server_first_run``: a new home, ``ensure_standby`` (what the app does when it starts),
  then Start as soon as the warm worker is idle (``--start-at-once``: Start at once, while it
  still imports TensorFlow). Empty feature cache: the first run of a freshly started server.
  ``--prepared``: the home's LiteRT networks converted first, as ``scripts/start.sh`` does.
- ``warm_server``: the same server afterwards, ``--repeats`` runs one after another (a warm
  worker, warm caches): the median is what a class sees once the server has run once.
- ``one_process_per_run``: ``TRANSFER_WORKER_MAX_RUNS=1`` and no standby, i.e. each run in a new
  process that imports TensorFlow (before decision 11), warm feature cache.

    python bench/bench_run_latency.py --repeats 5 --out bench/results/run_latency_warm.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _configs(work: Path, data: Path, settings):
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig
    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions import presets

    choice = presets.choose_demo_backbone(settings)
    demo_data = make_demo_dataset(work / "demo", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                                  image_size=presets.DEMO_IMAGE_SIZE)
    demo = RunConfig(dataset=demo_data, model=presets.demo_model_spec(choice),
                     freeze=presets.demo_freeze_plan(), train=presets.demo_train_config(choice))
    hymenoptera = ingest(data, work / "ingest")
    fe = RunConfig(dataset=hymenoptera, model=ModelSpec(backbone="mobilenet_v2_0.35", input_size=224),
                   train=TrainConfig(strategy="feature_extraction", epochs=10))
    return {"demo_run": demo, "feature_extraction": fe}


def _latency(config, runs_dir: Path, settings) -> tuple[float, dict]:
    from transfer_core import jobs
    from transfer_core.runs import read_events

    started = time.perf_counter()
    run_dir = jobs.start_run(config, runs_dir=runs_dir, settings=settings)
    status = jobs.follow(run_dir, poll_seconds=0.05, timeout=600)
    seconds = time.perf_counter() - started
    assert status == "finished", (status, run_dir)
    events = read_events(run_dir / "events.jsonl")[0]
    first = events[0]["time"]
    stages = {e["type"]: round(e["time"] - first, 2) for e in events
              if e["type"] in ("starting", "run_started", "finished")}
    claim = (run_dir / "claim").read_text().split()
    return seconds, {"stages_after_queued": stages, "worker_pid": int(claim[1]),
                     "worker_cpu_seconds": _cpu_seconds(int(claim[1]))}


def _cpu_seconds(pid: int) -> float | None:
    """The worker's CPU seconds so far (user + system, Linux): the difference between two runs of
    one warm worker is what a run cost it, whatever else shares the cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _wait_for_idle_worker(settings, timeout: float = 180.0) -> None:
    from transfer_core import jobs

    directory, key = jobs.workers_dir(settings), jobs.standby_key(settings)
    deadline = time.time() + timeout
    while not any(w.state == "idle" for w in jobs.live_workers(directory, key)):
        if time.time() > deadline:
            raise TimeoutError("no warm worker became idle")
        time.sleep(0.05)


def _measure(name: str, config, work: Path, base, args) -> dict:
    from transfer_core import jobs

    out: dict = {}
    server = dataclasses.replace(base, home=work / f"{name}-home", standby_worker=True)
    if args.prepared:  # What scripts/start.sh does once per machine before the server starts (not timed).
        subprocess.run([sys.executable, "-m", "transfer_core", "prepare", "--if-needed", "--home", str(server.home),
                        "--weights-dir", str(server.weights_dir)], check=True, capture_output=True)
    jobs.ensure_standby(server)  # The app server starting.
    if not args.start_at_once:
        _wait_for_idle_worker(server)
    seconds, detail = _latency(config, work / f"{name}-runs", server)
    out["fresh_server_first_run"] = {"seconds": round(seconds, 2), **detail}
    print(name, "first run of a fresh server", round(seconds, 2), detail, flush=True)
    warm, pids, cpu = [], set(), [detail["worker_cpu_seconds"]]
    for _ in range(args.repeats):
        seconds, detail = _latency(config, work / f"{name}-runs", server)
        warm.append(round(seconds, 2))
        pids.add(detail["worker_pid"])
        cpu.append(detail["worker_cpu_seconds"])
        print(name, "warm server", round(seconds, 2), detail, flush=True)
    out["warm_server"] = {"seconds": warm, "median_seconds": median(warm), "worker_processes": len(pids)}
    if len(pids) == 1 and None not in cpu:  # One warm worker: its CPU seconds per run (and idle wait).
        per_run = [round(after - before, 2) for before, after in zip(cpu, cpu[1:], strict=False)]
        out["warm_server"] |= {"worker_cpu_seconds": per_run, "median_worker_cpu_seconds": median(per_run)}
    jobs.shutdown_workers(server, busy=True)

    cold = dataclasses.replace(base, home=work / f"{name}-cold-home", worker_max_runs=1)
    _latency(config, work / f"{name}-cold-runs", cold)  # Fills this home's feature cache; not timed.
    per_run = []
    for _ in range(min(args.repeats, 3)):
        time.sleep(11)  # The last run's process has retired (WORKER_LINGER_SECONDS does not apply: max 1 run).
        seconds, _detail = _latency(config, work / f"{name}-cold-runs", cold)
        per_run.append(round(seconds, 2))
        print(name, "one process per run", round(seconds, 2), flush=True)
    out["one_process_per_run"] = {"seconds": per_run, "median_seconds": median(per_run)}
    out["one_process_over_warm"] = median(per_run) / median(warm)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("demo_run", "feature_extraction"))
    parser.add_argument("--start-at-once", action="store_true",
                        help="Start the first run right after the server starts, before its worker is idle")
    parser.add_argument("--prepared", action="store_true",
                        help="convert the demo's LiteRT networks first, as scripts/start.sh does before a new "
                             "server starts (`python -m transfer_core prepare --if-needed`)")
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    base = Settings(home=work / "home", weights_dir=Path(args.weights_dir))
    configs = _configs(work, Path(args.data), base)
    result = {"repeats": args.repeats, "start_at_once": args.start_at_once, "prepared": args.prepared}
    for name, config in configs.items():
        if args.only in (None, name):
            result[name] = _measure(name, config, work, base, args)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
