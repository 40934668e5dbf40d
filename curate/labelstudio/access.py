"""Who may open what behind the annotators' gate: the annotator's allow-list and what their answers are filtered to.

:class:`Rules` decides each signed-in annotator's request, (method, path, query, body) -> :class:`Decision`: pass
(perhaps with a ``filter`` that rewrites the JSON answer for the person), answer from the gate, redirect to the
labeling stream, or refuse. Resource checks (does this task belong to the run, is this annotation theirs) go through
the callables it is given, which ask Label Studio as the admin. The HTTP side is :mod:`curate.labelstudio.gate`.
Reads and writes nothing itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

NO_TASKS = "/user/no-tasks"  # the gate's own page for an annotator who arrives before any task is published

PUBLIC = re.compile(r"^/(curate-gate/|static/|react-app/|label-studio-frontend/|dm/|favicon\.ico$|sw\.js$|health/?$|"
                    r"user/login/?$|user/signup/?$|logout/?$|api/version/?$|version/?$)")


@dataclass(frozen=True)


class User:
    id: int
    email: str


@dataclass(frozen=True)
class Decision:
    """What the gate does with a request: pass it (``filter`` rewrites the JSON answer), answer it, redirect, refuse."""

    action: str  # "pass" | "redirect" | "refuse" | "answer" (``body`` from the gate itself)
    status: int = 200
    location: str = ""
    reason: str = ""
    filter: Callable[[Any, int], Any] | None = None  # rewrites the JSON answer for the person (their user id)
    body: Any = None
    page: bool = False  # an annotator's page: gets the stylesheet that leaves only the task on screen


PASS = Decision("pass")


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


class Rules:
    """The annotator's allow-list: (method, path, query) -> :class:`Decision`. Resource checks (does this task
    belong to the run, is this annotation theirs) go through ``owner_of``, which asks Label Studio as the admin."""

    def __init__(self, projects: Callable[[], set[int]], owner_of: Callable[[str, int], int | None],
                 project_of_task: Callable[[int], int | None]):
        self.projects = projects
        self.owner_of = owner_of
        self.project_of_task = project_of_task

    def stream(self) -> str:
        ids = sorted(self.projects())
        return f"/projects/{ids[0]}/data/?labeling=1" if ids else NO_TASKS

    def decide(self, user: User, method: str, path: str, query: dict[str, list[str]], body: bytes = b"") -> Decision:
        if PUBLIC.match(path) or path.startswith("/data/local-files/"):
            return PASS
        if _speaks_for_another(body, user.id):
            return Decision("refuse", 403, reason="an answer can be given only in one's own name")
        projects = self.projects()
        for pattern, handler in self._routes():
            match = pattern.match(path)
            if match:
                return handler(user, method, match, query, projects)
        return self._elsewhere(method, path)

    def _elsewhere(self, method: str, path: str) -> Decision:
        if method == "GET" and not path.startswith("/api/"):
            return Decision("redirect", 302, self.stream(), "annotators see the labeling stream only")
        return Decision("refuse", 403, reason=f"{method} {path} is not open to annotators")

    def _routes(self) -> Iterable[tuple[re.Pattern[str], Callable[..., Decision]]]:
        return (
            (re.compile(r"^/projects/(\d+)/data/?$"), self._stream_page),
            (re.compile(r"^/api/projects/(\d+)/?$"), self._project_read),
            (re.compile(r"^/api/projects/(\d+)/next/?$"), self._next_task),
            (re.compile(r"^/api/projects/(\d+)/label-stream-history/?$"), self._project_read),
            (re.compile(r"^/api/dm/(views|columns|project)/?$"), self._dm_read),
            (re.compile(r"^/api/dm/actions/?$"), self._next_task_action),
            (re.compile(r"^/api/label_links/?$"), self._project_query_read),
            (re.compile(r"^/api/dm/views/(\d+)/?$"), self._own("dm/view")),
            (re.compile(r"^/api/tasks/?$"), self._task_list),
            (re.compile(r"^/api/tasks/(\d+)/?$"), self._task_read),
            (re.compile(r"^/api/tasks/(\d+)/annotations/?$"), self._annotate),
            (re.compile(r"^/api/tasks/(\d+)/drafts/?$"), self._annotate),
            (re.compile(r"^/api/annotations/(\d+)/?$"), self._own("annotation")),
            (re.compile(r"^/api/drafts/(\d+)/?$"), self._own("draft")),
            (re.compile(r"^/api/annotations/(\d+)/convert-to-draft/?$"), self._own("annotation")),
            (re.compile(r"^/api/current-user/(whoami|hotkeys/?|product-tour)$"), self._self),
            (re.compile(r"^/api/users/?$"), self._only_self),
            (re.compile(r"^/api/ml/?$"), self._no_models),
            (re.compile(r"^/api/(users|organizations|invite|token|current-user/(token|reset-token))"),
             self._refuse),
        )

    @staticmethod
    def _refuse(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        return Decision("refuse", 403, reason="not open to annotators")

    @staticmethod
    def _only_self(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        """The stream lists the organization's people to show who answered: each person sees only themselves."""
        if method == "GET":
            return Decision("pass", filter=only_self)
        return Decision("refuse", 403, reason="not open to annotators")

    @staticmethod
    def _no_models(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        """The stream asks which ML backends the project has: none, as far as an annotator is concerned."""
        return Decision("answer", body=[]) if method == "GET" else Decision("refuse", 403, reason="not open")

    @staticmethod
    def _self(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        return PASS

    def _stream_page(self, user: User, method: str, match: re.Match[str], query: dict[str, list[str]],
                     projects: set[int]) -> Decision:
        if method == "GET" and int(match.group(1)) in projects and query.get("labeling") == ["1"]:
            return Decision("pass", page=True)
        return Decision("redirect", 302, self.stream(), "the labeling stream only")

    @staticmethod
    def _project_read(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        if method == "GET" and int(match.group(1)) in projects:
            return Decision("pass", filter=private_task)
        return Decision("refuse", 403, reason="another project, or a change to it")

    @staticmethod
    def _next_task(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
        if method in ("GET", "POST") and int(match.group(1)) in projects:
            return Decision("pass", filter=private_task)
        return Decision("refuse", 403, reason="another project")

    @staticmethod
    def _dm_read(user: User, method: str, match: re.Match[str], query: dict[str, list[str]],
                 projects: set[int]) -> Decision:
        """The stream's own data manager state: its columns, its project state, and the person's views (tabs),
        which Label Studio keeps per user; creating one is how the stream starts."""
        project = _int((query.get("project") or [""])[0])
        creates_view = method == "POST" and match.group(1) == "views"
        if (method == "GET" or creates_view) and project in projects:
            return PASS
        return Decision("refuse", 403, reason="the data manager is not open to annotators")

    @staticmethod
    def _next_task_action(user: User, method: str, match: re.Match[str], query: dict[str, list[str]],
                          projects: set[int]) -> Decision:
        """The stream's "next task" is a data manager action; every other action (delete, label all, ...) is not
        for annotators."""
        if method == "POST" and query.get("id") == ["next_task"] and \
                _int((query.get("project") or [""])[0]) in projects:
            return Decision("pass", filter=private_task)
        return Decision("refuse", 403, reason="data manager actions are not open to annotators")

    @staticmethod
    def _project_query_read(user: User, method: str, match: re.Match[str], query: dict[str, list[str]],
                            projects: set[int]) -> Decision:
        if method == "GET" and _int((query.get("project") or [""])[0]) in projects:
            return PASS
        return Decision("refuse", 403, reason="not open to annotators")

    @staticmethod
    def _task_list(user: User, method: str, match: re.Match[str], query: dict[str, list[str]],
                   projects: set[int]) -> Decision:
        """The stream lists the project's tasks; what comes back is filtered to the person's own answers."""
        if method == "GET" and _int((query.get("project") or [""])[0]) in projects:
            return Decision("pass", filter=private_task)
        return Decision("refuse", 403, reason="the task list of another project")

    def _task_read(self, user: User, method: str, match: re.Match[str], query: Any,
                   projects: set[int]) -> Decision:
        if method == "GET" and self.project_of_task(int(match.group(1))) in projects:
            return Decision("pass", filter=private_task)
        return Decision("refuse", 403, reason="a task of another project, or a change to a task")

    def _annotate(self, user: User, method: str, match: re.Match[str], query: Any,
                  projects: set[int]) -> Decision:
        if method in ("GET", "POST") and self.project_of_task(int(match.group(1))) in projects:
            return Decision("pass", filter=own_items if method == "GET" else None)
        return Decision("refuse", 403, reason="a task of another project")

    def _own(self, kind: str) -> Callable[..., Decision]:
        def check(user: User, method: str, match: re.Match[str], query: Any, projects: set[int]) -> Decision:
            if method in ("GET", "PATCH", "PUT", "DELETE", "POST") and self.owner_of(kind, int(match.group(1))) \
                    == user.id:
                return PASS
            return Decision("refuse", 403, reason=f"another person's {kind.removeprefix('dm/')}")
        return check


def private_task(task: Any, user_id: int) -> Any:
    """A task (or a list of them) as one annotator may see it: their own annotations and drafts only, no
    predictions, nothing about who else answered."""
    if isinstance(task, list):
        return [private_task(t, user_id) for t in task]
    if not isinstance(task, dict):
        return task
    if isinstance(task.get("tasks"), list):  # a listing page
        task = {**task, "tasks": private_task(task["tasks"], user_id)}
    out = dict(task)
    if isinstance(out.get("annotations"), list):
        out["annotations"] = [a for a in out["annotations"] if author_of(a) == user_id]
    if isinstance(out.get("drafts"), list):
        out["drafts"] = [d for d in out["drafts"] if author_of(d) == user_id]
    for key, empty in _HIDDEN.items():  # emptied, not removed: the labeling screen expects each field's type
        if key in out:
            out[key] = empty() if callable(empty) else empty
    return out


# What a task says about other people's answers and the model's: emptied for annotators.
_HIDDEN: dict[str, Any] = {"predictions": list, "annotators": list, "annotations_results": "",
                           "predictions_results": "", "predictions_score": None, "predictions_model_versions": list,
                           "annotations_ids": "", "updated_by": list, "comment_authors": list}


def _speaks_for_another(body: bytes, user_id: int) -> bool:
    """Whether a request body names another person as the author (Label Studio takes an annotation's
    ``completed_by`` from the body when it is there: that would be a vote in someone else's name)."""
    if not body or b"completed_by" not in body and b'"user"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return True  # names an author and cannot be read: refused rather than guessed
    items = data if isinstance(data, list) else [data]
    return any(isinstance(item, dict) and any(key in item and author_of({key: item[key]}) != user_id
                                              for key in ("completed_by", "user")) for item in items)


def own_items(items: Any, user_id: int) -> Any:
    """A task's annotations or drafts (plain or paginated) reduced to the person's own."""
    if isinstance(items, dict) and isinstance(items.get("results"), list):
        return {**items, "results": own_items(items["results"], user_id)}
    return [i for i in items if author_of(i) == user_id] if isinstance(items, list) else items


def only_self(users: Any, user_id: int) -> Any:
    """A list of people (plain or paginated) reduced to the one asking."""
    if isinstance(users, dict) and isinstance(users.get("results"), list):
        return {**users, "results": only_self(users["results"], user_id), "count": 1}
    if isinstance(users, list):
        return [u for u in users if isinstance(u, dict) and u.get("id") == user_id]
    return users


def author_of(item: Any) -> int | None:
    if not isinstance(item, dict):
        return None
    who = item["completed_by"] if "completed_by" in item else item.get("user")
    if isinstance(who, dict):
        who = who.get("id")
    return who if isinstance(who, int) else None


def run_projects(state: dict[str, Any], url: str) -> set[int]:
    """The Label Studio project ids a run keeps for a server in ``projects.json`` (every ``project`` value below the
    server's entry: the annotate project and any queue of its own)."""
    found: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "project" and isinstance(value, int | str) and str(value).isdigit():
                    found.add(int(value))
                else:
                    walk(value)

    walk(state.get(url.rstrip("/")) or state.get(url) or {})
    return found
