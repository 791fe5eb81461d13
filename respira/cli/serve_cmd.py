"""`respira serve`: the HTTP API and the web page, with uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from respira.cli.app import app, err_console
from respira.cli.detect_cmds import CONFIG_HELP, SET_HELP
from respira.errors import ConfigError


@app.command("serve")
def serve_command(
    model: list[str] = typer.Option(["cough"], "--model", "-m",
                                    help="A built-in model name or a .respira bundle path; repeat for several "
                                         "(the first is the default)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    token: str | None = typer.Option(None, envvar="RESPIRA_API_TOKEN", show_default=False,
                                     help="Require 'Authorization: Bearer TOKEN' on /api (the page has a field "
                                          "for it)."),
    max_upload_mb: float = typer.Option(50.0, min=0.001, help="Largest upload accepted, MB."),
    workers: int = typer.Option(2, min=1, help="Requests analysed at once (threads)."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback host without a token."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP + " Used by /detect."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    db: Path = typer.Option(Path("respira.sqlite"), "--db",
                            help="SQLite database of the live page's sessions (as respira monitor --db)."),
) -> None:
    """Serve the web page (record or upload audio), the live night monitor at /live and the HTTP
    API (/api/v1, docs at /docs). /detect answers with the detector settings it used."""
    if not insecure and not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: anyone who can reach it could use the API. "
            "Pass --token TOKEN (or set RESPIRA_API_TOKEN), or --insecure to serve it openly anyway"
        )
    import uvicorn

    from respira.detect.config import detect_settings
    from respira.server import ServerSettings, create_app

    settings = ServerSettings(models=tuple(model), host=host, port=port, token=token, max_upload_mb=max_upload_mb,
                              workers=workers, detect=detect_settings(config, set_), db=str(db))
    application = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"respira: serving {', '.join(application.state.models)} at http://{shown}:{port} "
                      f"(page at /, live monitor at /live, API docs at /docs"
                      f"{', token required' if settings.token else ''}); Ctrl+C stops", markup=False, highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="info")


def is_loopback(host: str) -> bool:
    """Whether `host` ("127.0.0.1", "::1", "localhost") only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
