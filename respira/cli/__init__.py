"""The `respira` command: one typer app; each sub-module adds its commands and calls the core.

Heavy imports (torch, onnxruntime, fastapi) stay inside the commands, so `respira --help` is instant.
"""

from __future__ import annotations

import os
import sys
import warnings

from respira.cli.app import app, err_console
from respira.errors import RespiraError

# Importing a module registers its commands on `app`.
from respira.cli import (  # noqa: F401,E402
    data_cmds,
    detect_cmds,
    evaluate_cmds,
    info_cmd,
    monitor_cmds,
    predict_cmds,
    serve_cmd,
    train_cmds,
)


def main(argv: list[str] | None = None) -> None:
    """Entry point: typer handles usage errors itself; every RespiraError becomes one line and exit 2."""
    # Idle OpenMP threads yield instead of spinning: on a busy 2-core machine spinning made
    # torch several times slower. Set before any command imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    shown = warnings.showwarning
    warnings.showwarning = _one_line(shown)
    try:
        app(args=argv, prog_name="respira")
    except RespiraError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    finally:
        warnings.showwarning = shown


def _one_line(shown):  # noqa: ANN001, ANN202
    """A warnings.showwarning that prints respira's own warnings (a damaged recording, a skipped row)
    as one line on stderr and leaves the others to `shown`."""

    def show(message, category, *args, **kwargs) -> None:  # noqa: ANN001
        if category.__module__.startswith("respira."):
            err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            shown(message, category, *args, **kwargs)

    return show
