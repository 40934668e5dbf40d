"""The small JSON files a run's Label Studio keeps (``server.json``, ``credentials.json``, ``projects.json``),
read by the server side and the client side alike.

Reads: one such file. Writes: nothing. Failure: none raised; a file that is missing, unreadable, not JSON or not
a JSON object reads as ``{}`` (a server that never started, or one killed while writing it, leaves just that).
"""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
