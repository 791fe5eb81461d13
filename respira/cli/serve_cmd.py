"""`respira` commands: serve."""

from respira.cli.app import app  # noqa: F401
