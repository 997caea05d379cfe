"""Training throughput with the app watching, against the same run from the command line's runner.

The worker process is the same either way (ARCHITECTURE.md, decision 1); what the app adds is the Streamlit
server running the Train page's live fragment every second (read new events, rebuild three plotly
figures, send them) while the worker trains on the same CPU. Modes:

- ``cli``: ``jobs.start_run`` + ``jobs.follow`` (what ``python -m transfer_core train`` does).
- ``apptest``: a watcher runs the whole Train page through Streamlit's AppTest once a second
  (more work than the fragment alone: an upper bound on the server's share).
- ``browser``: a real ``streamlit run app.py`` server and a headless Chromium on the Train page
  (``?ws=...&run=...``), both on this machine, so the browser's rendering competes too
  (pessimistic: a student's browser normally runs on another machine).

Throughput is the median images/second of the training epochs after the first (the first
includes graph tracing for every mode).

    python bench/bench_app_overhead.py --repeats 3 --out bench/results/app_overhead.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, REPO, ingest, median, write_result

sys.path.insert(0, str(REPO / "tests"))
from helpers.browser import browser_missing_reason, chromium_page, streamlit_server  # noqa: E402


def _config(spec, args):
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig

    return RunConfig(
        dataset=spec,
        model=ModelSpec(backbone=args.backbone, input_size=args.input_size, weights="random"),
        train=TrainConfig(strategy="from_scratch", epochs=args.epochs, batch_size=32),
    )


def _rate(run_dir: Path) -> float:
    from transfer_core.runs import epoch_frame, read_events

    rows = epoch_frame(read_events(run_dir / "events.jsonl")[0]).to_dict("records")
    return median([row["images_per_second"] for row in rows[1:]])


def _start(spec, settings, workspace, args) -> Path:
    from transfer_core.jobs import start_run

    return start_run(_config(spec, args), runs_dir=workspace.runs_dir, settings=settings)


def _wait(run_dir: Path) -> None:
    from transfer_core.jobs import follow
    from transfer_core.runs import load_run

    status = follow(run_dir, poll_seconds=0.5)
    assert status == "finished", load_run(run_dir).reason


def run_cli(spec, settings, workspace, args) -> float:
    run_dir = _start(spec, settings, workspace, args)
    _wait(run_dir)
    return _rate(run_dir)


def run_apptest(spec, settings, workspace, args) -> float:
    from streamlit.testing.v1 import AppTest

    run_dir = _start(spec, settings, workspace, args)
    done = threading.Event()

    def watch():
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        at.session_state["workspace"] = workspace
        at.session_state["run_id"] = run_dir.name
        at.run()
        at.switch_page("pages/train.py")
        while not done.is_set():
            at.run()
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _wait(run_dir)
    done.set()
    watcher.join(timeout=30)
    return _rate(run_dir)


def run_browser(spec, settings, workspace, args) -> float:
    with streamlit_server(settings.home, weights_dir=settings.weights_dir, start_timeout=120) as server:
        run_dir = _start(spec, settings, workspace, args)
        with chromium_page() as page:
            page.goto(f"{server.url}/train?ws={workspace.workspace_id}&run={run_dir.name}")
            _wait(run_dir)
        return _rate(run_dir)


MODES = {"cli": run_cli, "apptest": run_apptest, "browser": run_browser}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="cli,apptest,browser")
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core.config import Settings
    from transfer_core.sessions.workspace import Workspace

    modes = [m for m in args.modes.split(",") if m]
    if "browser" in modes and browser_missing_reason():
        print(f"{browser_missing_reason()}: skipping the browser mode", file=sys.stderr)
        modes.remove("browser")
    work = Path(tempfile.mkdtemp(prefix="bench-app-"))
    spec = ingest(Path(args.data), work / "ingest")
    settings = Settings(home=work / "home", weights_dir=Path(args.weights_dir))
    workspace = Workspace.open(settings)
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        for mode in modes:  # Interleaved, so drift in machine speed hits every mode alike.
            rates[mode].append(MODES[mode](spec, settings, workspace, args))
        print(
            f"repeat {repeat + 1}: " + ", ".join(f"{m} {rates[m][-1]:.1f} img/s" for m in modes), flush=True
        )
    baseline = median(rates["cli"]) if "cli" in rates else None
    write_result(
        {
            "config": {
                "strategy": "from_scratch",
                "backbone": args.backbone,
                "input_size": args.input_size,
                "epochs": args.epochs,
                "batch_size": 32,
                "data": Path(args.data).name,
                "cpus": os.cpu_count(),
            },
            "images_per_second": rates,
            "relative_to_cli": {m: median(r) / baseline for m, r in rates.items()} if baseline else {},
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
