"""A local Label Studio server for one run: start it, wait until it answers, stop it cleanly.

Reads: the ``label-studio`` executable (``$CURATE_LABEL_STUDIO``, else ``.venv-labelstudio`` beside the
curate checkout or in the current folder; ``make labelstudio`` installs it), the admin's credentials from
``LABEL_STUDIO_USERNAME`` / ``LABEL_STUDIO_PASSWORD`` / ``LABEL_STUDIO_USER_TOKEN`` (generated when unset
and kept for the next start). Writes, through :class:`~curate.layout.RunLayout`: the server's data folder
(SQLite database, media, secret key), its log, ``credentials.json`` (mode 0600: admin, password, API token)
and ``server.json`` (URL and pid, removed on a clean stop), so ``curate run`` finds the server and its token.

The server binds to 127.0.0.1 unless another host is asked for, starts offline (error reporting, version
checks, analytics and converter downloads off), serves the run's image store as local files (document root:
the run directory, or ``document_root``), and accepts the legacy ``Token`` API key the SDK sends. A busy port
is refused (Label Studio itself would silently move to the next free one). Starting is slow the first time
(database migrations, about 30 s); a restart on the same data takes a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from curate.labelstudio import (
    EXECUTABLE_ENV,
    PASSWORD_ENV,
    USER_TOKEN_ENV,
    USERNAME_ENV,
    LabelStudioError,
    PortBusy,
)
from curate.layout import RunLayout

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_USERNAME = "admin@localhost"
VENV_NAME = ".venv-labelstudio"
START_TIMEOUT = 240.0  # seconds; the first start migrates a new database

# Everything that phones home is off, so the server starts (and stays) offline.
OFFLINE_ENV = {
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "CONVERTER_DOWNLOAD_RESOURCES": "false",
}
# Settings Label Studio would otherwise take from the caller's environment (it reads LABEL_STUDIO_X, then
# HEARTEX_X, then X, so a stray USERNAME or HOST would win): every spelling is dropped before ours are set.
_OURS = ("USERNAME", "PASSWORD", "USER_TOKEN", "HOST", "PORT", "BASE_DATA_DIR", "DATABASE_NAME", "DJANGO_DB",
         "ENABLE_LEGACY_API_TOKEN", "DISABLE_SIGNUP_WITHOUT_LINK", "LOCAL_FILES_SERVING_ENABLED",
         "LOCAL_FILES_DOCUMENT_ROOT", *OFFLINE_ENV)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


def find_executable() -> Path:
    """The ``label-studio`` executable: ``$CURATE_LABEL_STUDIO``, else ``.venv-labelstudio/bin/label-studio``
    beside the curate checkout or in the current folder."""
    explicit = os.environ.get(EXECUTABLE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise LabelStudioError(f"${EXECUTABLE_ENV} is {explicit}, which is not a file")
        return path
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidate = base / VENV_NAME / "bin" / "label-studio"
        if candidate.is_file():
            return candidate
    raise LabelStudioError(
        f"Label Studio is not installed: run `make labelstudio` in the curate checkout (it creates {VENV_NAME}), "
        f"or set ${EXECUTABLE_ENV} to a label-studio executable"
    )


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on (host, port) or the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        target = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
        if probe.connect_ex((target, port)) == 0:
            return True
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def public_url(host: str, port: int) -> str:
    """The URL people open: the bound host, or this machine's name when bound to every interface."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (mode 0600 from its creation on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def credentials(layout: RunLayout) -> Credentials:
    """The local server's admin: from the environment, else as stored for this run, else generated (and stored).
    Label Studio creates the admin with this token on its first start and keeps them afterwards."""
    stored = read_json(layout.labelstudio_credentials)
    creds = Credentials(
        username=os.environ.get(USERNAME_ENV) or stored.get("username") or DEFAULT_USERNAME,
        password=os.environ.get(PASSWORD_ENV) or stored.get("password") or secrets.token_urlsafe(16),
        token=os.environ.get(USER_TOKEN_ENV) or stored.get("token") or secrets.token_hex(20),
    )
    if len(creds.token) < 6:
        raise LabelStudioError(f"${USER_TOKEN_ENV} is too short: Label Studio ignores API tokens under 6 characters")
    if creds.__dict__ != stored:
        _write_private(layout.labelstudio_credentials, json.dumps(creds.__dict__, indent=2) + "\n")
    return creds


def server_env(layout: RunLayout, creds: Credentials, document_root: Path) -> dict[str, str]:
    spellings = {f"{prefix}{name}" for name in _OURS for prefix in ("", "LABEL_STUDIO_", "HEARTEX_")}
    env = {k: v for k, v in os.environ.items() if k not in spellings}
    env.update(OFFLINE_ENV)
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(layout.labelstudio_data.resolve()),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_USERNAME": creds.username,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # the SDK sends "Token <key>" for a non-JWT key
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",  # annotators join through the invite link
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root.resolve()),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class LocalServer:
    """A running ``label-studio start`` process for one run."""

    def __init__(self, layout: RunLayout, url: str, process: subprocess.Popen, creds: Credentials):
        self.layout = layout
        self.url = url
        self.process = process
        self.credentials = creds

    @property
    def token(self) -> str:
        return self.credentials.token

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and forget it; returns its exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if read_json(self.layout.labelstudio_server).get("pid") == self.process.pid:
            with contextlib.suppress(FileNotFoundError):
                self.layout.labelstudio_server.unlink()
        return self.process.returncode

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(f"  | {line}" for line in text[-lines:])


