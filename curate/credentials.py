"""Where a pipeline file may send secrets: the environment variables it may name, the URLs a credential may
travel to, and a warning when one goes to a host the file chose.

A pipeline file is often shared, and curate reads secrets (tokens, API keys) only from the environment; so a
file must not choose *which* secret leaves the machine, nor send one where it can be read on the way:

- a variable a file names (``annotate.backend.token_env``) starts with ``CURATE_`` or ``LABEL_STUDIO_`` and
  ends in ``_API_KEY`` or ``_TOKEN`` (``LABEL_STUDIO_API_KEY``, ``CURATE_LS_TOKEN``), never
  ``AWS_SECRET_ACCESS_KEY`` or a password;
- a credential travels over https, or over plain http only to a loopback host (``localhost``, 127.0.0.0/8,
  ``[::1]``, written as such: no name is looked up);
- a credential sent to a host other than its service's own (``api.flickr.com``), or to a server whose URL the
  file gives, and not loopback, is logged once per variable and host as a warning naming the host.

Reads: nothing (callers read the environment). Writes: log warnings. Failure: none raised here; the
``*_problem`` functions return why a value is refused (None when allowed), and the config models turn that
into a ConfigError (exit 2) naming the YAML key.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Collection
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
ENV_NAME_RULE = "a pipeline file may name only variables that start with CURATE_ or LABEL_STUDIO_ and end in " \
                "_API_KEY or _TOKEN"
_ENV_NAME = re.compile(r"(CURATE|LABEL_STUDIO)_([A-Z0-9_]*_)?(API_KEY|TOKEN)")
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def env_name_problem(name: str) -> str | None:
    """Why a pipeline file may not name the environment variable ``name``, or None."""
    return None if _ENV_NAME.fullmatch(name) else f"{name!r} is refused: {ENV_NAME_RULE}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1), as written; no name is looked up."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """The host of ``url`` in lower case; "" when it has none or does not parse."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def transport_problem(secret: str, url: str) -> str | None:
    """Why ``secret`` (a description such as ``$FLICKR_API_KEY``) may not be sent to ``url``, or None: it goes
    over https, or over plain http to a loopback host."""
    host = host_of(url)
    scheme = urlsplit(url).scheme.lower() if host else ""
    if scheme not in ("http", "https"):
        return f"{url!r} is not an http(s) URL with a host, and {secret} would be sent there"
    if scheme == "http" and not is_loopback(host):
        return (f"{secret} would travel unencrypted to {host}: use https (plain http only to a loopback host "
                "such as 127.0.0.1)")
    return None


def note_destination(secret: str, url: str, own_hosts: Collection[str] = ()) -> None:
    """Log once per ``secret`` and host when ``secret`` goes to a host that is neither one of the service's
    ``own_hosts`` nor loopback."""
    host = host_of(url)
    if host in own_hosts or is_loopback(host):
        return
    with _warned_lock:
        if (secret, host) in _warned:
            return
        _warned.add((secret, host))
    own = f" instead of {' or '.join(own_hosts)}" if own_hosts else ""
    log.warning("%s is sent to %s%s, a host the pipeline file names: keep it so only if you trust that host",
                secret, host, own)
