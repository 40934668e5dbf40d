"""A local Label Studio server for one run: start it behind the annotators' gate, wait until it answers, stop it.

Reads: the ``label-studio`` executable (``$CURATE_LABEL_STUDIO``, else ``.venv-labelstudio`` beside the
curate checkout or in the current folder; ``make labelstudio`` installs it), the admin's credentials from
``LABEL_STUDIO_USERNAME`` / ``LABEL_STUDIO_PASSWORD`` / ``LABEL_STUDIO_USER_TOKEN`` (generated when unset
and kept for the next start). Writes, through :class:`~curate.layout.RunLayout`: the server's data folder
(SQLite database, media, secret key), its log, ``credentials.json`` (mode 0600: admin, password, API token),
``server.json`` (URL and pid, removed on a clean stop), so ``curate run`` finds the server and its token, and
``served/images``, a link to the image store: the only tree Label Studio serves files from.

Label Studio itself listens on a private loopback port; people (and ``curate run``) reach it through
:mod:`curate.labelstudio.gate` on the public address, which gives annotators a role Community Edition lacks.
One server per run: the serving process holds ``labelstudio/serve.lock``, and a second ``serve`` on the same run
says where the first one is (exit 2). The server starts offline (error reporting, version checks, analytics and
converter downloads off) and accepts the legacy ``Token`` API key the SDK sends. A busy port is refused (Label
Studio itself would silently move to the next free one). Starting is slow the first time (database
migrations, about 30 s); a restart on the same data takes a few seconds.
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.labelstudio import (
    EXECUTABLE_ENV,
    PASSWORD_ENV,
    USER_TOKEN_ENV,
    USERNAME_ENV,
    AlreadyServing,
    LabelStudioError,
    PortBusy,
)
from curate.labelstudio.files import read_json
from curate.layout import RunLayout
from curate.lock import RunDirectoryBusy, RunLock

if TYPE_CHECKING:
    from curate.labelstudio.gate import Gate

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

    def __init__(self, layout: RunLayout, url: str, process: subprocess.Popen, creds: Credentials,
                 internal_url: str, lock: RunLock):
        self.layout = layout
        self.url = url  # the gate: what people and `curate run` open
        self.internal_url = internal_url  # Label Studio itself, on a private loopback port
        self.process = process
        self.credentials = creds
        self.gate: Gate | None = None
        self._lock = lock

    @property
    def token(self) -> str:
        return self.credentials.token

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the gate and the server (SIGTERM, then SIGKILL after ``timeout``) and forget it; returns its exit
        code."""
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if read_json(self.layout.labelstudio_server).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.layout.labelstudio_server.unlink()
        self._lock.release()
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


def serve_lock(layout: RunLayout) -> RunLock:
    """The run's serve lock, held for as long as its server runs; a second ``serve`` says where the first is."""
    layout.labelstudio.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return RunLock(layout.labelstudio_lock).acquire()
    except RunDirectoryBusy:
        url = read_json(layout.labelstudio_server).get("url")
        where = f"at {url}" if url else "(it is still starting)"
        raise AlreadyServing(f"Label Studio for {layout.root} is already running {where}: annotators and `curate "
                             f"run` use that one; stop it (Ctrl-C where it runs) before starting another") from None


def link_served_images(layout: RunLayout) -> Path:
    """``served/images`` -> ``../images`` (relative, so the run directory can move); returns the served folder."""
    layout.served.mkdir(parents=True, exist_ok=True)
    link = layout.served_images
    if not link.is_symlink():
        if link.exists():
            raise LabelStudioError(f"{link} should be a link to the image store, and is not: remove it")
        link.symlink_to(Path("..") / layout.images.name, target_is_directory=True)
    return layout.served


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def project_reader(layout: RunLayout, url: str) -> Callable[[], set[int]]:
    """The run's project ids on this server, re-read from ``projects.json`` when it changes."""
    from curate.labelstudio.access import run_projects

    seen: dict[str, Any] = {"mtime": None, "ids": set()}

    def projects() -> set[int]:
        try:
            mtime = layout.labelstudio_projects.stat().st_mtime_ns
        except OSError:
            return set()
        if mtime != seen["mtime"]:
            seen["ids"], seen["mtime"] = run_projects(read_json(layout.labelstudio_projects), url), mtime
        return seen["ids"]

    return projects


def start_server(run_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 document_root: Path | None = None, timeout: float = START_TIMEOUT,
                 executable: Path | None = None, annotators: Iterable[str] = ()) -> LocalServer:
    """Start Label Studio for ``run_dir`` behind the annotators' gate on ``host:port``; return once it answers
    with the admin's token."""
    layout = RunLayout(Path(run_dir)).ensure()
    lock = serve_lock(layout)
    try:
        return _start(layout, lock, host, port, document_root, timeout, executable, annotators)
    except BaseException:
        lock.release()
        raise