def start_server(run_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 document_root: Path | None = None, timeout: float = START_TIMEOUT,
                 executable: Path | None = None) -> LocalServer:
    """Start Label Studio for ``run_dir`` on ``host:port`` and return once it answers with the admin's token."""
    if port_in_use(host, port):
        raise PortBusy(f"port {port} on {host} is already in use (another Label Studio or another program): "
                       f"stop it, or choose another port with --port")
    exe = executable or find_executable()
    layout = RunLayout(Path(run_dir)).ensure()
    layout.labelstudio.mkdir(mode=0o700, exist_ok=True)  # the server's secret key and database live below
    layout.labelstudio_data.mkdir(mode=0o700, exist_ok=True)
    layout.images.mkdir(parents=True, exist_ok=True)  # the local-files storage points here
    root = Path(document_root) if document_root else layout.root
    creds = credentials(layout)
    url = public_url(host, port)
    command = [str(exe), "start", "--no-browser", "--internal-host", host, "--port", str(port), "--host", url,
               "--data-dir", str(layout.labelstudio_data.resolve()),
               "--database", str(layout.labelstudio_database.resolve()), "--enable-legacy-api-token"]
    with layout.labelstudio_log.open("ab") as out:
        out.write(f"\n=== curate: starting Label Studio at {url} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        process = subprocess.Popen(command, env=server_env(layout, creds, root), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=layout.labelstudio,
                                   start_new_session=True)  # Ctrl-C reaches curate, which stops it in order
    server = LocalServer(layout, url, process, creds)
    try:
        wait_until_up(server, timeout)
        check_token(url, creds.token, layout)
    except BaseException:
        server.stop()
        raise
    layout.labelstudio_server.write_text(json.dumps({"url": url, "pid": process.pid}) + "\n", encoding="utf-8")
    log.info("Label Studio for %s is up at %s (log: %s)", layout.root, url, layout.labelstudio_log)
    return server


def wait_until_up(server: LocalServer, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise LabelStudioError(
                f"Label Studio exited (code {server.process.returncode}) while starting; the end of its log "
                f"{server.layout.labelstudio_log}:\n{log_tail(server.layout.labelstudio_log)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            logfile = server.layout.labelstudio_log
            raise LabelStudioError(f"Label Studio did not answer at {server.url} within {timeout:.0f} s; the end of "
                                   f"its log {logfile}:\n{log_tail(logfile)}")
        time.sleep(0.5)


def check_token(url: str, token: str, layout: RunLayout) -> None:
    from curate.labelstudio.client import api_errors, connect

    doing = (f"checking the admin's API token (an admin created earlier in {layout.labelstudio_data} keeps the "
             f"token it was created with)")
    source = str(layout.labelstudio_credentials)
    with connect(url, token, timeout=15) as ls, api_errors(url, doing, token_source=source):
        ls.users.whoami()


def serve_forever(server: LocalServer, poll: float = 1.0) -> int:
    """Block until Ctrl-C / SIGTERM (then stop the server cleanly: returns 0) or until the server dies (1)."""
    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while server.alive():
            time.sleep(poll)
        print(f"Label Studio stopped by itself (code {server.process.returncode}); the end of its log "
              f"{server.layout.labelstudio_log}:\n{log_tail(server.layout.labelstudio_log)}")
        server.stop()
        return 1
    except KeyboardInterrupt:
        print("\nstopping Label Studio ...", flush=True)
        server.stop()
        print("stopped; everything is kept in", server.layout.labelstudio)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def running(run_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
            **kwargs: object) -> Iterator[LocalServer]:
    server = start_server(run_dir, host, port, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def serve(run_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, annotators: list[str] | None = None,
          document_root: Path | None = None, timeout: float = START_TIMEOUT) -> int:
    """``curate labelstudio serve``: start the run's server, say where annotators go, stop on Ctrl-C."""
    from curate.labelstudio.client import api_errors, connect, invite_link

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: Label Studio will listen on {host}, reachable from other machines", flush=True)
    first = not RunLayout(Path(run_dir)).labelstudio_database.exists()
    print(f"starting Label Studio for {run_dir} on {host}:{port}"
          + (" (the first start sets up its database: about a minute)" if first else "") + " ...", flush=True)
    server = start_server(Path(run_dir), host, port, document_root=document_root, timeout=timeout)
    try:
        layout = server.layout
        with connect(server.url, server.token, timeout=15) as ls, api_errors(server.url, "reading the invite link"):
            invite = invite_link(ls, server.url)
        project = read_json(layout.labelstudio_projects).get(server.url, {}).get("project")
        annotate = (f"{server.url}/projects/{project}/data?labeling=1" if project
                    else f"{server.url}/projects (the run's project appears after `curate run` pushes its tasks)")
        lines = [
            f"Label Studio is up at {server.url}",
            f"  admin:            {server.credentials.username} (password and API token in "
            f"{layout.labelstudio_credentials})",
            f"  annotators open:  {annotate}",
            f"  invite link:      {invite}",
        ]
        lines += [f"    for {who}: {invite}" for who in annotators or []]
        lines += [
            "  each annotator signs up once through the invite link, with their own email",
            f"  `curate run` on this run uses this server and token by itself ({layout.labelstudio_server})",
            f"  log: {layout.labelstudio_log}",
            "Press Ctrl-C to stop it.",
        ]
        print("\n".join(lines), flush=True)
    except BaseException:
        server.stop()
        raise
    return serve_forever(server)
