"""The command line: help, zoo, inspect, bad settings, and a tiny train through the real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from transfer_core.cli import main

REPO = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for label, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (24 + i, 24), color).save(root / label / f"{i}.png")
    (root / "red" / "notes.txt").write_text("not an image")
    return root


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--backbone", "--epochs", "--report", "--strategies", "--augment", "--seed"):
        assert flag in text


def test_zoo_lists_offline_availability(capsys, shared_weights_dir):
    assert main(["zoo", "--json", "--weights-dir", str(shared_weights_dir)]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert len(rows) >= 12
    assert rows["mobilenet_v2_0.35"]["weights_offline"] is True
    assert rows["mobilenet_0.25"]["weights_offline"] is True
    assert rows["resnet50"]["weights_offline"] is False


def test_inspect_reports_counts_and_skipped_files(capsys, tmp_path):
    assert main(["inspect", "--data", str(_folder(tmp_path)), "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    assert "red" in out and "blue" in out
    assert "notes.txt" in out


def test_bad_settings_fail_before_any_work(capsys, tmp_path):
    code = main(["train", "--data", str(_folder(tmp_path)), "--home", str(tmp_path / "home"), "--epochs", "0"])
    assert code == 2
    assert "epochs=0" in capsys.readouterr().err
    assert not (tmp_path / "home" / "runs").exists()


def test_unknown_backbone_is_reported_with_choices(capsys, tmp_path):
    code = main(["train", "--data", str(_folder(tmp_path)), "--home", str(tmp_path / "home"),
                 "--backbone", "alexnet"])
    assert code == 2
    assert "alexnet" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_writes_the_report_schema(tmp_path):
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "transfer_core", "compare", "--data", str(_folder(tmp_path)),
        "--home", str(tmp_path / "home"), "--backbone", "mobilenet_v2_0.35", "--input-size", "32",
        "--random-weights", "--epochs", "1", "--fine-tune-epochs", "1", "--batch-size", "4",
        "--strategies", "feature_extraction,fine_tuning", "--report", str(report_path), "--quiet",
    ]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert [run["strategy"] for run in report["runs"]] == ["feature_extraction", "fine_tuning"]
    for run in report["runs"]:
        assert {"strategy", "val_accuracy", "best_val_accuracy", "test_accuracy", "num_test", "seconds", "epochs",
                "trainable_params", "run_dir"} <= set(run)
        assert run["test_accuracy"] is None and run["num_test"] is None  # No test split in this folder.
        assert Path(run["run_dir"], "model.keras").exists()
    assert report["runs"][1]["trainable_params"] > report["runs"][0]["trainable_params"]


def _split_folder(tmp_path: Path) -> Path:
    """A folder with train/, val/ and test/ splits, one sub-folder per class in each."""
    root = tmp_path / "split_images"
    for split, count, offset in (("train", 6, 0), ("val", 3, 10), ("test", 3, 20)):
        for label, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            (root / split / label).mkdir(parents=True)
            for i in range(count):  # Every image a different size: no two are duplicates.
                Image.new("RGB", (24 + offset + i, 24), color).save(root / split / label / f"{i}.png")
    return root


@pytest.mark.slow
def test_compare_reports_test_accuracy_as_the_number_to_quote(tmp_path):
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "transfer_core", "compare", "--data", str(_split_folder(tmp_path)),
        "--home", str(tmp_path / "home"), "--backbone", "mobilenet_v2_0.35", "--input-size", "32",
        "--random-weights", "--epochs", "1", "--batch-size", "4", "--strategies", "feature_extraction",
        "--report", str(report_path),
    ]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    run = json.loads(report_path.read_text())["runs"][0]
    assert run["num_test"] == 6 and 0.0 <= run["test_accuracy"] <= 1.0
    assert f"test accuracy {run['test_accuracy']:.1%} on 6 images" in completed.stderr
    assert "the number to quote: these images were never used to choose anything" in completed.stderr


@pytest.mark.slow
def test_compare_gives_from_scratch_fine_tunings_training_time_as_the_app_does(tmp_path):
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "transfer_core", "compare", "--data", str(_folder(tmp_path)),
        "--home", str(tmp_path / "home"), "--backbone", "mobilenet_v2_0.35", "--input-size", "32",
        "--random-weights", "--epochs", "20", "--fine-tune-epochs", "1", "--batch-size", "4",
        "--strategies", "fine_tuning,from_scratch", "--report", str(report_path), "--quiet",
    ]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    fine_tuning, scratch = json.loads(report_path.read_text())["runs"]
    assert fine_tuning["time_budget_seconds"] is None
    assert scratch["time_budget_seconds"] == pytest.approx(fine_tuning["training_seconds"])
    # 21 epochs on cached features vs 20 of the whole network: from scratch runs out of time first.
    assert scratch["epochs"] < 20 and "time budget used" in scratch["reason"]


def test_summary_marks_test_accuracy_as_the_number_to_quote():
    from transfer_core.cli import summary_text

    runs = [{"strategy": "feature_extraction", "status": "finished", "val_accuracy": 0.9, "test_accuracy": 0.85,
             "num_test": 20},
            {"strategy": "fine_tuning", "status": "finished", "val_accuracy": 0.95, "test_accuracy": None,
             "num_test": None}]
    lines = summary_text(runs).splitlines()
    assert lines[0].startswith("feature_extraction") and "val accuracy 90.0%" in lines[0]
    assert lines[0].endswith("test accuracy 85.0% on 20 images")
    assert "test accuracy" not in lines[1]
    assert lines[-1] == "test accuracy — the number to quote: these images were never used to choose anything"
    without = summary_text(runs[1:])
    assert "number to quote" not in without


def test_progress_line_uses_the_apps_progress_summary():
    """The command line shows the fraction and ETA that live.summarise_progress computes for the app."""
    import io

    from transfer_core.cli import _ProgressBar
    from transfer_core.live import summarise_progress

    events = [
        {"type": "run_started", "time": 100.0, "strategy": "feature_extraction", "backbone": "b",
         "weights": "random", "classes": ["a", "b"], "num_train": 40, "num_val": 10, "epochs_total": 2,
         "batch_size": 8, "precision": "float32", "distribution": "none"},
        {"type": "stage", "time": 101.0, "stage": "head", "description": "Training the head", "epochs": 2,
         "cached": True},
    ]
    events += [{"type": "batch_end", "time": 102.0 + b, "stage": "head", "epoch": 1, "batch": b + 1,
                "batches": 5, "step": b + 1, "loss": 0.5, "accuracy": 0.5} for b in range(3)]
    stream = io.StringIO()
    bar = _ProgressBar("fe", stream)
    bar._last_draw = -1e9  # Not a terminal: lines are drawn at most every 5 s; draw the last one now.
    for event in events[:-1]:
        bar(event)
    bar._last_draw = -1e9
    bar(events[-1])
    expected = summarise_progress(events, now=events[-1]["time"])
    assert expected.eta_seconds == pytest.approx(7.0)  # 1 s per batch; 2 left in epoch 1, 5 in epoch 2.
    last = stream.getvalue().splitlines()[-1]
    assert last == "fe: [######--------------] epoch 1/2 batch 3/5 loss 0.5000 ETA 7s"