def _start(layout: RunLayout, lock: RunLock, host: str, port: int, document_root: Path | None, timeout: float,
           executable: Path | None, annotators: Iterable[str]) -> LocalServer:
    from curate.labelstudio.gate import Gate, Upstream

    if port_in_use(host, port):
        raise PortBusy(f"port {port} on {host} is already in use (another Label Studio or another program): "
                       f"stop it, or choose another port with --port")
    exe = executable or find_executable()
    layout.labelstudio_data.mkdir(mode=0o700, exist_ok=True)  # the server's secret key and database live below
    layout.images.mkdir(parents=True, exist_ok=True)
    root = Path(document_root) if document_root else link_served_images(layout)
    creds = credentials(layout)
    url = public_url(host, port)
    internal_port = free_loopback_port()
    upstream = Upstream("127.0.0.1", internal_port, creds.token)
    gate = Gate(host, port, upstream, project_reader(layout, url), annotators)  # binds the public port now
    command = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(internal_port),
               "--host", url, "--data-dir", str(layout.labelstudio_data.resolve()),
               "--database", str(layout.labelstudio_database.resolve()), "--enable-legacy-api-token"]
    with layout.labelstudio_log.open("ab") as out:
        out.write(f"\n=== curate: starting Label Studio at {url} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        process = subprocess.Popen(command, env=server_env(layout, creds, root), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=layout.labelstudio,
                                   start_new_session=True)  # Ctrl-C reaches curate, which stops it in order
    server = LocalServer(layout, url, process, creds, upstream.url, lock)
    server.gate = gate
    try:
        wait_until_up(server, timeout)
        gate.admin_id = check_token(server.internal_url, creds.token, layout)
        gate.start()
    except BaseException:
        server.stop()
        raise
    layout.labelstudio_server.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n", encoding="utf-8")
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
            if requests.get(f"{server.internal_url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            logfile = server.layout.labelstudio_log
            raise LabelStudioError(f"Label Studio did not answer at {server.internal_url} within {timeout:.0f} s; the "
                                   f"end of its log {logfile}:\n{log_tail(logfile)}")
        time.sleep(0.5)


def check_token(url: str, token: str, layout: RunLayout) -> int:
    """Whether Label Studio accepts the admin's token; returns the admin's user id."""
    from curate.labelstudio.client import api_errors, connect

    doing = (f"checking the admin's API token (an admin created earlier in {layout.labelstudio_data} keeps the "
             f"token it was created with)")
    source = str(layout.labelstudio_credentials)
    with connect(url, token, timeout=15) as ls, api_errors(url, doing, token_source=source):
        return int(ls.users.whoami().id)


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
    serve_lock(RunLayout(Path(run_dir))).release()  # a server already up for this run: say so before anything
    first = not RunLayout(Path(run_dir)).labelstudio_database.exists()
    print(f"starting Label Studio for {run_dir} on {host}:{port}"
          + (" (the first start sets up its database: about a minute)" if first else "") + " ...", flush=True)
    server = start_server(Path(run_dir), host, port, document_root=document_root, timeout=timeout,
                          annotators=annotators or ())
    try:
        with connect(server.url, server.token, timeout=15) as ls, api_errors(server.url, "reading the invite link"):
            invite = invite_link(ls, server.url)
        print("\n".join(serve_banner(server, invite, annotators or [])), flush=True)
    except BaseException:
        server.stop()
        raise
    return serve_forever(server)


def serve_banner(server: LocalServer, invite: str, annotators: list[str]) -> list[str]:
    """What ``serve`` prints: where the admin, the annotators and ``curate run`` go, and who may join."""
    layout = server.layout
    projects = project_reader(layout, server.url)()
    stream = (f"at {server.url}/projects/{min(projects)}/data?labeling=1" if projects
              else "once `curate run` publishes them")
    who = (f"only {', '.join(annotators)} may sign up and annotate" if annotators
           else "anyone who has the link can sign up and annotate (name people with --annotator EMAIL to allow "
                "only them)")
    return [
        f"Label Studio is up at {server.url}",
        f"  admin:        {server.credentials.username} (password and API token in {layout.labelstudio_credentials})",
        f"  invite link:  {invite}",
        f"                one link, shared by everyone you send it to: {who}",
        f"  annotators:   sign up once through the invite link with their own email; they then see the run's "
        f"questions {stream}, and nothing else: no other answers, settings, storages, exports or tokens",
        f"  `curate run` on this run uses this server and token by itself ({layout.labelstudio_server})",
        f"  log: {layout.labelstudio_log}",
        "Press Ctrl-C to stop it.",
    ]
