"""Real photos, real weights: what every export format costs for an ants-vs-bees model (MobileNetV2 0.35).

Feature extraction on ../shared's hymenoptera photos (245 training, 153 validation images), then every
available format through its own runtime: the cost table the Export page and `export` print. The float
files must give the model's answers exactly; the rounded ones are measured and flagged by the rule, and
int8 is calibrated on training photos only. Prints the table and its reading (BENCHMARKS.md quotes it).
"""

from __future__ import annotations

import time

import pytest
from helpers.runs import make_finished_run, tiny_config

from transfer_core import export
from transfer_core.config import ModelSpec, Settings
from transfer_core.data import split_paths

pytestmark = pytest.mark.slow


def test_the_cost_table_of_a_real_ants_vs_bees_model(hymenoptera_dir, shared_weights_dir, tmp_path):
    from transfer_core.data import ingest_folder

    settings = Settings(home=tmp_path, weights_dir=shared_weights_dir)
    spec = ingest_folder(hymenoptera_dir, tmp_path / "data", settings=settings).spec
    config = tiny_config(spec, model=ModelSpec(backbone="mobilenet_v2_0.35", input_size=160, weights="imagenet"),
                         strategy="feature_extraction", epochs=6, batch_size=32, learning_rate=1e-3)
    run_dir, result = make_finished_run(tmp_path / "runs", config, settings)
    started = time.perf_counter()
    bundle = export.export_run(run_dir)
    table = export.parity_check(run_dir, bundle)
    print(f"\nexport + checks: {time.perf_counter() - started:.0f} s; model val accuracy "
          f"{result.report['val_accuracy']:.4f}\n{export.table_text(table)}\n" + "\n".join(export.cost_reading(table)))
    rows = table.set_index("format")
    assert result.report["val_accuracy"] >= 0.8
    for key in [k for k in export.FLOAT_FORMATS if k in rows.index]:
        assert rows.loc[key, "passed"] and rows.loc[key, "top1_agreement"] == 1.0, rows.loc[key].to_dict()
        assert rows.loc[key, "val_accuracy"] == pytest.approx(result.report["val_accuracy"], abs=1e-9)
    for key in ("tflite_float16", "tflite_quantized", "tflite_int8"):
        row = rows.loc[key]
        assert row["images"] == 153 and row["ms_per_image"] > 0
        expected_flag = row["points_lost_val"] > export.MAX_POINTS_LOST or row["top1_agreement"] < export.MIN_AGREEMENT
        assert bool(row["flagged"]) == bool(expected_flag)
    assert rows.loc["tflite_int8", "size_mb"] < 0.5 * rows.loc["tflite_float", "size_mb"]
    train = set(split_paths(spec, "train")[0])
    assert bundle.calibration.read and set(bundle.calibration.read) <= train
    assert len(bundle.calibration.read) == export.DEFAULT_CALIBRATION_IMAGES
