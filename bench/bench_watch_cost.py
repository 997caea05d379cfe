"""What watching a run costs the server: N browser sessions each on the Train page of an active run.

One real ``streamlit run app.py`` server (tests/streamlit_server.py) and one headless Chromium with N
browser contexts (N people who share nothing). Each context has its own workspace and opens the Train
page of its own run (``/train?ws=...&run=...``), which stays active for the whole window:

- ``running``: a run whose worker is alive and which writes a batch every ``--batch-seconds`` and ends
  an epoch every ``--epoch-seconds`` (the events a real worker writes, through ``EventLog``);
- ``queued``: a run whose worker is alive and waits for a slot (a ``queued`` event, nothing more).

The "worker" of each run is a ``sleep`` process: the server checks its pid like a real worker's, and no
TensorFlow competes for the cores, so the server's own cost of watching is what is measured. For
``--seconds`` the server process's CPU is sampled with psutil once a second, and the browsers' CPU
separately (everything shares this machine's cores). Reported per N and state: the server's CPU as a
fraction of one core (total, minus the idle server, and per watching session) and the browsers'.

At the end every run ends while its page is open; the server log is then checked for "The fragment
with id ... does not exist anymore" lines (a polling fragment that outlived its run).

    python bench/bench_watch_cost.py --sessions 1 4 8 --seconds 60 --out bench/results/watch_cost.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from pathlib import Path

from _common import REPO, write_result

sys.path.insert(0, str(REPO / "tests"))
import psutil  # noqa: E402
from helpers.browser import CHROMIUM_ARGS, browser_missing_reason, chromium, streamlit_server  # noqa: E402

STALE_FRAGMENT = "does not exist anymore"
# Headless contexts count as hidden tabs, whose timers Chromium throttles (polls seconds apart); a person
# watching has the tab in front, so the benchmark turns that throttling off.
UNTHROTTLED = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
               "--disable-backgrounding-occluded-windows"]


class FakeRun:
    """An active run on disk: a live ``sleep`` as its worker, and (when running) a thread writing events."""

    def __init__(self, workspace, state: str, batch_seconds: float, epoch_seconds: float) -> None:
        from transfer_core.config import ModelSpec, RunConfig, TrainConfig
        from transfer_core.data import make_demo_dataset
        from transfer_core.fileio import atomic_write_json
        from transfer_core.processes import process_start_time

        spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=6, image_size=32)
        model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random")
        config = RunConfig(dataset=spec, model=model, train=TrainConfig(strategy="feature_extraction", epochs=200))
        self.workspace = workspace
        self.run_dir = workspace.store.create(config)
        self.worker = subprocess.Popen(["sleep", "100000"])
        atomic_write_json(self.run_dir / "worker.pid",
                          {"pid": self.worker.pid, "start_time": process_start_time(self.worker.pid)})
        self.state = state
        self.batch_seconds = batch_seconds
        self.epoch_seconds = epoch_seconds
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        from transfer_core.runs import EventLog

        batches = max(1, round(self.epoch_seconds / self.batch_seconds))
        with EventLog(self.run_dir / "events.jsonl") as log:
            log.write({"type": "queued", "position": 0, "message": "Waiting for a free training slot"})
            if self.state == "queued":
                self.stopping.wait()
                return
            log.write({"type": "run_started", "strategy": "feature_extraction", "backbone": "mobilenet_v2_0.35",
                       "weights": "random", "num_train": 8, "num_val": 4, "epochs_total": 200, "batch_size": 8})
            log.write({"type": "stage", "stage": "head", "description": "Training the new head", "epochs": 200})
            step = 0
            for epoch in range(1, 201):
                for batch in range(1, batches + 1):
                    if self.stopping.wait(self.batch_seconds):
                        return
                    step += 1
                    log.write({"type": "batch_end", "stage": "head", "epoch": epoch, "batch": batch,
                               "batches": batches, "step": step, "loss": 1.0 / step, "accuracy": 0.5})
                log.write({"type": "epoch_end", "stage": "head", "epoch": epoch, "loss": 1.0 / epoch,
                           "accuracy": 0.6, "val_loss": 1.1 / epoch, "val_accuracy": 0.5, "seconds": 1.0,
                           "elapsed": float(epoch)})

    def end(self) -> None:
        """End the run as a stopped one (terminal event, report, worker gone)."""
        from transfer_core.fileio import atomic_write_json
        from transfer_core.report import RunReport
        from transfer_core.runs import EventLog

        self.stopping.set()
        self.thread.join()
        atomic_write_json(self.run_dir / "report.json", RunReport(val_accuracy=0.5, epochs=1).to_dict())
        with EventLog(self.run_dir / "events.jsonl") as log:
            log.write({"type": "stopped", "reason": "the benchmark ended it"})
        self.worker.kill()
        self.worker.wait()


def _browser_processes(me: psutil.Process, exclude: set[int]) -> list[psutil.Process]:
    with suppress(psutil.Error):
        return [p for p in me.children(recursive=True) if p.pid not in exclude and "sleep" not in p.name()]
    return []


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure(server_pid: int, exclude: set[int], seconds: float) -> dict:
    """Server and browser CPU, as fractions of one core, sampled every second for ``seconds``."""
    me = psutil.Process(os.getpid())
    server = psutil.Process(server_pid)
    server_samples, browser_samples = [], []
    started = time.monotonic()
    server_before = _cpu_seconds([server])
    browsers = _browser_processes(me, exclude)
    browser_before = _cpu_seconds(browsers)
    last_time, last_server, last_browser = started, server_before, browser_before
    while time.monotonic() - started < seconds:
        time.sleep(1.0)
        now = time.monotonic()
        server_now = _cpu_seconds([server])
        browser_now = _cpu_seconds(browsers)
        server_samples.append((server_now - last_server) / (now - last_time))
        browser_samples.append((browser_now - last_browser) / (now - last_time))
        last_time, last_server, last_browser = now, server_now, browser_now
    wall = time.monotonic() - started
    return {
        "seconds": round(wall, 1),
        "server_cpu_mean": round((last_server - server_before) / wall, 4),
        "server_cpu_median": round(statistics.median(server_samples), 4),
        "browsers_cpu_mean": round((last_browser - browser_before) / wall, 4),
        "browsers_cpu_median": round(statistics.median(browser_samples), 4),
    }


def one_case(browser, server, sessions: int, state: str, args, exclude: set[int]) -> dict:
    from transfer_core.config import Settings
    from transfer_core.sessions.workspace import Workspace

    settings = Settings.from_env()
    runs = [FakeRun(Workspace.open(settings), state, args.batch_seconds, args.epoch_seconds)
            for _ in range(sessions)]
    exclude.update(run.worker.pid for run in runs)
    contexts = []
    try:
        for run in runs:
            context = browser.new_context(viewport={"width": 1300, "height": 950})
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{server.url}/train?ws={run.workspace.workspace_id}&run={run.run_dir.name}")
            page.get_by_role("button", name="Stop").wait_for()
            contexts.append((context, page))
        time.sleep(args.warmup)
        result = {"sessions": sessions, "state": state, **measure(server.process.pid, exclude, args.seconds)}
        stale_before = server.log_path.read_text(errors="replace").count(STALE_FRAGMENT)
        for run in runs:
            run.end()
        for _, page in contexts:
            page.get_by_text("Stopped:").first.wait_for()
        time.sleep(args.after_end)  # Would-be polls of the ended runs arrive here.
        result["after_end"] = measure(server.process.pid, exclude, args.after_end_seconds)
        result["stale_fragment_lines_after_end"] = (
            server.log_path.read_text(errors="replace").count(STALE_FRAGMENT) - stale_before)
    finally:
        for context, _ in contexts:
            context.close()
        for run in runs:
            if run.worker.poll() is None:
                run.end()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--states", nargs="+", choices=("running", "queued"), default=["running", "queued"])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per case")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--after-end", type=float, default=5.0, help="wait after the runs ended")
    parser.add_argument("--after-end-seconds", type=float, default=10.0, help="window measured after that")
    parser.add_argument("--batch-seconds", type=float, default=0.25)
    parser.add_argument("--epoch-seconds", type=float, default=10.0)
    parser.add_argument("--label", default="", help="e.g. before/after, stored in the result")
    parser.add_argument("--out")
    args = parser.parse_args()
    reason = browser_missing_reason()
    if reason:
        sys.exit(f"No browser: {reason}")
    results = {"label": args.label, "cores": os.cpu_count(), "batch_seconds": args.batch_seconds,
               "epoch_seconds": args.epoch_seconds,
               "note": "server and Chromium share this machine's cores with other work; medians of 1 s samples",
               "cases": []}
    with tempfile.TemporaryDirectory(prefix="watch-") as tmp, ExitStack() as stack:
        home = Path(tmp) / "home"
        os.environ["TRANSFER_HOME"] = str(home)  # The benchmark writes runs where the server reads them.
        server = stack.enter_context(streamlit_server(home, drop_env=["TRANSFER_ALLOWED_DATA_DIRS"]))
        browser = stack.enter_context(chromium([*CHROMIUM_ARGS, *UNTHROTTLED]))
        exclude = {server.process.pid}
        idle = {"sessions": 0, "state": "idle", **measure(server.process.pid, exclude, min(args.seconds, 20.0))}
        results["cases"].append(idle)
        print(f"idle server: {idle}", flush=True)
        for state in args.states:
            for sessions in args.sessions:
                case = one_case(browser, server, sessions, state, args, exclude)
                case["server_cpu_per_session"] = round(
                    max(case["server_cpu_mean"] - idle["server_cpu_mean"], 0.0) / sessions, 4)  # Means: see BENCHMARKS.md.
                results["cases"].append(case)
                print(f"{state} N={sessions}: {case}", flush=True)
        results["stale_fragment_lines_total"] = server.log_path.read_text(errors="replace").count(STALE_FRAGMENT)
    write_result(results, args.out)


if __name__ == "__main__":
    main()
