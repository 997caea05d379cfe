"""First page: how long until the Home page has rendered, from a warm Python and in a real browser.

1. AppTest: a fresh Python process imports streamlit (warm Python), then runs app.py once;
   we time the run and check that TensorFlow was not imported.
2. Browser: a running `streamlit run app.py` server, Debian's chromium opens the page in a new
   context each time; we time until the Home title is visible.

    python bench/bench_first_page.py --repeats 5 --out bench/results/first_page.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from _common import REPO, median, write_result

_APPTEST_PROBE = r"""
import sys, time
import streamlit
from streamlit.testing.v1 import AppTest
started = time.perf_counter()
at = AppTest.from_file("app.py", default_timeout=60)
at.run()
seconds = time.perf_counter() - started
assert not at.exception, at.exception
print(seconds, "tensorflow" in sys.modules)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    env = {**os.environ, "TRANSFER_HOME": tempfile.mkdtemp(prefix="bench-home-")}

    apptest, imported_tf = [], []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", _APPTEST_PROBE], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        apptest.append(float(out[0]))
        imported_tf.append(out[1] == "True")

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    browser_seconds = []
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            deadline = time.time() + 60
            while time.time() < deadline:  # Wait for the server to listen.
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            for index in range(args.repeats + 1):
                context = browser.new_context()
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("heading", name="Transfer Lab").first.wait_for(timeout=30000)
                if index:  # The first load warms the server's script cache.
                    browser_seconds.append(time.perf_counter() - started)
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    write_result(
        {
            "apptest_first_run_seconds": apptest,
            "median_apptest_seconds": median(apptest),
            "tensorflow_imported_by_home": any(imported_tf),
            "browser_seconds_to_home_title": browser_seconds,
            "median_browser_seconds": median(browser_seconds),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
