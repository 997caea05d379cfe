"""Memory of the app server across many runs: the Train page (real Streamlit script, AppTest in this
process, which plays the server) starts N runs one after another on the demo data and polls each
until it ends, like a browser would. Training happens in worker processes, so the server's
resident memory should stay flat.

    python bench/bench_server_memory.py --runs 10 --out bench/results/server_memory.json
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_WEIGHTS, REPO, rss_mb, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--out")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-server-"))
    os.environ["TRANSFER_HOME"] = str(home)
    os.environ["TRANSFER_WEIGHTS_DIR"] = args.weights_dir
    from streamlit.testing.v1 import AppTest

    from transfer_core.config import FreezePlan, ModelSpec
    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    state.settings.cache_clear()
    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=20, image_size=96)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state["workspace"] = workspace
    at.session_state["dataset_root"] = spec.root
    at.session_state["model_spec"] = ModelSpec(backbone="mobilenet_v2_0.35", input_size=args.input_size)
    at.session_state["freeze_plan"] = FreezePlan(mode="top_blocks", top_blocks=2)
    at.run()
    at.switch_page("pages/train.py").run()
    samples = []
    for index in range(args.runs + 1):
        if index == 1:
            gc.collect()
            baseline = rss_mb()  # After one run: imports and page caches are warm.
        at.radio(key="train_strategy").set_value("fine_tuning" if index % 2 else "feature_extraction")
        at.number_input(key="train_epochs").set_value(3)
        at.button(key="train_start").click().run()
        assert not at.exception, at.exception
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(1.0)
            at.run()
            if any(s.value == "Finished." for s in at.success) or at.error:
                break
        assert any(s.value == "Finished." for s in at.success), [e.value for e in at.error]
        gc.collect()
        samples.append(round(rss_mb(), 1))
        print(f"run {index}: server RSS {samples[-1]} MB", flush=True)
    write_result(
        {
            "runs_measured": args.runs,
            "baseline_rss_mb": round(baseline, 1),
            "rss_after_each_run_mb": samples[1:],
            "growth_mb": round(samples[-1] - baseline, 1),
            "imports_tensorflow": "tensorflow" in __import__("sys").modules,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
