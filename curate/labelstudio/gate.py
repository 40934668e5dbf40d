"""The annotators' gate: a reverse proxy in front of a run's Label Studio that gives annotators a role.

Label Studio Community Edition has no annotator role: everyone who signs up through the invite link is a full
member of the organization and may open the data manager (where other annotators' answers are), project
settings, storages (attach any folder below the local-files root), exports, members and API tokens. So
``curate labelstudio serve`` binds Label Studio to a private loopback port and puts this gate on the address
people open. Each request is classified by who sends it, from Label Studio's own session cookie or API token
(its ``whoami``, asked once per credential and remembered for :data:`IDENTITY_TTL_S`):

- **the admin** (curate itself, and the curator in a browser): everything passes, unchanged;
- **nobody signed in**: sign-up (the invite link), log-in, log-out and the static assets; other pages redirect to
  the log-in page, other API calls get 401;
- **anyone else is an annotator**: the labeling stream of the run's projects and the calls it makes (the project's
  labeling config, the next task, the task on screen, their own answers and drafts, the images), and nothing
  else. Other pages redirect to the stream; other API calls get 403. Task JSON is filtered on the way back:
  other people's annotations and drafts, the model's predictions and who else answered are removed, so votes
  stay independent. An answer or draft can be changed or deleted only by its author.

With an annotator list (``serve --annotator EMAIL``), only those emails may sign up or annotate. The allow-list
and the filters are :mod:`curate.labelstudio.access`; this module is the HTTP side (identities, forwarding,
rewriting answers, the annotator's stylesheet).

Reads: the run's project ids from ``projects.json`` (through :class:`~curate.layout.RunLayout`; re-read when the
file changes). Writes nothing. An upstream that does not answer is a 502 for that request only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from curate.labelstudio.access import NO_TASKS, PASS, PUBLIC, Decision, Rules, User, author_of

log = logging.getLogger(__name__)

IDENTITY_TTL_S = 30.0
UPSTREAM_TIMEOUT_S = 120.0
MAX_BODY_BYTES = 64 << 20  # an annotation or a sign-up form is kilobytes; an admin's import can be large
CHUNK = 64 << 10
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length"}

# Paths anyone may open: the assets of the pages, sign-up through the invite link, log-in and log-out.


class Upstream:
    """Label Studio on its private address; ``admin_get`` reads a resource as the admin (for ownership checks)."""

    def __init__(self, host: str, port: int, admin_token: str):
        self.host, self.port, self.admin_token = host, port, admin_token
        self.url = f"http://{host}:{port}"

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT_S)

    def get_json(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        conn = self.connection()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read(1 << 20)
            try:
                return response.status, json.loads(body or b"null")
            except ValueError:
                return response.status, None
        finally:
            conn.close()

    def admin_get(self, path: str) -> Any:
        status, data = self.get_json(path, {"Authorization": f"Token {self.admin_token}"})
        return data if status == 200 else None


class Identities:
    """Who sends a request, from its session cookie or API token, remembered for a short while."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self._cache: dict[tuple[str, str], tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def of(self, cookie: str, authorization: str) -> User | None:
        session = _session_cookie(cookie)
        if not session and not authorization:
            return None
        key = (session, authorization)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and now - hit[0] < IDENTITY_TTL_S:
            return hit[1]
        headers = {"Authorization": authorization} if authorization else {"Cookie": f"sessionid={session}"}
        status, data = self.upstream.get_json("/api/current-user/whoami", headers)
        user = User(int(data["id"]), str(data.get("email") or "")) if status == 200 and isinstance(data, dict) \
            and isinstance(data.get("id"), int) else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, user)
        return user


def _session_cookie(cookie: str) -> str:
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "sessionid":
            return value
    return ""


