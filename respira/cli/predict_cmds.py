"""`respira` commands: predict."""

from respira.cli.app import app  # noqa: F401
