"""The `respira` command: one typer app; each sub-module adds its commands and calls the core.

Heavy imports (torch, onnxruntime, fastapi) stay inside the commands, so `respira --help` is instant.
"""

from __future__ import annotations

import sys

import click
import typer

from respira.cli.app import app, err_console
from respira.errors import RespiraError

# Importing a module registers its commands on `app`.
from respira.cli import (  # noqa: F401,E402
    data_cmds,
    detect_cmds,
    evaluate_cmds,
    info_cmd,
    predict_cmds,
    serve_cmd,
    train_cmds,
)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns every RespiraError into one line and exit code 2."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="respira", standalone_mode=False)
    except click.exceptions.Exit as e:
        rc = e.exit_code
    except click.ClickException as e:
        e.show()
        rc = e.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        rc = 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        rc = 130
    except RespiraError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        rc = 2
    sys.exit(rc if isinstance(rc, int) else 0)
