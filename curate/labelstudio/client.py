"""The HTTP side: which server a run uses, an SDK client for it, and errors turned into messages.

A run's server is, in order: the backend's ``url`` setting, ``$LABEL_STUDIO_URL`` (an existing server), or
the local server ``curate labelstudio serve`` started for the run (its ``server.json``). The token is
``$LABEL_STUDIO_API_KEY`` (or the variable the backend names: :mod:`curate.credentials` says which a pipeline
file may name), else, for the run's local server, the one in its ``credentials.json``. Tokens are never read
from YAML. A token from the environment sent to a ``url`` the pipeline file gives (not loopback) is logged
once as a warning naming the host. Every client is built with an explicit ``base_url``; the SDK sends a
legacy key as ``Authorization: Token <key>``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from curate.credentials import env_name_problem, note_destination
from curate.labelstudio import TOKEN_ENV, URL_ENV, LabelStudioError
from curate.labelstudio.files import read_json
from curate.layout import RunLayout


@dataclass(frozen=True)
class ServerRef:
    url: str
    token: str
    local: bool  # the server `curate labelstudio serve` started for this run
    token_source: str


def resolve_server(layout: RunLayout, url: str | None = None, token_env: str = TOKEN_ENV) -> ServerRef:
    """The server and token a run uses; ``url`` and ``token_env`` are the pipeline file's settings."""
    refused = env_name_problem(token_env)
    if refused:
        raise LabelStudioError(f"token_env: {refused}")
    chosen_by_file = bool(url)
    local = read_json(layout.labelstudio_server).get("url")
    url = (url or os.environ.get(URL_ENV) or local or "").rstrip("/")
    if not url:
        raise LabelStudioError(
            f"no Label Studio server for {layout.root}: start one with `curate labelstudio serve {layout.root}` "
            f"(in another terminal), or use an existing one by setting {URL_ENV} and {token_env}")
    is_local = bool(local) and url == local.rstrip("/")
    token = os.environ.get(token_env)
    source, from_env = f"${token_env}", bool(token)
    if not token and is_local:
        token = read_json(layout.labelstudio_credentials).get("token")
        source = str(layout.labelstudio_credentials)
    if not token:
        raise LabelStudioError(f"no API token for Label Studio at {url}: set {token_env} (Label Studio: Account & "
                               f"Settings > Legacy Token)")
    if chosen_by_file and from_env and not is_local:
        note_destination(source, url)
    return ServerRef(url, token, is_local, source)


@contextlib.contextmanager
def connect(url: str, token: str, timeout: float = 30.0, max_retries: int = 1) -> Iterator[Any]:
    """A ``label_studio_sdk.LabelStudio`` client for ``url``; its connections close on exit."""
    import httpx
    from label_studio_sdk.client import LabelStudio

    http = httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        yield LabelStudio(base_url=url, api_key=token, httpx_client=http, timeout=timeout, max_retries=max_retries)
    finally:
        http.close()


def describe_api_error(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or ""
        problems = body.get("validation_errors")
        if problems:
            detail = f"{detail}: {problems}" if detail else str(problems)
        return str(detail or body)[:500]
    return str(body)[:500] if body else type(exc).__name__


@contextlib.contextmanager
def api_errors(url: str, doing: str, *, layout: RunLayout | None = None, token_source: str = "",
               error: Callable[[str], Exception] = LabelStudioError) -> Iterator[None]:
    """Turn the SDK's and httpx's exceptions into ``error(message)``: unreachable server, rejected token,
    other HTTP errors, each naming the server and what curate was doing."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except httpx.TransportError as exc:
        hint = (f"; start it again with `curate labelstudio serve {layout.root}`" if layout is not None
                else "")
        raise error(f"Label Studio at {url} is unreachable while {doing} ({type(exc).__name__}: {exc}){hint}") from None
    except ApiError as exc:
        status = exc.status_code
        if status in (401, 403):
            where = f" from {token_source}" if token_source else ""
            raise error(f"Label Studio at {url} rejected the API token{where} while {doing} (HTTP {status}: "
                        f"{describe_api_error(exc)})") from None
        raise error(f"Label Studio at {url} answered HTTP {status} while {doing}: {describe_api_error(exc)}") from None


def invite_link(ls: Any, url: str) -> str:
    """The organization's sign-up link: whoever opens it joins and can annotate."""
    invite = ls.organizations.invites.get_invite_link()
    return f"{url}{invite.invite_url}"
