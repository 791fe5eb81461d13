"""Data sets as manifests: reading / writing / checking them, importers, the label vocabulary, splits."""

from respira.data.importers import IMPORTERS, import_dataset, register
from respira.data.labels import VOCABULARY, map_label, normalise_label
from respira.data.manifest import (
    MANIFEST_COLUMNS,
    SPLITS,
    DataWarning,
    from_records,
    invalid_intervals,
    read_manifest,
    summarize,
    validate,
    write_manifest,
)
from respira.data.splits import group_kfold, split_by_subject

__all__ = [
    "IMPORTERS",
    "MANIFEST_COLUMNS",
    "SPLITS",
    "VOCABULARY",
    "DataWarning",
    "from_records",
    "group_kfold",
    "import_dataset",
    "invalid_intervals",
    "map_label",
    "normalise_label",
    "read_manifest",
    "register",
    "split_by_subject",
    "summarize",
    "validate",
    "write_manifest",
]
