"""A classroom on one server: N browser sessions each press "Try the demo", then "Start training".

In the manner of Streamlit's own Playwright load tests (``e2e_playwright/load_testing``): one real
``streamlit run app.py`` server, one headless Chromium with N separate browser contexts (N students
who share nothing), psutil on every process. Recorded per N:

- each run's queue wait (``queued`` -> ``starting`` event) and time to finished (Start click ->
  terminal event), read from the run store on disk, so polling the pages costs the browsers nothing;
- a new visitor's Home latency (a fresh context opens the app and waits for the "Try the demo"
  button) every ``--probe-every`` seconds while runs are queued or training, at least 5 probes;
- CPU (fraction of one core) and peak RSS of the Streamlit server process alone, of the training
  workers, and of the browsers, sampled every second. Everything runs on this machine's cores, so
  the browsers' and workers' CPU is reported separately to keep the server's own cost clear.

    python bench/bench_classroom.py --sessions 1 4 8 --executor local --out bench/results/classroom_local.json
    python bench/bench_classroom.py --sessions 1 4 8 --executor ray --out bench/results/classroom_ray.json

With ``--executor ray`` the script starts a Ray head on loopback (dashboard off) and stops it at the
end; the server submits every run to it (TRANSFER_EXECUTOR=ray, RAY_ADDRESS).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from _common import DEFAULT_WEIGHTS, REPO, write_result

sys.path.insert(0, str(REPO / "tests"))
import psutil  # noqa: E402
from helpers.browser import (  # noqa: E402
    browser_missing_reason,
    chromium,
    free_port,
    settle,
    streamlit_server,
)

HOME_READY_TIMEOUT_MS = 180_000


@dataclass
class ProcessCpu:
    """CPU seconds and peak RSS of one group of processes, accumulated by :class:`Sampler`."""

    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (time, cpu fraction, rss MB)


class Sampler(threading.Thread):
    """Every ``interval`` s: CPU time deltas and RSS of the server, its worker children and the browsers."""

    def __init__(self, server_pid: int, home_prefix: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.home_prefix = home_prefix
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process(os.getpid())
        self.interval = interval
        self.groups = {"server": ProcessCpu(), "workers": ProcessCpu(), "browsers": ProcessCpu()}
        self._last: dict[tuple[int, float], float] = {}
        self._halt = threading.Event()
        self._baseline_taken = False

    def _members(self) -> dict[str, list[psutil.Process]]:
        members: dict[str, list[psutil.Process]] = {"server": [self.server], "workers": [], "browsers": []}
        with suppress(psutil.Error):
            members["workers"] = self.server.children(recursive=True)
        with suppress(psutil.Error):
            members["browsers"] = [p for p in self.me.children(recursive=True) if "chrom" in p.name().lower()
                                   or "headless_shell" in p.name().lower()]
        # Training, standby and inference workers: a standby is started by the worker before it and is
        # re-parented when that worker exits, and Ray workers are children of the raylet, so workers are
        # found by their command line rather than as the server's children.
        known = {p.pid for p in members["workers"]}
        for process in psutil.process_iter(["cmdline"]):
            try:
                command = " ".join(process.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if process.pid in known or process.pid in (self.me.pid, self.server.pid):
                continue
            if "ray::" in command or "raylet" in command or "gcs_server" in command:
                members["workers"].append(process)  # The Ray cluster this bench started (nothing else runs one).
            elif "transfer_core" in command:
                with suppress(psutil.Error):  # Only this class's workers, not another server's on the machine.
                    if process.environ().get("TRANSFER_HOME", "").startswith(self.home_prefix):
                        members["workers"].append(process)
        return members

    def sample(self) -> None:
        now = time.time()
        seen: set[tuple[int, float]] = set()
        for group, processes in self._members().items():
            delta_total, rss_total = 0.0, 0.0
            for process in processes:
                try:
                    key = (process.pid, process.create_time())
                    times = process.cpu_times()
                    cpu = times.user + times.system
                    rss_total += process.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                if key in seen:
                    continue
                seen.add(key)
                # A process first seen after the baseline started while measuring: all its CPU counts.
                delta_total += cpu - self._last.get(key, 0.0 if self._baseline_taken else cpu)
                self._last[key] = cpu
            record = self.groups[group]
            record.cpu_seconds += delta_total
            record.peak_rss_mb = max(record.peak_rss_mb, rss_total)
            record.samples.append((now, delta_total / self.interval, rss_total))

    def run(self) -> None:
        self.sample()  # Baseline: CPU spent before measuring is not counted for processes seen now.
        self._baseline_taken = True
        for record in self.groups.values():
            record.cpu_seconds = 0.0
            record.samples.clear()
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _query(url: str, name: str) -> str | None:
    values = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get(name)
    return values[0] if values else None


def _home_latency(browser, url: str) -> float:
    """Seconds from a new visitor opening the app to the Home page's "Try the demo" button showing."""
    context = browser.new_context(viewport={"width": 1300, "height": 950})
    try:
        page = context.new_page()
        page.set_default_timeout(HOME_READY_TIMEOUT_MS)
        started = time.perf_counter()
        page.goto(url)
        page.get_by_role("button", name="Try the demo").wait_for()
        return time.perf_counter() - started
    finally:
        context.close()


