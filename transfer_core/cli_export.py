"""``python -m transfer_core export RUN_ID``: the Export page's files, checks and cost table, headless.

Writes the same files to the run's export folder as the page's **Export and check**, runs
each through its own runtime on the held-out images, prints the same table and reading,
and with ``--report FILE`` writes them as JSON. Imports nothing heavy until it runs (the
worker processes build the same parser).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transfer_core.config import Settings

__all__ = ["add_export_command", "export_report", "run_export"]


def run_export(
    run_dir: Path, formats: tuple[str, ...] | None, calibration_images: int, max_images: int
) -> dict[str, Any]:
    """Export ``run_dir`` in ``formats`` (every available one when None), check the files, save the table.

    Returns:
        The JSON report (:func:`export_report`).
    """
    import warnings

    from transfer_core import export
    from transfer_core.explore.explain import load_model

    warnings.simplefilter("ignore")
    model = load_model(run_dir)
    bundle = export.export_run(run_dir, formats, model=model, calibration_images=calibration_images)
    table = export.parity_check(run_dir, bundle, reference_model=model, max_images=max_images)
    export.save_parity(table, run_dir, bundle)
    return export_report(run_dir, bundle, table)


def export_report(run_dir: Path, bundle, table) -> dict[str, Any]:
    """What ``--report`` writes: the run, the files and how long each took, the table, its reading."""
    from transfer_core import export

    clean = table.astype(object).where(table.notna(), None)
    return {
        "run_id": Path(run_dir).name,
        "folder": str(bundle.folder),
        "files": {key: str(path) for key, path in bundle.files.items()},
        "seconds": bundle.seconds,
        "calibration_images": list(bundle.calibration.read) if bundle.calibration else [],
        "rows": clean.to_dict(orient="records"),
        "reading": export.cost_reading(table),
    }


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from transfer_core import export
    from transfer_core.runs import RunStore

    formats = export.parse_formats(args.formats) if args.formats else None
    candidate = Path(args.run)
    if candidate.is_dir() and (candidate / "config.json").is_file():
        run_dir = candidate
    else:
        run_dir = RunStore(Path(args.runs_dir) if args.runs_dir else settings.runs_dir).path_of(args.run)
    if not (run_dir / "model.keras").is_file():
        raise ValueError(f"No trained model for run {args.run!r} (looked for {run_dir / 'model.keras'}).")
    skipped = [key for key in export.FORMATS if formats is None and export.missing_packages(key)]
    report = run_export(run_dir, formats, args.calibration_images, args.max_images)
    table = pd.DataFrame(report["rows"])
    if args.report == "-":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print(f"Exported run {report['run_id']} to {report['folder']}")
        print(export.table_text(table))
        print("\n".join(report["reading"]))
        for key in skipped:
            print(f"Not written: {key} needs {', '.join(export.missing_packages(key))} "
                  "(pip install -r requirements-export.txt)")
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if bool(table["passed"].all()) else 1


def add_export_command(
    sub: Any, add_common: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add the ``export`` sub-command to the CLI's sub-parsers.

    Args:
        sub: ``parser.add_subparsers()``'s result.
        add_common: Adds ``--home`` and ``--weights-dir``.
        settings_of: Settings from the parsed arguments.
    """
    from transfer_core.export.calibration import DEFAULT_CALIBRATION_IMAGES

    parser = sub.add_parser(
        "export", help="write a run's model in every format, check each through its own runtime, print the costs",
        description="Writes the files to <run>/export, runs each on the validation (and test) images through its "
                    "own runtime, and prints accuracy, agreement with the trained model, size and ms per image. "
                    "Exit code 1 when a file fails its parity check.")
    add_common(parser)
    parser.add_argument("run", metavar="RUN_ID", help="a run id (see `runs`) or a run directory")
    parser.add_argument("--formats", default="",
                        help="comma-separated: keras,saved_model,tflite_float,tflite_float16,tflite_quantized,"
                             "tflite_int8,onnx,labels (default: every format this install can write)")
    parser.add_argument("--report", help="also write the table and reading as JSON to this file (- = stdout)")
    parser.add_argument("--runs-dir", help="run store folder (default <home>/runs)")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="training images that calibrate the int8 TFLite")
    parser.add_argument("--max-images", type=int, default=500,
                        help="check on at most this many validation images (and as many test images)")
    parser.set_defaults(func=lambda args: _cmd_export(args, settings_of(args)))
