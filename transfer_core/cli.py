"""Command line: ``python -m transfer_core {zoo,inspect,train,compare,runs,worker}``.

Training goes through the same job runner as the app (a worker process per
run writing to the run store), so the command line and the app cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from transfer_core.cli_export import add_export_command
from transfer_core.config import (
    HEAD_POOLINGS,
    STRATEGIES,
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)
from transfer_core.doctor import add_doctor_command
from transfer_core.events import TERMINAL_EVENTS
from transfer_core.report import EMPTY_REPORT


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if getattr(args, "home", None):
        changes["home"] = Path(args.home)
    if getattr(args, "weights_dir", None):
        changes["weights_dir"] = Path(args.weights_dir)
    if changes:
        import dataclasses

        settings = dataclasses.replace(settings, **changes)
    return settings


def _fingerprint(source: Path) -> str:
    """Cheap identity of a folder or file: names, sizes and modification times."""
    digest = hashlib.sha256(str(source.resolve()).encode())
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        stat = source.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def prepare_dataset(source: Path, settings: Settings, *, seed: int = 0, val_fraction: float = 0.2,
                    quiet: bool = False) -> DatasetSpec:
    """Turn a folder, a ZIP or an ingested data set into a DatasetSpec (ingesting once)."""
    from transfer_core import data

    source = Path(source)
    if not source.exists():
        raise SystemExit(f"error: {source} does not exist.")
    if source.is_dir() and (source / "dataset.json").exists():
        return data.load_dataset(source)
    key = _fingerprint(source) + f"-s{seed}-v{val_fraction:g}"
    dest = Path(settings.home) / "datasets" / f"{source.stem[:40]}-{key}"
    if (dest / "dataset.json").exists():
        return data.load_dataset(dest)
    if dest.exists():
        import shutil

        shutil.rmtree(dest)  # A half-finished earlier ingest.
    ingest = data.ingest_zip if source.suffix.lower() == ".zip" else data.ingest_folder
    result = ingest(source, dest, seed=seed, val_fraction=val_fraction, settings=settings)
    if not quiet:
        for skipped in result.skipped:
            print(f"skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    return result.spec


class _ProgressBar:
    """One status line on stderr: stage, epoch, batch, loss, val accuracy, ETA.

    Fraction done and ETA come from :func:`transfer_core.live.summarise_progress`, the same
    summary the app's Train page shows.
    """

    def __init__(self, label: str, stream=sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.started = time.time()
        self.interactive = stream.isatty()
        self._last_draw = 0.0

    def _due(self, final: bool) -> bool:
        """Whether a line is drawn now: every final line; a redraw at most every 0.1 s (5 s to a file)."""
        return final or time.time() - self._last_draw > (0.1 if self.interactive else 5)

    def _draw(self, text: str, final: bool = False) -> None:
        if self.interactive:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = time.time()

    def __call__(self, event: dict[str, Any]) -> None:
        from transfer_core.live import summarise_progress

        self.events.append(event)
        kind = event.get("type")
        if kind == "run_started":
            self._draw(f"{self.label}: {event['num_train']} train / {event['num_val']} val images", final=True)
        elif kind == "queued":
            self._draw(f"{self.label}: {event.get('message', 'queued')}", final=True)
        elif kind == "stage":
            self._draw(f"{self.label}: {event['description']}", final=True)
        elif kind == "frozen_runtime":
            from transfer_core.display.run_text import frozen_runtime_text

            self._draw(f"{self.label}: {frozen_runtime_text(event)}", final=True)
        elif kind == "progress" and self._due(False):
            self._draw(f"{self.label}: {event['stage']} {event['done']}/{event['total']} images")
        elif kind == "batch_end" and self._due(False):
            progress = summarise_progress(self.events, now=event.get("time"))
            last_val = f" val_acc {progress.last_val_accuracy:.3f}" if progress.last_val_accuracy is not None else ""
            eta = f" ETA {progress.eta_seconds:.0f}s" if progress.eta_seconds is not None else ""
            self._draw(
                f"{self.label}: {_bar(progress.fraction)} epoch {event['epoch']}/{progress.epochs_total} batch "
                f"{event['batch']}/{event['batches']} loss {event['loss']:.4f}{last_val}{eta}"
            )
        elif kind == "epoch_end":
            total = summarise_progress(self.events).epochs_total
            self._draw(
                f"{self.label}: epoch {event['epoch']}/{total} loss {event['loss']:.4f} "
                f"acc {event['accuracy']:.3f} val_loss {event['val_loss']:.4f} "
                f"val_acc {event['val_accuracy']:.3f} ({event['seconds']:.1f}s)",
                final=True,
            )
        elif kind in TERMINAL_EVENTS:
            extra = f": {event['reason']}" if event.get("reason") else ""
            self._draw(f"{self.label}: {kind} after {time.time() - self.started:.1f}s{extra}", final=True)


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(width * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _run_parts(args: argparse.Namespace, strategy: str) -> tuple[ModelSpec, FreezePlan, TrainConfig]:
    """The data-independent part of a run, validated (ValueError) before any data is touched."""
    from transfer_core import zoo

    model = ModelSpec(
        backbone=args.backbone,
        input_size=args.input_size,
        weights="random" if strategy == "from_scratch" or args.random_weights else "imagenet",
        dropout_rate=args.dropout,
        hidden_units=args.hidden_units,
        head=args.head,
    )
    zoo.check_input_size(model.backbone, model.input_size)  # Unknown backbone or size: ValueError.
    freeze = FreezePlan(mode="top_blocks", top_blocks=args.top_blocks, train_batchnorm=args.train_batchnorm)
    train = TrainConfig(
        strategy=strategy,
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        optimizer=args.optimizer,
        augmentation=tuple(a for a in args.augment.split(",") if a),
        early_stopping_patience=args.patience,
        seed=args.seed,
        class_weights=args.class_weights,
        use_cache=not args.no_cache,
        precision=args.precision,
        distribution=args.strategy_distribute,
    )
    return model, freeze, train


def _run_config(args: argparse.Namespace, spec: DatasetSpec, strategy: str) -> RunConfig:
    model, freeze, train = _run_parts(args, strategy)
    return RunConfig(dataset=spec, model=model, freeze=freeze, train=train, name=args.name or "")


def _run_one(config: RunConfig, settings: Settings, runs_dir: Path, quiet: bool) -> dict[str, Any]:
    from transfer_core import jobs
    from transfer_core.runs import load_run

    run_dir = jobs.start_run(config, runs_dir=runs_dir, settings=settings)
    progress = None if quiet else _ProgressBar(config.train.strategy)
    try:
        jobs.follow(run_dir, progress)
    except KeyboardInterrupt:
        print("\nstopping (keeps the best weights so far)...", file=sys.stderr)
        jobs.stop_and_wait(run_dir)
    info = load_run(run_dir)
    report = info.report or EMPTY_REPORT
    return {
        "strategy": config.train.strategy,
        "status": info.status,
        "reason": info.reason,
        "val_accuracy": report.val_accuracy,
        "best_val_accuracy": report.best_val_accuracy,
        "val_loss": report.val_loss,
        # Of the held-out test split (None without one): the number to quote.
        "test_accuracy": report.test_accuracy,
        "num_test": report.num_test,
        "seconds": report.seconds,
        "training_seconds": report.training_seconds,
        "time_budget_seconds": report.time_budget_seconds,
        "epochs": report.epochs,
        "trainable_params": report.trainable_params,
        "images_per_second": report.images_per_second,
        "run_dir": str(run_dir),
    }


def summary_text(runs: list[dict[str, Any]]) -> str:
    """The printed summary of a comparison: one line per run, test accuracy marked as the number to quote.

    Args:
        runs: The ``runs`` of ``compare``'s report.

    Returns:
        Lines of text (no trailing newline).
    """
    def percent(value) -> str:
        return f"{value:.1%}" if isinstance(value, (int, float)) else "-"

    lines = []
    for run in runs:
        line = f"{run['strategy']:<18} {run['status']:<9} val accuracy {percent(run['val_accuracy'])}"
        if run.get("test_accuracy") is not None:
            line += f"   test accuracy {percent(run['test_accuracy'])} on {run['num_test']} images"
        lines.append(line)
    if any(run.get("test_accuracy") is not None for run in runs):
        lines.append("test accuracy — the number to quote: these images were never used to choose anything")
    return "\n".join(lines)


def cmd_zoo(args: argparse.Namespace) -> int:
    from transfer_core import zoo

    table = zoo.zoo_table(_settings(args))
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string(index=False))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from transfer_core import data

    settings = _settings(args)
    spec = prepare_dataset(Path(args.data), settings, seed=args.seed, val_fraction=args.val_fraction)
    report = data.health_report(spec)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    print(f"data set: {spec.root}")
    print(report.counts.to_string())
    print(f"imbalance (largest / smallest class): {report.imbalance_ratio:.2f}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for skipped in report.skipped:
        print(f"skipped {skipped.name}: {skipped.reason}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _run_parts(args, args.strategy)  # Bad flags are reported before the data is copied.
    spec = prepare_dataset(Path(args.data), settings, seed=args.seed, val_fraction=args.val_fraction,
                           quiet=args.quiet)
    runs_dir = Path(args.runs_dir) if args.runs_dir else settings.runs_dir
    result = _run_one(_run_config(args, spec, args.strategy), settings, runs_dir, args.quiet)
    print(json.dumps(result, indent=2))
    return 0 if result["status"] == "finished" else 1


def cmd_compare(args: argparse.Namespace) -> int:
    settings = _settings(args)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"error: unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    for strategy in strategies:
        _run_parts(args, strategy)  # Bad flags are reported before the data is copied.
    spec = prepare_dataset(Path(args.data), settings, seed=args.seed, val_fraction=args.val_fraction,
                           quiet=args.quiet)
    runs_dir = Path(args.runs_dir) if args.runs_dir else settings.runs_dir
    configs = [_run_config(args, spec, strategy) for strategy in strategies]
    from transfer_core.training import preflight

    for config in configs:  # Validate every run before any work starts.
        preflight(config, settings)
    runs = []
    for config in configs:
        fine_tuned = [run for run in runs if run["strategy"] == "fine_tuning"]
        if args.same_time_budget and config.train.strategy == "from_scratch" and fine_tuned:
            # As the app's Compare page: from scratch gets the training time fine-tuning used.
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, time_budget_from=fine_tuned[0]["run_dir"]))
        runs.append(_run_one(config, settings, runs_dir, args.quiet))
    report = {"data": spec.root, "backbone": args.backbone, "seed": args.seed, "runs": runs}
    if args.report:
        from transfer_core.fileio import atomic_write_json

        atomic_write_json(Path(args.report), report)
    print(json.dumps(report, indent=2))
    if not args.quiet:
        print(summary_text(runs), file=sys.stderr)
    return 0 if all(r["status"] == "finished" for r in runs) else 1


def cmd_runs(args: argparse.Namespace) -> int:
    from transfer_core.runs import RunStore

    settings = _settings(args)
    store = RunStore(Path(args.runs_dir) if args.runs_dir else settings.runs_dir)
    if args.delete:
        store.delete(args.delete)
        print(f"deleted {args.delete}")
        return 0
    for info in store.list_runs():
        accuracy = (info.report or EMPTY_REPORT).val_accuracy
        shown = f"{accuracy:.3f}" if isinstance(accuracy, (int, float)) else "-"
        print(f"{info.run_id}  {info.status:<11} {info.strategy:<18} val_acc {shown}  {info.reason}")
    return 0


def cmd_standby(args: argparse.Namespace) -> int:
    from transfer_core.jobs import standby_main

    return standby_main(Path(args.directory), args.key)


def cmd_prepare(args: argparse.Namespace) -> int:
    from transfer_core.frozen_runtime.prepare import demo_fingerprint, demo_is_prepared, prepare_demo

    settings = _settings(args)
    if demo_fingerprint(settings) is None:
        print("Nothing to convert: the demo uses random weights here, or LiteRT is off.")
        return 0
    if args.if_needed and demo_is_prepared(settings):
        print("The demo's LiteRT networks are ready (converted earlier).")
        return 0
    print("Converting the demo's frozen networks for LiteRT (once per machine, ~10 s)...", flush=True)
    for line in prepare_demo(settings):
        print(f"  {line}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from transfer_core.jobs import worker_main

    return worker_main(Path(args.run_dir))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="workspace root for data sets, runs and caches (env TRANSFER_HOME)")
    parser.add_argument("--weights-dir", help="offline ImageNet weights folder (env TRANSFER_WEIGHTS_DIR)")


def _add_training(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--data", required=True,
                        help="a folder with one sub-folder per class (or train/ and val/), a ZIP, "
                             "or an ingested data set folder")
    parser.add_argument("--backbone", default=ModelSpec().backbone, help="zoo key (see `zoo`)")
    parser.add_argument("--input-size", type=int, default=0, help="input side in pixels (0 = backbone default)")
    parser.add_argument("--random-weights", action="store_true",
                        help="random initialisation instead of ImageNet weights (no transfer)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="epochs of head training (or of from-scratch training)")
    parser.add_argument("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs,
                        help="epochs of stage 2 of fine-tuning (unfrozen top blocks)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per batch")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help="learning rate of the head and of from-scratch training")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate,
                        help="lower learning rate for the unfrozen blocks")
    parser.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "sgd", "rmsprop", "adamw"])
    parser.add_argument("--dropout", type=float, default=ModelSpec().dropout_rate, help="dropout before the classifier")
    parser.add_argument("--hidden-units", type=int, default=0, help="hidden Dense units in the head (0 = none)")
    parser.add_argument("--head", default=ModelSpec().head, choices=list(HEAD_POOLINGS),
                        help="how the head reads the feature map: global average or max pooling, or Flatten")
    parser.add_argument("--top-blocks", type=int, default=FreezePlan().top_blocks,
                        help="blocks unfrozen in fine-tuning, counted from the top")
    parser.add_argument("--train-batchnorm", action="store_true",
                        help="the BatchNorm pitfall: let unfrozen BatchNorm layers train (for teaching)")
    parser.add_argument("--augment", default="", help="comma-separated: flip,rotate,zoom,contrast (turns caching off)")
    parser.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="validation share when the data has no split of its own")
    parser.add_argument("--class-weights", action="store_true", help="weight the loss against class imbalance")
    parser.add_argument("--no-cache", action="store_true", help="do not cache backbone features")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16", "auto"],
                        help="compute precision; auto = mixed_float16 on a GPU, float32 on a CPU")
    parser.add_argument("--distribute", dest="strategy_distribute", default="none", choices=["none", "mirrored"],
                        help="tf.distribute strategy: mirrored = MirroredStrategy over all visible GPUs "
                             "(or the CPU); a GPU needs the GPU install (scripts/setup.sh --gpu; see `doctor`)")
    parser.add_argument("--runs-dir", help="where run directories go (default <home>/runs)")
    parser.add_argument("--name", help="a label for the run")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m transfer_core",
        description="Transfer Lab: train and compare transfer-learning strategies from the command line.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    zoo_parser = sub.add_parser("zoo", help="list backbones, their facts and offline weight availability")
    _add_common(zoo_parser)
    zoo_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    zoo_parser.set_defaults(func=cmd_zoo)

    inspect_parser = sub.add_parser("inspect", help="health report of a data set")
    _add_common(inspect_parser)
    inspect_parser.add_argument("--data", required=True, help="folder, ZIP or ingested data set")
    inspect_parser.add_argument("--seed", type=int, default=0, help="split seed")
    inspect_parser.add_argument("--val-fraction", type=float, default=0.2, help="validation share")
    inspect_parser.add_argument("--json", action="store_true", help="print JSON")
    inspect_parser.set_defaults(func=cmd_inspect)

    train_parser = sub.add_parser("train", help="train one strategy and print its result as JSON")
    _add_common(train_parser)
    _add_training(train_parser)
    train_parser.add_argument("--strategy", default="feature_extraction", choices=list(STRATEGIES))
    train_parser.set_defaults(func=cmd_train)

    compare_parser = sub.add_parser(
        "compare", help="train several strategies on the same split and seed, one after another"
    )
    _add_common(compare_parser)
    _add_training(compare_parser)
    compare_parser.add_argument("--strategies", default=",".join(STRATEGIES),
                                help="comma-separated strategies to run")
    compare_parser.add_argument("--report", help="write the JSON report to this file")
    compare_parser.add_argument(
        "--same-time-budget", action=argparse.BooleanOptionalAction, default=True,
        help="from scratch trains for the training time fine-tuning used (listed after it), ending within one "
             "batch of it, so the two compare at equal cost (default: on, as in the app)")
    compare_parser.set_defaults(func=cmd_compare)

    runs_parser = sub.add_parser("runs", help="list runs (or delete one)")
    _add_common(runs_parser)
    runs_parser.add_argument("--runs-dir", help="run store folder (default <home>/runs)")
    runs_parser.add_argument("--delete", metavar="RUN_ID", help="delete this run")
    runs_parser.set_defaults(func=cmd_runs)

    prepare_parser = sub.add_parser(
        "prepare", help="convert the demo's frozen networks for LiteRT now (scripts/start.sh runs it), "
                        "so that the first demo run of a new server does not wait for it")
    _add_common(prepare_parser)
    prepare_parser.add_argument("--if-needed", action="store_true",
                                help="do nothing (and import no TensorFlow) when they were converted earlier")
    prepare_parser.set_defaults(func=cmd_prepare)

    worker_parser = sub.add_parser("worker", help="(internal) train the run in RUN_DIR")
    worker_parser.add_argument("run_dir")
    worker_parser.set_defaults(func=cmd_worker)
    standby_parser = sub.add_parser("standby", help="(internal) wait with TensorFlow loaded for a run to train")
    standby_parser.add_argument("directory")
    standby_parser.add_argument("key")
    standby_parser.set_defaults(func=cmd_standby)
    add_export_command(sub, _add_common, _settings)
    add_doctor_command(sub, _add_common, _settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from transfer_core.jobs import StartFailed
    from transfer_core.zoo import WeightsUnavailableError

    try:
        return args.func(args)
    except (ValueError, WeightsUnavailableError, StartFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
