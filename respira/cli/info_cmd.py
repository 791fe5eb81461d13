"""`respira` commands: info."""

from respira.cli.app import app  # noqa: F401
