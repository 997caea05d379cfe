"""Compare strategies on the same data: start the runs, tabulate them, read the numbers aloud.

A *comparison* is a few runs that differ only in strategy: feature extraction,
fine-tuning, optionally from scratch and optionally the "BatchNorm pitfall"
(fine-tuning with BatchNormalization in training mode). They share the data
set, split, seed, backbone, input size and batch size, and they run one after
another through the normal job runner (so their timings do not share the CPU).

- :mod:`~transfer_core.compare.configs`: building and starting a comparison.
- :mod:`~transfer_core.compare.estimate`: how long it will take, before it starts.
- :mod:`~transfer_core.compare.table`: the table, the curves, CSV and JSON, from the run store
  (any finished runs can be compared, also runs from the Train page or the command line).
- :mod:`~transfer_core.compare.reading`: the numbers as a few plain sentences for a student.
- :mod:`~transfer_core.compare.before_after`: a run again on a fixed data set's newest version, and
  the reading of such a before/after pair.

Pure pandas; no TensorFlow, no Streamlit.
"""

from transfer_core.compare.before_after import (
    before_after_reading,
    before_run,
    differ_only_in_data,
    newer_version,
    train_again_config,
)
from transfer_core.compare.configs import comparison_configs, comparison_groups, start_comparison
from transfer_core.compare.estimate import (
    LONG_COMPARISON_SECONDS,
    ComparisonEstimate,
    RunEstimate,
    Speeds,
    estimate_comparison,
    estimate_for,
    load_speeds,
    measured_speeds,
    record_speeds,
    speed_file,
)
from transfer_core.compare.labels import BN_PITFALL_LABEL, COMPARISON_PREFIX, STRATEGY_LABELS, run_label
from transfer_core.compare.reading import reading
from transfer_core.compare.table import (
    CURVE_COLUMNS,
    TABLE_COLUMNS,
    comparison_table,
    curves_frame,
    default_run_id,
    describe_run,
    finished_runs,
    results_csv,
    results_json,
)

__all__ = [
    "BN_PITFALL_LABEL",
    "COMPARISON_PREFIX",
    "CURVE_COLUMNS",
    "LONG_COMPARISON_SECONDS",
    "STRATEGY_LABELS",
    "TABLE_COLUMNS",
    "ComparisonEstimate",
    "before_after_reading",
    "before_run",
    "RunEstimate",
    "Speeds",
    "comparison_configs",
    "comparison_groups",
    "comparison_table",
    "curves_frame",
    "default_run_id",
    "describe_run",
    "differ_only_in_data",
    "estimate_comparison",
    "estimate_for",
    "finished_runs",
    "load_speeds",
    "measured_speeds",
    "newer_version",
    "reading",
    "record_speeds",
    "results_csv",
    "results_json",
    "run_label",
    "speed_file",
    "start_comparison",
    "train_again_config",
]
