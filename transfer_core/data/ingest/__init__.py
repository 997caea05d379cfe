"""Ingest images from a server folder, a ZIP archive or browser uploads into a data set folder.

The package is split by job: ``layout`` (candidates, and which folder is a wrapper, a split or a
class), ``sources`` (reading a folder or a ZIP archive within the limits), ``store`` (decoding,
storing by content hash, splitting, writing the manifest), ``naming`` (labels and default data
set names) and ``api`` (the three routes). See :mod:`transfer_core.data.ingest.api` for the limits.
"""

from transfer_core.data.ingest.api import ingest_folder, ingest_uploads, ingest_zip
from transfer_core.data.ingest.naming import dataset_name_from_file, suggest_dataset_name
from transfer_core.data.ingest.store import IngestResult

__all__ = [
    "IngestResult",
    "dataset_name_from_file",
    "ingest_folder",
    "ingest_uploads",
    "ingest_zip",
    "suggest_dataset_name",
]