def _run_times(run_dir: Path, clicked: float) -> dict:
    from transfer_core.runs import load_run, read_events

    events, _ = read_events(run_dir / "events.jsonl")
    first = {}
    for event in events:
        first.setdefault(event.get("type"), event.get("time"))
    terminal = next((first[t] for t in ("finished", "stopped", "failed") if first.get(t)), None)
    queued = first.get("queued") or clicked
    starting = first.get("starting") or first.get("run_start")
    return {
        "run": run_dir.name,
        "status": load_run(run_dir).status,
        "queue_wait_s": round(starting - queued, 2) if starting else None,
        "time_to_finished_s": round(terminal - clicked, 2) if terminal else None,
        "training_s": round(terminal - starting, 2) if terminal and starting else None,
    }


def _keep_evidence(page, home: Path, index: int, args) -> None:
    """A session whose Start made no run: keep its screenshot, its text and the server's log."""
    folder = Path(args.out).with_suffix(".failure") if args.out else REPO / "bench" / "results" / "classroom.failure"
    folder.mkdir(parents=True, exist_ok=True)
    with suppress(Exception):
        page.screenshot(path=str(folder / f"session-{index}.png"), full_page=True)
        (folder / f"session-{index}.txt").write_text(page.inner_text("body"))
    with suppress(OSError):
        shutil.copy(home / "streamlit.log", folder / "streamlit.log")
    print(f"Session {index} made no run; evidence in {folder}", file=sys.stderr, flush=True)


def _active(run_dirs: list[Path]) -> bool:
    from transfer_core.runs import load_run

    return any(load_run(path).is_active for path in run_dirs)