class Gate:
    """The gate's HTTP server (a thread): ``Gate(...).start()``, ``.url``, ``.stop()``."""

    def __init__(self, host: str, port: int, upstream: Upstream, projects: Callable[[], set[int]],
                 annotators: Iterable[str] = ()):
        self.upstream = upstream
        self.admin_id = -1  # set from the admin token's whoami before start()
        self.identities = Identities(upstream)
        self.annotators = {a.strip().lower() for a in annotators if a.strip()}
        self._task_project: dict[int, int | None] = {}
        self.rules = Rules(projects, self._owner_of, self._project_of_task)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="labelstudio-gate", daemon=True)

    def start(self) -> Gate:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end the open (kept-alive) connections, so no client talks to a stopped server."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            open_now = list(self._connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _project_of_task(self, task_id: int) -> int | None:
        if task_id not in self._task_project:
            data = self.upstream.admin_get(f"/api/tasks/{task_id}/?fields=project")
            project = data.get("project") if isinstance(data, dict) else None
            if project is None:
                return None  # not remembered: the task may be created later
            self._task_project[task_id] = int(project)
        return self._task_project[task_id]

    def _owner_of(self, kind: str, item_id: int) -> int | None:
        """Who made an annotation, a draft or a data manager view (``dm/view``), as Label Studio says to the admin."""
        return author_of(self.upstream.admin_get(f"/api/{kind}s/{item_id}/"))

    def listed(self, user: User) -> bool:
        """Whether this annotator may work here (every signed-up user, unless ``--annotator`` named who may)."""
        return not self.annotators or user.email.lower() in self.annotators


