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
        assert {"strategy", "val_accuracy", "best_val_accuracy", "seconds", "epochs", "trainable_params",
                "run_dir"} <= set(run)
        assert Path(run["run_dir"], "model.keras").exists()
    assert report["runs"][1]["trainable_params"] > report["runs"][0]["trainable_params"]
