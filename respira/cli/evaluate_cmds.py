"""`respira` commands: evaluate."""

from respira.cli.app import app  # noqa: F401