def _handler(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "curate-gate"

        def setup(self) -> None:
            super().setup()
            with gate._lock:
                gate._connections.add(self.connection)

        def finish(self) -> None:
            with gate._lock:
                gate._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("gate: %s %s", self.address_string(), fmt % args)

        def do_GET(self) -> None:
            self._handle()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

        def _handle(self) -> None:
            try:
                self._answer()
            except (BrokenPipeError, ConnectionResetError):  # the browser went away (a page left mid-load)
                self.close_connection = True
                log.debug("gate: %s %s: the client closed the connection", self.command, self.path)

        def _answer(self) -> None:
            try:
                body = self._body()
            except ValueError as exc:
                self._reply(400, {"detail": str(exc)})
                return
            split = urlsplit(self.path)
            path, query = split.path, parse_qs(split.query)
            user = gate.identities.of(self.headers.get("Cookie", ""), self.headers.get("Authorization", ""))
            decision = self._decide(user, path, query, body)
            if path == NO_TASKS and decision.action == "redirect" and decision.location == NO_TASKS:
                self._reply(200, NO_TASKS_PAGE, "text/html; charset=utf-8")
            elif decision.action == "redirect":
                self._redirect(decision.location)
            elif path == STYLESHEET:
                self._reply(200, ANNOTATOR_CSS, "text/css; charset=utf-8")
            elif decision.action == "answer":
                self._reply(decision.status, decision.body)
            elif decision.action == "refuse":
                log.info("gate: refused %s %s for %s: %s", self.command, path, user.email if user else "anonymous",
                         decision.reason)
                self._reply(decision.status, {"detail": f"curate: {decision.reason}"})
            else:
                self._forward(body, user, decision)

        def _decide(self, user: User | None, path: str, query: dict[str, list[str]], body: bytes) -> Decision:
            if user is not None and user.id == gate.admin_id:
                return PASS
            if path.rstrip("/") == "/user/signup" and self.command == "POST" and gate.annotators:
                email = (parse_qs(body.decode("utf-8", "replace")).get("email") or [""])[0].strip().lower()
                if email not in gate.annotators:
                    return Decision("refuse", 403, reason="this email is not on the run's list of annotators")
            if user is None:
                if PUBLIC.match(path):
                    return PASS
                if self.command == "GET" and not path.startswith("/api/") and not path.startswith("/data/"):
                    return Decision("redirect", 302, f"/user/login/?next={self.path}")
                return Decision("refuse", 401, reason="sign in first")
            if not gate.listed(user) and not PUBLIC.match(path):
                return Decision("refuse", 403, reason=f"{user.email} is not on the run's list of annotators")
            return gate.rules.decide(user, self.command, path, query, body)

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise ValueError("chunked request bodies are not accepted")
            if not length:
                return b""
            size = int(length) if length.isdigit() else -1
            if size < 0 or size > MAX_BODY_BYTES:
                raise ValueError("request body too large or of unknown length")
            return self.rfile.read(size)

        def _reply(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _forward(self, body: bytes, user: User | None, decision: Decision) -> None:
            rewrite = decision.filter
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if rewrite is not None or decision.page:
                headers["Accept-Encoding"] = "identity"  # the answer is read and rewritten
            headers["X-Forwarded-For"] = self.client_address[0]
            if body:
                headers["Content-Length"] = str(len(body))
            conn = gate.upstream.connection()
            try:
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    upstream = conn.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    self._reply(502, {"detail": f"curate: Label Studio did not answer ({type(exc).__name__})"})
                    return
                kind = upstream.getheader("Content-Type") or ""
                if rewrite is not None and user is not None and "json" in kind:
                    self._send_filtered(upstream, rewrite, user)
                elif decision.page and "html" in kind and upstream.status == 200:
                    self._send_page(upstream)
                else:
                    self._stream(upstream)
            finally:
                conn.close()

        def _send_headers(self, upstream: http.client.HTTPResponse, length: int | None) -> None:
            self.send_response(upstream.status, upstream.reason)
            for key, value in upstream.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            if length is not None:
                self.send_header("Content-Length", str(length))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _send_filtered(self, upstream: http.client.HTTPResponse, rewrite: Callable[[Any, int], Any],
                           user: User) -> None:
            raw = upstream.read()
            try:
                data = json.dumps(rewrite(json.loads(raw), user.id)).encode()
            except ValueError:
                data = raw
            self._send_headers(upstream, len(data))
            if self.command != "HEAD":
                self.wfile.write(data)

        def _send_page(self, upstream: http.client.HTTPResponse) -> None:
            raw = upstream.read()
            data = raw.replace(b"</head>", b'<link rel="stylesheet" href="%s"></head>' % STYLESHEET.encode(), 1)
            self._send_headers(upstream, len(data))
            if self.command != "HEAD":
                self.wfile.write(data)

        def _stream(self, upstream: http.client.HTTPResponse) -> None:
            length = upstream.getheader("Content-Length")
            no_body = self.command == "HEAD" or upstream.status in (204, 304) or 100 <= upstream.status < 200
            if no_body:
                self._send_headers(upstream, int(length) if length and length.isdigit() else 0)
                return
            self._send_headers(upstream, int(length) if length and length.isdigit() else None)
            chunked = not (length and length.isdigit())
            while True:
                chunk = upstream.read(CHUNK)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

    return Handler


STYLESHEET = "/curate-gate/annotator.css"  # served by the gate itself: allowed by the pages' own CSP ('self')
# A yes/no question needs the image, the question, the class's panel and the answers: the side panels for regions,
# relations, info and history, and the menu, breadcrumbs and settings button (pages annotators do not have) go.
ANNOTATOR_CSS = b"""
.lsf-sidepanels__wrapper_align_right, .lsf-tabs-panel_alignment_right, .lsf-sidepanels__wrapper_align_left,
.lsf-tabs-panel_alignment_left, .main-menu-trigger, .lsf-breadcrumbs, .lsf-menu-header__trigger,
a[href$="/settings"], a[href*="/settings/"] { display: none !important; }
"""

NO_TASKS_PAGE = (b"<!doctype html><meta charset='utf-8'><title>No tasks yet</title><body style='font:16px "
                 b"sans-serif;margin:4em'><h1>No tasks yet</h1><p>The curator has not published this run's "
                 b"questions yet. Come back later; this link will then open them.</p>"
                 b"<p><a href='/logout'>Sign out</a></p></body>")
