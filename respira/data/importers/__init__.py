"""Importers: each public data set's layout -> a manifest, through one registry.

`import_dataset("nonverbal", src)`; `IMPORTERS` lists the formats. Importers read metadata
and list files (they decode audio only where an option asks, e.g. `sides` of covid19-cough-uncut)
and report skipped rows as `DataWarning`.
"""

from respira.data.importers.registry import IMPORTERS, import_dataset, importer_options, register

# Importing a module registers its importers.
from respira.data.importers import covid, generic, lung, vocal  # noqa: F401,E402

__all__ = ["IMPORTERS", "import_dataset", "importer_options", "register"]
