"""Data: ingest (folder, ZIP, uploads), safe decoding, split, versions and fixes, health report, tf.data
pipeline, demo set.

Importing this package does not import TensorFlow; only ``make_tf_dataset``,
``load_split_arrays`` and ``decode_for_model`` load it, when called.
"""

from transfer_core.data.demo_template import demo_dataset_from_template, prepare_demo_template
from transfer_core.data.fixes import (
    add_image,
    current_labels,
    relabel_image,
    remove_image,
    resplit,
    restore_version,
    undo_last_change,
)
from transfer_core.data.health import HealthReport, health_report
from transfer_core.data.images import MAX_STORED_SIDE, ImageRejected, decode_for_model, load_image
from transfer_core.data.ingest import (
    IngestResult,
    dataset_name_from_file,
    ingest_folder,
    ingest_uploads,
    ingest_zip,
    suggest_dataset_name,
)
from transfer_core.data.manifest import (
    MANIFEST_COLUMNS,
    DataError,
    SkippedFile,
    has_own_split,
    load_dataset,
    read_manifest,
    read_notes,
    read_skipped,
    split_paths,
)
from transfer_core.data.pipeline import load_split_arrays, make_tf_dataset
from transfer_core.data.synthetic_demo import DEMO_CLASSES, DEMO_KINDS, WHERE_CLASSES, make_demo_dataset
from transfer_core.data.versions import (
    VersionDiff,
    VersionError,
    VersionRecord,
    check_versions,
    list_versions,
    load_version,
    record_of,
    version_diff,
    version_label,
)

__all__ = [
    "DEMO_CLASSES",
    "DEMO_KINDS",
    "MANIFEST_COLUMNS",
    "MAX_STORED_SIDE",
    "DataError",
    "HealthReport",
    "ImageRejected",
    "IngestResult",
    "SkippedFile",
    "VersionDiff",
    "VersionError",
    "VersionRecord",
    "WHERE_CLASSES",
    "add_image",
    "check_versions",
    "current_labels",
    "dataset_name_from_file",
    "decode_for_model",
    "has_own_split",
    "health_report",
    "ingest_folder",
    "ingest_uploads",
    "ingest_zip",
    "load_dataset",
    "load_image",
    "load_split_arrays",
    "load_version",
    "list_versions",
    "demo_dataset_from_template",
    "make_demo_dataset",
    "prepare_demo_template",
    "make_tf_dataset",
    "read_manifest",
    "read_notes",
    "read_skipped",
    "record_of",
    "relabel_image",
    "remove_image",
    "resplit",
    "restore_version",
    "split_paths",
    "suggest_dataset_name",
    "undo_last_change",
    "version_diff",
    "version_label",
]
