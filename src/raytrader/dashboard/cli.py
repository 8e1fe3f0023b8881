"""``raytrader dashboard up|down|status``: the experiment dashboard as a local Streamlit process.

State lives in ``~/.local/share/raytrader/dashboard/`` (``RAYTRADER_DASHBOARD_STATE_DIR``
overrides it): ``dashboard.pid``, ``dashboard.json`` (its URL and the API's) and
``dashboard.log``.

``up`` starts ``python -m streamlit run app.py`` headless on 127.0.0.1 in a session of its own,
with the API's URL (``RAYTRADER_EXPERIMENT_API_URL``) and the *paths* of its tokens in the
environment: the read token ``RAYTRADER_EXPERIMENT_API_TOKEN_FILE`` (default: the ``token`` that
``raytrader api up`` wrote in its state dir, ``RAYTRADER_API_STATE_DIR`` or
``~/.local/share/raytrader/api/``) and, only when given, the admin token
``RAYTRADER_EXPERIMENT_ADMIN_TOKEN_FILE`` (else admin actions ask for the token on the page).
It then waits for ``/_stcore/health`` to answer ``ok``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from raytrader import settings
from raytrader.errors import ConfigError
from raytrader.localproc import LocalServer, answers, status_line
from raytrader.settings import EXPERIMENT_ADMIN_TOKEN_ENV as ADMIN_TOKEN_ENV
from raytrader.settings import EXPERIMENT_TOKEN_ENV as READ_TOKEN_ENV

STATE_DIR_ENV = "RAYTRADER_DASHBOARD_STATE_DIR"
API_STATE_DIR_ENV = "RAYTRADER_API_STATE_DIR"
API_TOKEN_FILE = "token"  # noqa: S105 - a file name
NAME = "dashboard"  # dashboard.pid, dashboard.json, dashboard.log
HOST = "127.0.0.1"
DEFAULT_PORT = 8501
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
APP = Path(__file__).with_name("app.py")

dashboard_app = typer.Typer(
    help="The experiment dashboard (Streamlit over the experiment API).", no_args_is_help=True
)


def _console() -> Any:
    from rich.console import Console

    return Console()


def _dir(env: str, *default: str) -> Path:
    value = os.environ.get(env)
    if value:
        return Path(os.path.abspath(Path(value).expanduser()))
    return Path.home().joinpath(".local", "share", "raytrader", *default)


def state_dir() -> Path:
    """``RAYTRADER_DASHBOARD_STATE_DIR``, else ``~/.local/share/raytrader/dashboard``."""
    return _dir(STATE_DIR_ENV, "dashboard")


def api_state_dir() -> Path:
    """The experiment API's state dir (``raytrader api up``'s tokens)."""
    return _dir(API_STATE_DIR_ENV, "api")


def server() -> LocalServer:
    """The dashboard's process in :func:`state_dir` (``dashboard.pid|json|log``)."""
    return LocalServer(state_dir(), NAME, label="the dashboard", stop_grace_s=STOP_GRACE_S)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether Streamlit at ``url`` answers ``/_stcore/health`` with ``ok``."""
    return answers(f"{url}/_stcore/health", b"ok", timeout)


def token_env(admin_token_file: str | None = None) -> dict[str, str]:
    """The token variables the dashboard gets: its read token file (the environment's, else the
    API state dir's ``token``) and the admin token file when one is given. A
    :class:`ConfigError` when there is no read token at all (outside local-dev mode)."""
    env: dict[str, str] = {}
    read_file = os.environ.get(f"{READ_TOKEN_ENV}_FILE")
    if not read_file and not os.environ.get(READ_TOKEN_ENV):
        default = api_state_dir() / API_TOKEN_FILE
        if default.exists():
            read_file = str(default)
        elif not settings.local_dev():
            raise ConfigError(
                f"no token for the experiment API: {default} does not exist (run `raytrader api "
                f"up` first) and neither {READ_TOKEN_ENV} nor {READ_TOKEN_ENV}_FILE is set"
            )
    if read_file:
        env[f"{READ_TOKEN_ENV}_FILE"] = str(Path(read_file).expanduser().resolve())
    admin_file = admin_token_file or os.environ.get(f"{ADMIN_TOKEN_ENV}_FILE")
    if admin_file:
        path = Path(admin_file).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"the admin token file {path} does not exist")
        env[f"{ADMIN_TOKEN_ENV}_FILE"] = str(path)
    return env


def dashboard_up(
    port: int = DEFAULT_PORT,
    api_url: str | None = None,
    *,
    admin_token_file: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> dict[str, Any]:
    """Start the dashboard (unless running) and wait for ``/_stcore/health``."""
    srv = server()
    pid = srv.pid()
    if pid is not None:
        return {**srv.info(), "pid": pid, "already_running": True}
    url = f"http://{HOST}:{port}"
    api = settings.api_url(api_url)
    env = dict(os.environ)
    env.update(token_env(admin_token_file))
    env[settings.API_URL_ENV] = api
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.port", str(port), "--server.address", HOST,
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    info = srv.start(
        cmd, env, f"{url}/_stcore/health", timeout_s,
        info={"url": url, "api_url": api}, health_body=b"ok",
    )  # fmt: skip
    return {**info, "already_running": False}


def dashboard_down() -> bool:
    """Stop the dashboard; ``False`` when it was not running."""
    return server().stop()


def dashboard_status() -> dict[str, Any]:
    return server().status(healthy, ("api_url",))


# ------------------------------------------------------------------------------------- commands
@dashboard_app.command("up")
def up_cmd(
    port: Annotated[int, typer.Option(help="port to listen on (127.0.0.1)")] = DEFAULT_PORT,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url", help="the experiment API (default: RAYTRADER_EXPERIMENT_API_URL)"
        ),
    ] = None,
    admin_token_file: Annotated[
        str | None,
        typer.Option(
            "--admin-token-file",
            help="enable admin actions with this token file (default: "
            f"{ADMIN_TOKEN_ENV}_FILE; else the page asks for the token)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start the dashboard (idempotent)."""
    info = dashboard_up(port, api_url, admin_token_file=admin_token_file)
    if as_json:
        typer.echo(json.dumps(info))
        return
    con = _console()
    if info["already_running"]:
        con.print(f"dashboard already running at {info.get('url')} (pid {info['pid']})")
        return
    con.print(f"dashboard: {info['url']}  (API {info['api_url']}, pid {info['pid']})")


@dashboard_app.command("down")
def down_cmd() -> None:
    """Stop the dashboard started by `up` (no-op when it is not running)."""
    stopped = dashboard_down()
    typer.echo("dashboard stopped" if stopped else "dashboard is not running")


@dashboard_app.command("status")
def status_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether the dashboard runs and where (exit 1 when not running and healthy)."""
    info = dashboard_status()
    if as_json:
        typer.echo(json.dumps(info))
    else:
        _console().print(
            status_line(info, "dashboard", "/_stcore/health", f"API {info['api_url']}")
        )
    if not (info["running"] and info["healthy"]):
        raise typer.Exit(1)
