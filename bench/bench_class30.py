"""A class of 30, measured: N protocol sessions press "Try the demo", then "Start training", together.

Browsers cannot drive 30 sessions on 2 cores, so each student here is a :class:`StreamlitSession`
(``bench/streamlit_client.py``): Streamlit's own websocket and protobuf messages, no rendering, the
fragments' ``run_every`` polls sent as a browser sends them. One real ``streamlit run app.py`` (its own
TRANSFER_HOME under /tmp, the offline weights, TRANSFER_OFFLINE=1, default settings: one run trains at a
time). Recorded per session:

- Try the demo: seconds from the press to the Train page with its Start button;
- Start -> finished, twice: when the page showed the run ended (its heading's icon and the "Finished."
  alert), and the run's terminal event on disk (``events.jsonl``); both must agree (same status, the
  page no earlier than the event and at most a few polls later);
- lost: a Start that made no run, a run that never ended, a session whose connection closed;
- leaks: the session's workspace holds only its run, its page names only its run (the heading, the
  "Run" selectbox of its runs list) and no other session's run or workspace id anywhere in its text.

Meanwhile a real headless Chromium opens Home as a new visitor every ``--probe-every`` s while runs are
active (``bench_classroom._home_latency``: until the "Try the demo" button shows), and psutil samples
the server, the training workers, the browser and this process (the protocol clients) every second.
Everything shares this machine's cores.

With ``--browser-sessions K`` (default 8) the same script then runs ``bench_classroom``'s class of K real
browser sessions on a fresh server (``0`` skips it). ``--time-limit`` bounds the whole command.

    python bench/bench_class30.py --sessions 30 --browser-sessions 8 --out bench/results/class30.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from _common import DEFAULT_WEIGHTS, REPO, write_result
from bench_classroom import Sampler, _home_latency, _run_times, one_class
from streamlit_client import SessionError, StreamlitSession

sys.path.insert(0, str(REPO / "tests"))
from helpers.browser import browser_missing_reason, chromium, streamlit_server  # noqa: E402

ENDED_ICONS = {
    ":material/check_circle:": "finished",
    ":material/stop_circle:": "stopped",
    ":material/error:": "failed",
    ":material/warning:": "interrupted",
}
SERVER_ENV = {"TRANSFER_MAX_QUEUED_PER_SESSION": "3", "TRANSFER_EXECUTOR": "local"}


class ClassSampler(Sampler):
    """bench_classroom's sampler plus this process (the protocol clients and Playwright's driver)."""

    def __init__(self, server_pid: int, home_prefix: str, interval: float = 1.0) -> None:
        super().__init__(server_pid, home_prefix, interval)
        from bench_classroom import ProcessCpu

        self.groups["clients"] = ProcessCpu()

    def _members(self):
        members = super()._members()
        members["clients"] = [self.me]
        return members


def _page_status(session: StreamlitSession, run_id: str) -> str | None:
    """The ended status the page shows for ``run_id`` (from its heading's icon), or None while active."""
    for heading in session.headings():
        if heading.endswith(f"Run {run_id}"):
            icon = heading.split(" ", 1)[0]
            return ENDED_ICONS.get(icon)
    return None


async def _student(index: int, url: str, home: Path, record: dict, start_gate: asyncio.Event,
                   ready: asyncio.Queue, deadline: float, demo_only: bool = False) -> None:
    """One student: open Home, Try the demo, wait for the class, Start, follow the run on the page."""
    record.update(index=index, lost=None)
    session = StreamlitSession(url)
    record["_session"] = session
    try:
        opened = time.perf_counter()
        await session.connect()
        await session.wait_for_idle()
        record["home_s"] = round(time.perf_counter() - opened, 2)
        pressed = time.perf_counter()
        await session.click("Try the demo", timeout=max(deadline - time.time(), 1))
        await session.wait_for(lambda: session.button("Start training"), timeout=60, what="the Start button")
        record["try_demo_s"] = round(time.perf_counter() - pressed, 2)
        record["workspace"] = session.query("ws")
        await ready.put(index)
        if demo_only:
            return
        await start_gate.wait()
        record["clicked"] = time.time()
        await session.click("Start training", timeout=max(deadline - time.time(), 1))
        run_id = session.query("run")
        if not run_id:
            record["lost"] = "Start made no run: " + " | ".join(session.alerts())
            return
        record["run"] = run_id
        record["run_dir"] = str(home / "workspaces" / record["workspace"] / "runs" / run_id)
        status = await session.wait_for(lambda: _page_status(session, run_id),
                                        timeout=max(deadline - time.time(), 1), what="the run's end on the page")
        record["page_seen"] = time.time()
        await session.wait_for_idle(timeout=60)  # The rest of the page (results, runs list) is drawn.
        record["page_status"] = status
        record["page_alerts"] = session.alerts()[:3]
        record["page_text"] = session.texts()
        record["runs_options"] = session.selectbox_options("Run")
    except (SessionError, OSError, TimeoutError) as error:
        record["lost"] = f"{type(error).__name__}: {error}"
        record["page_at_loss"] = session.describe()
        if not start_gate.is_set():
            await ready.put(index)  # Do not hold the class's Start for a session that failed before it.
    finally:
        record["stats"] = vars(session.stats)


async def _class(url: str, home: Path, sessions: int, deadline: float, records: list[dict],
                 started: threading.Event, demo_only: bool = False) -> None:
    start_gate = asyncio.Event()
    ready: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(_student(i, url, home, records[i], start_gate, ready, deadline, demo_only))
             for i in range(sessions)]
    for _ in range(sessions):  # Every student is on the Train page (or failed) before anyone starts.
        await asyncio.wait_for(ready.get(), timeout=max(deadline - time.time(), 1))
    started.set()
    start_gate.set()
    for record, outcome in zip(records, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
        if isinstance(outcome, BaseException):  # A bug of this bench, not a lost run: say so.
            record["lost"] = record.get("lost") or f"bench error: {outcome!r}"
    # Once every run has ended: each page drawn afresh (a full rerun), when every other run exists.
    if not demo_only:
        await asyncio.gather(*(_final_look(record) for record in records), return_exceptions=True)
    for record in records:
        session = record.pop("_session", None)
        if session is not None:
            await session.close()


async def _final_look(record: dict) -> None:
    session = record.get("_session")
    if session is None or record.get("lost"):
        return
    try:
        before = session.stats.full_runs
        await session.rerun()
        await session.wait_for(lambda: session.stats.full_runs > before, timeout=60, what="a full rerun")
        await session.wait_for_idle(timeout=60)
    except SessionError as error:
        record["final_look_error"] = str(error)
    record["page_text"] = record.get("page_text", []) + session.texts()
    record["runs_options_final"] = session.selectbox_options("Run")


def _leaks(records: list[dict]) -> list[str]:
    """Every way one session could see another's run or workspace; an empty list when none does."""
    problems = []
    runs = {r["index"]: r.get("run") for r in records if r.get("run")}
    workspaces = {r["index"]: r.get("workspace") for r in records if r.get("workspace")}
    if len(set(workspaces.values())) != len(workspaces):
        problems.append("two sessions share a workspace id")
    for record in records:
        index = record["index"]
        others = [value for i, value in (*runs.items(), *workspaces.items()) if i != index and value]
        text = record.get("page_text", [])
        seen = sorted({value for value in others if any(value in line for line in text)})
        if seen:
            problems.append(f"session {index}'s page names {seen}")
        if record.get("page_status"):  # A session that never saw its run end is reported as lost.
            for key in ("runs_options", "runs_options_final"):
                options = record.get(key)
                if options != [record["run"]]:
                    problems.append(f"session {index}'s runs list ({key}) offers {options}, not {record['run']}")
            run_dirs = sorted(p.name for p in Path(record["run_dir"]).parent.iterdir())
            if run_dirs != [record["run"]]:
                problems.append(f"session {index}'s workspace holds runs {run_dirs}")
    return problems


def protocol_class(args, tmp: Path) -> dict:
    """N protocol sessions against one fresh server, a Chromium new visitor probing Home meanwhile."""
    home = tmp / f"protocol-{args.sessions}"
    deadline = time.time() + args.class_limit
    records: list[dict] = [{} for _ in range(args.sessions)]
    weights = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.exists() else None
    with streamlit_server(home, weights_dir=weights, env={**SERVER_ENV, "TRANSFER_MAX_CONCURRENT_RUNS":
                                                          str(args.concurrent_runs)},
                          drop_env=["TRANSFER_ALLOWED_DATA_DIRS"]) as server, chromium() as browser:
        _home_latency(browser, server.url)  # Warm-up: the first page load compiles the scripts.
        idle = [round(_home_latency(browser, server.url), 2) for _ in range(3)]
        sampler = ClassSampler(server.process.pid, str(home))
        started = threading.Event()
        loop_error: list[BaseException] = []

        def clients() -> None:
            cpu = time.thread_time()
            try:
                asyncio.run(_class(server.url, home, args.sessions, deadline, records, started, args.demo_only))
            except BaseException as error:  # Reported with the results.
                loop_error.append(error)
            finally:
                sampler_result["clients_thread_cpu_s"] = round(time.thread_time() - cpu, 2)
                started.set()

        sampler_result: dict = {}
        sampler.start()
        thread = threading.Thread(target=clients, daemon=True)
        measure_started = time.time()
        thread.start()
        started.wait(timeout=max(deadline - time.time(), 1))
        starts_at = time.time()
        cpu_at_starts = {name: group.cpu_seconds for name, group in sampler.groups.items()}
        probes: list[float] = []
        next_probe = time.time() + 2.0
        while thread.is_alive() and time.time() < deadline + 5:
            if time.time() >= next_probe:
                probes.append(round(_home_latency(browser, server.url), 2))
                next_probe = time.time() + args.probe_every
            time.sleep(0.2)
        while len(probes) < args.min_probes and time.time() < deadline:
            probes.append(round(_home_latency(browser, server.url), 2))
        sampler.stop()
        thread.join(timeout=10)
        elapsed = time.time() - measure_started
        sampler_result["starts_after_s"] = round(starts_at - measure_started, 1)
        # The class proper, from the Starts to the end (bench_classroom's cpu_cores covers the same span).
        class_seconds = time.time() - starts_at
        sampler_result["cpu_cores_from_starts"] = {
            name: round((group.cpu_seconds - cpu_at_starts[name]) / class_seconds, 3)
            for name, group in sampler.groups.items()}
        sampler_result["cpu_cores_before_starts"] = {
            name: round(cpu_at_starts[name] / max(starts_at - measure_started, 1e-9), 3)
            for name in sampler.groups}
        return _summarise(args, home, records, probes, idle, sampler, sampler_result, elapsed, loop_error)


def _summarise(args, home, records, probes, idle, sampler, extra, elapsed, loop_error) -> dict:
    runs = []
    for record in records:
        entry = {k: record.get(k) for k in ("index", "home_s", "try_demo_s", "workspace", "run", "page_status",
                                            "lost", "page_at_loss", "final_look_error", "stats")}
        if record.get("run_dir") and Path(record["run_dir"]).exists():
            disk = _run_times(Path(record["run_dir"]), record["clicked"])
            entry.update(disk_status=disk["status"], queue_wait_s=disk["queue_wait_s"],
                         disk_time_to_finished_s=disk["time_to_finished_s"], training_s=disk["training_s"])
            if record.get("page_seen"):
                entry["page_time_to_finished_s"] = round(record["page_seen"] - record["clicked"], 2)
                if disk["time_to_finished_s"] is not None:
                    entry["page_lag_s"] = round(entry["page_time_to_finished_s"] - disk["time_to_finished_s"], 2)
        elif record.get("run"):
            entry["lost"] = entry["lost"] or "no run directory"
        if entry.get("page_status") is None and not entry["lost"] and not args.demo_only:
            entry["lost"] = "the page never showed the run ended"
        runs.append(entry)
    disagreements = [
        f"session {r['index']}: page {r.get('page_status')}, disk {r.get('disk_status')}, lag {r.get('page_lag_s')}"
        for r in runs if r.get("run") and (r.get("page_status") != r.get("disk_status")
                                           or not (-0.5 <= (r.get("page_lag_s") or 0) <= args.max_page_lag))
    ]
    page_times = [r["page_time_to_finished_s"] for r in runs if r.get("page_time_to_finished_s") is not None]
    disk_times = [r["disk_time_to_finished_s"] for r in runs if r.get("disk_time_to_finished_s") is not None]
    demo_times = [r["try_demo_s"] for r in runs if r.get("try_demo_s") is not None]
    last_disk = max(disk_times, default=None)
    return {
        "sessions": args.sessions,
        "all_finished": all(r.get("disk_status") == "finished" and r.get("page_status") == "finished" for r in runs),
        "lost": [f"session {r['index']}: {r['lost']}" for r in runs if r["lost"]],
        "leaks": _leaks(records),
        "page_disk_disagreements": disagreements,
        "last_finished_s": last_disk,
        "last_finished_on_page_s": max(page_times, default=None),
        "median_time_to_finished_s": statistics.median(disk_times) if disk_times else None,
        "median_queue_wait_s": statistics.median([r.get("queue_wait_s") or 0 for r in runs]),
        "target_90_s_met": bool(last_disk is not None and last_disk <= 90 and len(disk_times) == len(runs)),
        "try_demo_s": {"median": statistics.median(demo_times) if demo_times else None,
                       "max": max(demo_times, default=None)},
        "home_latency_s": probes,
        "home_latency_median_s": statistics.median(probes) if probes else None,
        "home_latency_idle_s": idle,
        "measured_s": round(elapsed, 1),
        "cpu_cores": {name: round(group.cpu_seconds / elapsed, 3) for name, group in sampler.groups.items()},
        "cpu_seconds": {name: round(group.cpu_seconds, 1) for name, group in sampler.groups.items()},
        "peak_rss_mb": {name: round(group.peak_rss_mb, 1) for name, group in sampler.groups.items()},
        **extra,
        "client_loop_error": repr(loop_error[0]) if loop_error else None,
        "runs": runs,
    }


def browser_class(args, tmp: Path) -> dict:
    """bench_classroom's class of K real browser sessions on a fresh server (same settings)."""
    home = tmp / f"browsers-{args.browser_sessions}"
    weights = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.exists() else None
    with streamlit_server(home, weights_dir=weights, env={**SERVER_ENV, "TRANSFER_MAX_CONCURRENT_RUNS":
                                                          str(args.concurrent_runs)},
                          drop_env=["TRANSFER_ALLOWED_DATA_DIRS"]) as server, chromium() as browser:
        _home_latency(browser, server.url)
        idle = [round(_home_latency(browser, server.url), 2) for _ in range(3)]
        classroom_args = SimpleNamespace(server_pid=server.process.pid, out=args.out, probe_every=args.probe_every,
                                         min_probes=args.min_probes, max_seconds=args.class_limit)
        result = one_class(browser, server.url, home, args.browser_sessions, classroom_args)
    result["home_latency_idle_s"] = idle
    last = result.get("last_finished_s")
    result["target_30_s_met"] = bool(result["all_finished"] and last is not None and last <= 30)
    return result


def _on_time_limit(signum, frame):
    raise TimeoutError("bench_class30: --time-limit reached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30, help="protocol sessions (0: skip)")
    parser.add_argument("--browser-sessions", type=int, default=8, help="real browser sessions (0: skip)")
    parser.add_argument("--concurrent-runs", type=int, default=1, help="TRANSFER_MAX_CONCURRENT_RUNS")
    parser.add_argument("--probe-every", type=float, default=15.0, help="seconds between new-visitor probes")
    parser.add_argument("--min-probes", type=int, default=3)
    parser.add_argument("--max-page-lag", type=float, default=12.0,
                        help="most seconds the page may show the end after the event (polls every 3-5 s)")
    parser.add_argument("--class-limit", type=float, default=900.0, help="give up on one class after this")
    parser.add_argument("--time-limit", type=int, default=1800, help="the whole command stops after this")
    parser.add_argument("--demo-only", action="store_true",
                        help="the students press Try the demo and stop there (no Start): times Try the demo alone")
    parser.add_argument("--out")
    args = parser.parse_args()
    reason = browser_missing_reason()
    if reason:
        sys.exit(f"No browser: {reason}")
    signal.signal(signal.SIGALRM, _on_time_limit)
    signal.alarm(args.time_limit)  # The servers stop in their context managers' finally blocks.
    results = {"cores": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 2),
               "note": "server, training workers, the probing Chromium and the protocol clients all ran on these "
                       "cores", "protocol": None, "browsers": None}
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="class30-") as tmp_text:
            if args.sessions:
                results["protocol"] = protocol_class(args, Path(tmp_text))
                print(f"protocol N={args.sessions}: " + _short(results["protocol"]), flush=True)
            if args.browser_sessions:
                results["browsers"] = browser_class(args, Path(tmp_text))
                print(f"browsers N={args.browser_sessions}: " + _short(results["browsers"]), flush=True)
    except TimeoutError as error:
        results["error"] = str(error)
    finally:
        signal.alarm(0)
        results["total_s"] = round(time.time() - started, 1)
        results["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        write_result(results, args.out)


def _short(result: dict) -> str:
    keys = ("all_finished", "lost", "leaks", "try_demo_s", "last_finished_s", "median_time_to_finished_s",
            "home_latency_s", "cpu_cores", "peak_rss_mb")
    return ", ".join(f"{key}={result.get(key)}" for key in keys)


if __name__ == "__main__":
    main()
