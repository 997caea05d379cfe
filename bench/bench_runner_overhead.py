"""Training throughput: the app's job runner (worker process + event file + a 1 s poller, like the
Train page) against the same run called from a plain script in one process.

Throughput is the report's images_per_second over training epochs. The run trains the whole network
(from scratch) so that every epoch does real work.

    python bench/bench_runner_overhead.py --repeats 3 --out bench/results/runner_overhead.json
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _config(spec, args):
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig

    return RunConfig(dataset=spec, model=ModelSpec(backbone=args.backbone, input_size=args.input_size, weights="random"),
                     train=TrainConfig(strategy="from_scratch", epochs=args.epochs, batch_size=32))


def _epoch_rates(history_rows) -> list[float]:
    # Skip the first epoch (graph tracing is a one-off cost for both).
    return [row["images_per_second"] for row in history_rows[1:]]


def _plain(spec, settings, args) -> float:
    from transfer_core.training import train

    result = train(_config(spec, args), settings=settings)
    assert result.status == "finished", result.reason
    return median(_epoch_rates(result.history.to_dict("records")))


def _through_runner(spec, settings, args) -> float:
    from transfer_core.jobs import follow, start_run
    from transfer_core.runs import epoch_frame, load_run, read_events

    run_dir = start_run(_config(spec, args), runs_dir=Path(settings.home) / "runs", settings=settings)
    done = threading.Event()

    def poll_like_the_page():
        while not done.is_set():
            events, _ = read_events(run_dir / "events.jsonl")
            epoch_frame(events)
            load_run(run_dir)
            time.sleep(1.0)

    poller = threading.Thread(target=poll_like_the_page, daemon=True)
    poller.start()
    status = follow(run_dir, poll_seconds=1.0)
    done.set()
    assert status == "finished", load_run(run_dir).reason
    return median(_epoch_rates(epoch_frame(read_events(run_dir / "events.jsonl")[0]).to_dict("records")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    spec = ingest(Path(args.data), work / "ingest")
    plain, runner = [], []
    for repeat in range(args.repeats):
        settings = Settings(home=work / f"home{repeat}", weights_dir=Path(args.weights_dir))
        plain.append(_plain(spec, settings, args))
        runner.append(_through_runner(spec, settings, args))
        print(f"repeat {repeat + 1}: plain {plain[-1]:.1f} img/s, runner {runner[-1]:.1f} img/s", flush=True)
    write_result(
        {
            "config": {"strategy": "from_scratch", "backbone": args.backbone, "input_size": args.input_size,
                       "epochs": args.epochs},
            "plain_images_per_second": plain,
            "runner_images_per_second": runner,
            "runner_over_plain": median(runner) / median(plain),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
