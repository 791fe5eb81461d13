"""`respira` commands: train."""

from respira.cli.app import app  # noqa: F401
