"""`respira info` and `respira data ...`."""

from respira.cli.app import app, data_app  # noqa: F401
