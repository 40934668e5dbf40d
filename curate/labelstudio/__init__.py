"""Label Studio as curate's crowd: a local server per run (:mod:`.server`) and the HTTP client side (:mod:`.client`).

Label Studio runs in its own virtual environment (``make labelstudio`` -> ``.venv-labelstudio``, its pins clash
with ours); curate talks to it only over HTTP with ``label-studio-sdk``. The crowd backend that pushes tasks
and pulls votes is :mod:`curate.crowd.labelstudio`. Importing this package is light (no SDK, no httpx).
"""

from curate.errors import CurateError

URL_ENV = "LABEL_STUDIO_URL"  # an existing server's URL (curate doctor reads it too)
TOKEN_ENV = "LABEL_STUDIO_API_KEY"  # its API token (the SDK's own default variable)
USERNAME_ENV = "LABEL_STUDIO_USERNAME"  # the admin of a local server (Label Studio reads these three itself)
PASSWORD_ENV = "LABEL_STUDIO_PASSWORD"
USER_TOKEN_ENV = "LABEL_STUDIO_USER_TOKEN"
EXECUTABLE_ENV = "CURATE_LABEL_STUDIO"  # the label-studio executable, when not in .venv-labelstudio


class LabelStudioError(CurateError):
    """Label Studio could not be started, reached or used; the message says what to do."""

    exit_code = 1


class PortBusy(LabelStudioError):
    """The requested port is taken: a flag to change, so exit 2 like other bad input."""

    exit_code = 2


class AlreadyServing(LabelStudioError):
    """The run's Label Studio is already running (one server per run): exit 2, naming where it is."""

    exit_code = 2