def one_class(browser, url: str, home: Path, sessions: int, args) -> dict:
    """N sessions: Try the demo, Start; new-visitor probes while runs are active; per-run times."""
    contexts = [browser.new_context(viewport={"width": 1300, "height": 950}) for _ in range(sessions)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(HOME_READY_TIMEOUT_MS)
    try:
        for page in pages:
            page.goto(url)
            page.get_by_role("button", name="Try the demo").click()
            page.get_by_role("button", name="Start training").wait_for()
            settle(page, timeout=HOME_READY_TIMEOUT_MS)
        sampler = Sampler(args.server_pid, str(home))
        sampler.start()
        clicked, run_dirs = [], []
        for page in pages:
            page.get_by_role("button", name="Start training", exact=True).click()
            clicked.append(time.time())
        for index, page in enumerate(pages):
            try:
                page.wait_for_function("() => new URLSearchParams(location.search).get('run')",
                                       timeout=HOME_READY_TIMEOUT_MS)
            except Exception:
                _keep_evidence(page, home, index, args)
                raise
            run_dirs.append(home / "workspaces" / _query(page.url, "ws") / "runs" / _query(page.url, "run"))
        probes = []
        next_probe = time.time() + 2.0
        deadline = time.time() + args.max_seconds
        while time.time() < deadline and (_active(run_dirs) or len(probes) < args.min_probes):
            if time.time() >= next_probe and (_active(run_dirs) or len(probes) < args.min_probes):
                probes.append(round(_home_latency(browser, url), 2))
                next_probe = time.time() + args.probe_every
            time.sleep(0.5)
        sampler.stop()
        elapsed = (sampler.groups["server"].samples[-1][0] - sampler.groups["server"].samples[0][0]
                   if len(sampler.groups["server"].samples) > 1 else float("nan"))
        runs = [_run_times(path, start) for path, start in zip(run_dirs, clicked, strict=True)]
        finished = [r for r in runs if r["time_to_finished_s"] is not None]
        return {
            "sessions": sessions,
            "all_finished": all(r["status"] == "finished" for r in runs),
            "runs": runs,
            "median_queue_wait_s": statistics.median([r["queue_wait_s"] or 0 for r in runs]),
            "median_time_to_finished_s": statistics.median([r["time_to_finished_s"] for r in finished]) if finished
            else None,
            "last_finished_s": max([r["time_to_finished_s"] for r in finished], default=None),
            "home_latency_s": probes,
            "home_latency_median_s": statistics.median(probes) if probes else None,
            "measured_s": round(elapsed, 1),
            "cpu_cores": {name: round(group.cpu_seconds / elapsed, 3) for name, group in sampler.groups.items()},
            "peak_rss_mb": {name: round(group.peak_rss_mb, 1) for name, group in sampler.groups.items()},
        }
    finally:
        for context in contexts:
            context.close()


RAY_AUTH_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@contextmanager
def ray_head(tmp: Path):
    """A Ray head on loopback, dashboard off, stopped on exit; yields its address."""
    port = free_port()
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    # Token authentication, as README's cluster recipe: Ray 2.60 turns it on for a head when a token
    # file exists, and a driver that does not use the same mode and token cannot join.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **RAY_AUTH_ENV}
    subprocess.run([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp / 'ray'}"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--concurrent-runs", type=int, default=1, help="TRANSFER_MAX_CONCURRENT_RUNS")
    parser.add_argument("--probe-every", type=float, default=30.0, help="seconds between new-visitor probes")
    parser.add_argument("--min-probes", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="give up on one class after this")
    parser.add_argument("--out")
    args = parser.parse_args()
    reason = browser_missing_reason()
    if reason:
        sys.exit(f"No browser: {reason}")
    results = {"executor": args.executor, "concurrent_runs": args.concurrent_runs, "cores": os.cpu_count(),
               "note": "server, training workers and the Chromium browsers all ran on these cores", "classes": []}
    with tempfile.TemporaryDirectory(prefix="classroom-") as tmp_text:
        tmp = Path(tmp_text)
        with contextlib_ray(args, tmp) as ray_address:
            for sessions in args.sessions:
                home = tmp / f"home-{sessions}"
                env = {"TRANSFER_MAX_CONCURRENT_RUNS": str(args.concurrent_runs), "TRANSFER_EXECUTOR": args.executor,
                       "TRANSFER_MAX_QUEUED_PER_SESSION": "3"}
                if ray_address:
                    env.update({"RAY_ADDRESS": ray_address, **RAY_AUTH_ENV})
                weights = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.exists() else None
                with streamlit_server(home, weights_dir=weights, env=env,
                                      drop_env=["TRANSFER_ALLOWED_DATA_DIRS"]) as server, chromium() as browser:
                    args.server_pid = server.process.pid
                    _home_latency(browser, server.url)  # Warm-up: the first page load compiles the scripts.
                    idle = [round(_home_latency(browser, server.url), 2) for _ in range(3)]
                    result = one_class(browser, server.url, home, sessions, args)
                    result["home_latency_idle_s"] = idle
                    results["classes"].append(result)
                    print(f"N={sessions}: {asdict_short(result)}", flush=True)
    write_result(results, args.out)


@contextmanager
def contextlib_ray(args, tmp: Path):
    if args.executor != "ray":
        yield None
        return
    with ray_head(tmp) as address:
        yield address


def asdict_short(result: dict) -> str:
    keys = ("all_finished", "median_queue_wait_s", "last_finished_s", "home_latency_median_s", "cpu_cores",
            "peak_rss_mb")
    return ", ".join(f"{key}={result[key]}" for key in keys)


if __name__ == "__main__":
    main()
