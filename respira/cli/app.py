"""The typer app and its sub-groups, shared by the command modules."""

import typer
from rich.console import Console

app = typer.Typer(
    name="respira",
    help="Find, count and classify respiratory and vocal sounds in audio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Import data sets into manifests and summarise them.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)
