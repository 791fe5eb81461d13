"""`respira` commands: detect."""

from respira.cli.app import app  # noqa: F401
