"""``labelstudio`` crowd: people answer in Label Studio; curate pushes the questions and pulls the answers.

Reads: the run's server (:func:`curate.labelstudio.client.resolve_server`: the ``url`` setting,
``$LABEL_STUDIO_URL`` or the server ``curate labelstudio serve`` started for the run) and its token (never
from YAML); the catalog's synsets, images, labels, gold answers and decisions, to show each question with
the class's words, gloss and a few verified example images. Writes: the run's projects per server in
``projects.json`` (through :class:`~curate.layout.RunLayout`, so a rerun reuses them); changed and deleted
answers through the catalog.

Queues: an instance serves one queue of tasks (``tasks.backend``: ``labelstudio`` for the first rounds,
``labelstudio/review`` for the review round), each in a project of its own whose ``maximum_annotations`` is
that queue's votes per task (``annotate.votes_per_image``, ``review.votes_per_image``). Not one project with
per-task overlaps, because Label Studio 1.23.2 (measured) ignores ``overlap`` in imported tasks and, when a
project's ``maximum_annotations`` changes, sets every task whose overlap is above 1 to the new value.

Examples beside a question: gold "yes" answers, then images the crowd accepted with high agreement
(``p_true >= EXAMPLE_MIN_P_TRUE`` from at least ``example_min_votes`` votes), never a mere candidate, a
rejected or doubted image, or the image asked about; with none, the panel says the gloss is the definition.

Push: a local-files storage on the run's image store attached to the project (without it image URLs
answer 404), tasks imported in bulk (``POST /api/projects/{id}/import``, ``import_batch`` per request), each
carrying its ``curate_task_id``: tasks already in the project are found by it first, so a rerun or a push cut
short never duplicates one. Task rows with a model ``score`` (p of "yes") get it as a prediction (score =
confidence) and the project samples by uncertainty, so the least certain tasks are served first.

Pull: one paginated listing per batch of open tasks (``GET /api/tasks`` with only the ids, annotations and
the annotation fields needed), never one call per annotation. Each annotation is a vote with remote id
``ls:<annotation id>``, annotator = the user's email; "Unsure" and a skipped task are abstentions
(``unsure``). An answer changed later becomes a new vote (``ls:<id>:<updated_at>``) superseding the old;
a deleted annotation withdraws its vote (the task reopens). Answers changed on complete tasks (which are no
longer pulled) are found at the start of every stage run, in :meth:`push`, by one listing filtered on
``updated_at`` since the last such look. Each annotation is validated (:func:`parse_annotation`): one
that does not parse (any annotator can post one through the API) is skipped, counted (``malformed``) and
named in a warning, and listed tasks curate did not ask about are ignored. A task that wants more votes than
Label Studio serves it (an aggregator asked for one more, or it holds unreadable annotations) gets its
``overlap`` raised. An unreachable server or a refused token stops the
stage with a message naming the server; votes stored by earlier batches stay, the next run continues there.

``multi_class``: one task per image listing every class it is a candidate for; ticking a class is a "yes"
for that class and "no" for the others, "Unsure" abstains on all.
"""

from __future__ import annotations

import functools
import html
import json
import logging
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from curate.crowd.base import BACKENDS, Vote, task_question
from curate.errors import StageError
from curate.labelstudio import TOKEN_ENV, URL_ENV, LabelStudioError
from curate.labelstudio.files import read_json
from curate.sections import Section

log = logging.getLogger(__name__)

ANSWERS = ("yes", "no", "unsure")
CONTROLS = ("answer", "classes")  # the from_name of the answer in the labeling config (single, multi-class)
MODEL_VERSION = "curate"
SYNC_MARGIN = timedelta(minutes=2)  # re-read a little before the last mark: clocks within one server, races
# An example image beside a question must be right: a gold "yes", or accepted by at least
# ``example_min_votes`` people with p_true >= this (majority voting's p_true is the share of yes among yes and
# no, so below ten answers it reaches 0.9 only when nobody said no).
EXAMPLE_MIN_P_TRUE = 0.9
NO_EXAMPLES = "No verified examples of this class yet: the definition above is what counts."
QUEUES = "queues"  # projects.json: the projects of other queues (the review round's) below the server's entry
_ANNOTATION_FIELDS = "id,overlap,annotations,result,completed_by,updated_at,was_cancelled,lead_time"


class LabelStudioCrowdConfig(Section):
    type: Literal["labelstudio"] = "labelstudio"
    url: str | None = Field(None, description="server URL; default: $LABEL_STUDIO_URL, else the server "
                                              "`curate labelstudio serve RUN_DIR` started for this run")
    token_env: str = Field(TOKEN_ENV, description="environment variable holding the API token (never YAML): "
                                                  "CURATE_* or LABEL_STUDIO_*, ending in _API_KEY or _TOKEN")
    project_title: str | None = Field(None, min_length=3, max_length=50,
                                      description="default: 'curate <run name>'")
    example_images: int = Field(3, ge=0, le=8, description="example images of the class shown beside a question")
    example_min_votes: int = Field(3, ge=1, le=50, description="votes an image the crowd accepted needs before "
                                                              "it is shown as an example (gold answers need none)")
    multi_class: bool = Field(False, description="one task per image with every candidate class to tick")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds per HTTP request")
    import_batch: int = Field(500, ge=1, le=5000, description="tasks per import request")
    local_files_root: Path | None = Field(
        None, description="an existing server's LOCAL_FILES_DOCUMENT_ROOT (best the run's served/ folder, which "
                          "holds only a link to the image store); default: served/, as `curate labelstudio "
                          "serve` sets it")

    @field_validator("token_env")
    @classmethod
    def _variable_allowed(cls, value: str) -> str:
        from curate.credentials import env_name_problem

        problem = env_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("url")
    @classmethod
    def _token_travels_safely(cls, value: str | None) -> str | None:
        from curate.credentials import transport_problem

        problem = transport_problem("the API token", value) if value is not None else None
        if problem:
            raise ValueError(f"{problem}; for a server you trust over http, set ${URL_ENV} instead")
        return value


def label_config(multi_class: bool) -> str:
    """The labeling interface: the image, the question with the class's words and gloss, examples, answers."""
    if multi_class:
        return """<View>
  <Header value="$question"/>
  <Image name="image" value="$image" maxWidth="720px" zoom="true"/>
  <Choices name="classes" toName="image" choice="multiple" value="$classes" required="true"/>
</View>"""
    return """<View>
  <Header value="$question"/>
  <View style="display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap">
    <View style="flex: 3; min-width: 320px">
      <Image name="image" value="$image" maxWidth="720px" zoom="true"/>
    </View>
    <View style="flex: 2; min-width: 240px">
      <HyperText name="about" value="$about" inline="true"/>
    </View>
  </View>
  <Choices name="answer" toName="image" choice="single-radio" showInline="true" required="true">
    <Choice value="Yes" alias="yes" hotkey="y" hint="the image shows this class"/>
    <Choice value="No" alias="no" hotkey="n" hint="it does not"/>
    <Choice value="Unsure" alias="unsure" hotkey="u" hint="cannot tell"/>
  </Choices>
</View>"""


def _field(task: Any, key: str) -> Any:
    try:
        return task[key]
    except (KeyError, IndexError):
        return None


def _timestamp(value: Any) -> tuple[str, float]:
    """An ISO time (or datetime) as (the text the remote id carries, seconds since the epoch)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), moment.timestamp()


def _stamp_or_none(value: Any) -> str | None:
    try:
        return _timestamp(value)[0] if value else None
    except (TypeError, ValueError):
        return None


class Malformed(ValueError):
    """An annotation curate cannot read: Label Studio stores whatever result its API is sent (even where it
    answers 500), so any annotator can leave one."""


@dataclass(frozen=True)
class Annotation:
    """One annotation as curate reads it; ``choices`` is None for a skipped task or an empty result."""

    id: int
    stamp: str  # updated_at as a remote id carries it
    created: float  # updated_at, seconds since the epoch
    user: int | dict[str, Any] | None
    choices: tuple[str, ...] | None
    lead_time: float | None


@dataclass
class Changes:
    """What one listing changes in the catalog, and how many unreadable annotations each listed task holds."""

    new: list[Vote] = field(default_factory=list)
    revisions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (remote id replaced, new row)
    withdrawn: list[str] = field(default_factory=list)
    unreadable: Counter[int] = field(default_factory=Counter)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_annotation(raw: Any) -> Annotation:
    """An annotation from a task listing, checked field by field; raises :class:`Malformed` naming the
    first field that is not what Label Studio's labeling screen sends."""
    if not isinstance(raw, dict):
        raise Malformed(f"an annotation is a {type(raw).__name__}, not an object")
    if not _is_int(raw.get("id")):
        raise Malformed("no integer id")
    try:
        stamp, created = _timestamp(raw.get("updated_at"))
    except (TypeError, ValueError):
        raise Malformed("no valid updated_at") from None
    user = raw.get("completed_by")
    if not (user is None or _is_int(user) or isinstance(user, dict) and (
            _is_int(user.get("id")) or isinstance(user.get("email"), str))):
        raise Malformed("completed_by is neither a user id nor a user")
    lead_time = raw.get("lead_time")
    return Annotation(raw["id"], stamp, created, user,
                      None if raw.get("was_cancelled") is True else _choices(raw.get("result")),
                      float(lead_time) if isinstance(lead_time, int | float) and not isinstance(lead_time, bool)
                      else None)


def _choices(result: Any) -> tuple[str, ...] | None:
    """The choices of the answer control (``answer``, or ``classes`` in multi-class mode) in a result;
    None for an empty result. Items for other controls are ignored."""
    if result is None or result == []:
        return None
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise Malformed("result is not a list of objects")
    ours = [item for item in result if item.get("from_name") in CONTROLS]
    if not ours:
        raise Malformed("result answers none of curate's questions (unknown from_name)")
    if len(ours) > 1 or ours[0].get("type") != "choices":
        raise Malformed("result holds more than one answer, or an answer that is not a choice")
    value = ours[0].get("value")
    choices = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise Malformed("value.choices is not a list of strings")
    return tuple(choices)


@BACKENDS.register
class LabelStudioCrowd:
    name = "labelstudio"
    description = "annotators answer in Label Studio (a local server per run, or an existing one)"
    answers_change = True  # annotators may edit or delete answers after their task completed
    Config = LabelStudioCrowdConfig

    def __init__(self, config: LabelStudioCrowdConfig, ctx: Any, queue: str | None = None,
                 votes_per_task: int | None = None):
        from curate.labelstudio.client import resolve_server

        self.config = config
        self.catalog = ctx.catalog
        self.layout = ctx.layout
        self.run_name = ctx.config.run.name
        self.queue = queue or self.name  # the catalog's tasks.backend of the tasks this instance serves
        self.round = self.queue.partition("/")[2]  # "" for the first rounds, "review" for the review round
        self.stage = self.round or "annotate"
        self.votes_per_task = votes_per_task or ctx.config.annotate.votes_per_image
        try:
            self.server = resolve_server(self.layout, config.url, config.token_env)
        except LabelStudioError as exc:
            raise StageError(self.stage, str(exc)) from None
        self.url = self.server.url
        self.stats: Counter[str] = Counter()
        self._stack = ExitStack()
        self._ls: Any = None
        self._project: dict[str, Any] | None = None
        self._users: dict[int, str] = {}
        self._examples: dict[str, list[tuple[str, str]]] = {}

    @classmethod
    def from_context(cls, config: LabelStudioCrowdConfig, ctx: Any, queue: str | None = None,
                     votes_per_task: int | None = None) -> LabelStudioCrowd:
        """The backend for one queue of tasks (default: the first rounds', ``annotate.votes_per_image`` each);
        every queue has its own project, whose overlap is the queue's ``votes_per_task``."""
        return cls(config, ctx, queue, votes_per_task)

    # ------------------------------------------------------------------ plumbing
    @property
    def ls(self) -> Any:
        if self._ls is None:
            from curate.labelstudio.client import connect

            self._ls = self._stack.enter_context(connect(self.url, self.server.token, self.config.timeout))
        return self._ls

    def _errors(self, doing: str) -> Any:
        from curate.labelstudio.client import api_errors

        return api_errors(self.url, doing, layout=self.layout if self.server.local else None,
                          token_source=self.server.token_source,
                          error=lambda message: StageError(self.stage, message))

    def _state(self) -> dict[str, Any]:
        return read_json(self.layout.labelstudio_projects)

    def _known_project(self) -> dict[str, Any]:
        """This queue's project as projects.json keeps it: the first rounds' is the server's entry itself,
        another queue's sits below it, under ``queues``."""
        entry = self._state().get(self.url) or {}
        if self.round:
            return dict((entry.get(QUEUES) or {}).get(self.queue) or {})
        return {k: v for k, v in entry.items() if k != QUEUES}

    def _save_project(self) -> None:
        from curate.atomic import write_text

        state = self._state()
        entry = state.get(self.url) or {}
        if self.round:
            entry[QUEUES] = {**(entry.get(QUEUES) or {}), self.queue: self._project}
        else:
            entry = {**self._project, **({QUEUES: entry[QUEUES]} if entry.get(QUEUES) else {})}
        state[self.url] = entry
        write_text(self.layout.labelstudio_projects, json.dumps(state, indent=2) + "\n")

    @property
    def project_id(self) -> int:
        return int(self.project()["project"])

    def labeling_url(self) -> str:
        return f"{self.url}/projects/{self.project_id}/data?labeling=1"

    # ------------------------------------------------------------------ project
    def project(self) -> dict[str, Any]:
        """This queue's project of the run on this server (created with its storage on first use), as kept in
        projects.json; its overlap (``maximum_annotations``) is the queue's votes per task."""
        if self._project is not None:
            return self._project
        from label_studio_sdk.core.api_error import ApiError

        known = self._known_project()
        project = None
        if known.get("project"):
            with self._errors("opening the run's project"):
                try:
                    project = self.ls.projects.get(id=int(known["project"]))
                except ApiError as exc:
                    if exc.status_code != 404:
                        raise
                    log.warning("Label Studio project %s is gone from %s; creating a new one (tasks published to "
                                "the old one wait for it)", known["project"], self.url)
                    known = {}
        if project is None:
            title = self._title()
            with self._errors("creating the run's project"):
                project = self.ls.projects.create(
                    title=title, label_config=label_config(self.config.multi_class),
                    description=f"curate run {self.run_name}{f' ({self.round})' if self.round else ''}: is the "
                                f"image an example of the class?",
                    maximum_annotations=self.votes_per_task, sampling="Sequential sampling",
                    show_collab_predictions=False)  # the model's answer is never pre-filled: it anchors votes
            log.info("created Label Studio project %d '%s' at %s", project.id, title, self.url)
            known = {"project": project.id}
        known["overlap"] = project.maximum_annotations
        known["sampling"] = project.sampling
        self._project = known
        images = str(self._served_path(self.layout.images.name))
        if known.get("storage_path") != images:  # new, or attached by a curate that served the whole run directory
            known["storage"], known["storage_path"] = self._attach_storage(images), images
        self._save_project()
        if project.maximum_annotations != self.votes_per_task:  # the queue's votes per task changed
            self._update_project(maximum_annotations=self.votes_per_task)
        if project.show_collab_predictions:  # a project made before predictions were hidden from annotators
            self._update_project(show_collab_predictions=False)
        return known

    def _title(self) -> str:
        title = (self.config.project_title or f"curate {self.run_name}")[:50]
        return f"{title[: 49 - len(self.round)]} {self.round}" if self.round else title

    def _attach_storage(self, images: str) -> int:
        """A local-files storage on the run's image store: Label Studio serves /data/local-files/ only under one."""
        with self._errors("attaching the image store as local-files storage"):
            for storage in self.ls.import_storage.local.list(project=int(self._project["project"])):
                if (storage.path or "").rstrip("/") == images:
                    return storage.id
            storage = self.ls.import_storage.local.create(project=int(self._project["project"]), path=images,
                                                          use_blob_urls=False, title="curate image store")
        return storage.id

    def _update_project(self, **fields: Any) -> None:
        with self._errors("updating the run's project"):
            self.ls.projects.update(id=self.project_id, **fields)
        self._project.update({"overlap" if k == "maximum_annotations" else k: v for k, v in fields.items()})
        self._save_project()

    # ------------------------------------------------------------------ push
    def push(self, tasks: list[Any]) -> dict[int, str]:
        """Publish new tasks (after taking in answers changed on complete tasks: every stage run pushes)."""
        if not tasks and not self._known_project().get("project"):
            return {}
        project = self.project_id
        self._sync_complete_tasks()
        if not tasks:
            return {}
        existing = self._published()
        remote = {t["id"]: f"{project}/{existing[t['id']]}" for t in tasks if t["id"] in existing}
        todo = [t for t in tasks if t["id"] not in existing]
        payloads = self._payloads(todo)
        if any(p.get("predictions") for p, _ in payloads) and self._project.get("sampling") != "Uncertainty sampling":
            self._update_project(sampling="Uncertainty sampling")
        for start in range(0, len(payloads), self.config.import_batch):
            chunk = payloads[start : start + self.config.import_batch]
            with self._errors(f"importing {len(chunk)} tasks"):
                answer = self.ls.projects.import_tasks(id=project, request=[p for p, _ in chunk], return_task_ids=True)
            ids = answer.task_ids or []
            if len(ids) != len(chunk):
                raise StageError(self.stage, f"Label Studio at {self.url} imported {len(ids)} of {len(chunk)} tasks "
                                             f"into project {project}; run again (tasks there are not duplicated)")
            for ls_id, (_, curate_ids) in zip(ids, chunk, strict=True):
                for curate_id in curate_ids:
                    remote[curate_id] = f"{project}/{ls_id}"
        self.stats["pushed"] += len(payloads)
        self.stats["found"] += len(remote) - sum(len(ids) for _, ids in payloads)
        return remote

    def _published(self) -> dict[int, int]:
        """curate task id -> Label Studio task id of every task already in the project."""
        found: dict[int, int] = {}
        with self._errors("listing the project's tasks"):
            for task in self.ls.tasks.list(project=self.project_id, fields="all", include="id,data", page_size=1000):
                data = task.data or {}
                ids = data.get("curate_task_ids") or [data.get("curate_task_id")]
                found.update({int(i): task.id for i in ids if i is not None})
        return found

    def _payloads(self, tasks: list[Any]) -> list[tuple[dict[str, Any], list[int]]]:
        """(task to import, the curate task ids it answers) for these tasks."""
        synsets = {row["wnid"]: row for row in self.catalog.synsets()}
        paths = self.catalog.image_paths([t["sha256"] for t in tasks])
        if self.config.multi_class:
            return self._multi_class_payloads(tasks, synsets, paths)
        out = []
        for task in tasks:
            synset = synsets[task["wnid"]]
            data = {"image": self._image_url(paths[task["sha256"]]), "question": task_question(synset),
                    "about": self._about(synset, task["sha256"]), "wnid": task["wnid"], "sha256": task["sha256"],
                    "curate_task_id": task["id"]}
            payload: dict[str, Any] = {"data": data}
            score = _field(task, "score")
            if score is not None:
                p = float(score)
                choice = "yes" if p >= 0.5 else "no"
                payload["predictions"] = [{"model_version": MODEL_VERSION, "score": round(max(p, 1 - p), 6),
                                           "result": [{"from_name": "answer", "to_name": "image", "type": "choices",
                                                       "value": {"choices": [choice]}}]}]
            out.append((payload, [task["id"]]))
        return out

    def _multi_class_payloads(self, tasks: list[Any], synsets: dict[str, Any],
                              paths: dict[str, str]) -> list[tuple[dict[str, Any], list[int]]]:
        by_image: dict[str, list[Any]] = {}
        for task in tasks:
            by_image.setdefault(task["sha256"], []).append(task)
        out = []
        for sha, group in by_image.items():
            classes = [{"value": t["wnid"], "html": self._class_html(synsets[t["wnid"]])} for t in group]
            classes += [{"value": "none", "html": "None of these"}, {"value": "unsure", "html": "Unsure (cannot tell)"}]
            data = {"image": self._image_url(paths[sha]), "sha256": sha, "classes": classes,
                    "question": "Which of these does the image show? Tick every one that fits.",
                    "curate_task_ids": [t["id"] for t in group]}
            out.append(({"data": data}, [t["id"] for t in group]))
        return out

    def _image_url(self, relpath: str) -> str:
        """A stored image as Label Studio's local-files URL (relative to its document root)."""
        return f"/data/local-files/?d={quote((self._run_dir_below_root / relpath).as_posix(), safe='/')}"

    @functools.cached_property
    def _run_dir_below_root(self) -> Path:
        """The run directory as the server reaches it, relative to its document root: through ``served/`` (the tree
        ``curate labelstudio serve`` serves, a link to the image store) where the root holds it, else the run
        directory itself (an existing server whose root is a folder holding the run). Worked out once per backend,
        not once per image."""
        from curate.labelstudio.server import link_served_images

        root = (self.config.local_files_root or self.layout.served).resolve()
        for base in (link_served_images(self.layout).resolve(), self.layout.root.resolve()):
            if base.is_relative_to(root):
                return base.relative_to(root)
        raise StageError("annotate", f"{self.layout.images.resolve()} is outside Label Studio's local-files "
                                     f"document root {root}: set annotate.backend.local_files_root to the server's "
                                     f"LOCAL_FILES_DOCUMENT_ROOT (a folder holding the run)")

    def _served_path(self, relpath: str) -> Path:
        """A path of the run directory as an absolute path below the server's document root."""
        return (self.config.local_files_root or self.layout.served).resolve() / self._run_dir_below_root / relpath

    @staticmethod
    def _class_html(synset: Any) -> str:
        words = html.escape(synset["lemmas"])
        return f"<b>{words}</b>: {html.escape(synset['gloss'])}"

    def _about(self, synset: Any, own_sha: str) -> str:
        """The side panel: the class's words and gloss, and a few verified example images (gold answers, or
        accepted with high agreement; never the one asked about, never a mere candidate), else a line saying
        that the gloss is the definition."""
        wnid = synset["wnid"]
        if wnid not in self._examples:
            self._examples[wnid] = self.catalog.class_examples(
                wnid, self.config.example_images + 1, EXAMPLE_MIN_P_TRUE, self.config.example_min_votes)
        examples = [p for sha, p in self._examples[wnid] if sha != own_sha][: self.config.example_images]
        parts = [f"<p style='font-size:16px'>{self._class_html(synset)}</p>"]
        if examples:
            images = "".join(f"<img src='{html.escape(self._image_url(p))}' alt='example' "
                             f"style='height:110px;margin:0 6px 6px 0;border-radius:4px'/>" for p in examples)
            parts.append(f"<p style='margin:12px 0 4px'>Examples of this class:</p><div>{images}</div>")
        elif self.config.example_images:
            parts.append(f"<p style='margin:12px 0 4px'>{NO_EXAMPLES}</p>")
        parts.append("<p style='color:#666;margin-top:12px'>Keys: <b>y</b> yes, <b>n</b> no, <b>u</b> unsure; "
                     "then Submit (Ctrl+Enter).</p>")
        return "".join(parts)

    # ------------------------------------------------------------------ pull
    def pull(self, tasks: list[Any]) -> list[Vote]:
        if not tasks:
            return []
        project = self.project_id
        by_remote = self._by_remote_task(tasks, project)
        if not by_remote:
            return []
        query = json.dumps({"selectedItems": {"all": False, "included": sorted(by_remote)}})
        with self._errors(f"reading the annotations of {len(by_remote)} tasks"):
            listing = list(self.ls.tasks.list(project=project, fields="all", include=_ANNOTATION_FIELDS,
                                              page_size=len(by_remote), query=query))
        gone = set(by_remote) - {t.id for t in listing}
        if gone:
            self.stats["gone"] += len(gone)
            log.warning("%d tasks are no longer in Label Studio project %d (deleted there?), e.g. %s",
                        len(gone), project, sorted(gone)[:5])
        changes = self._compare(listing, by_remote)
        self._raise_overlap(listing, by_remote, changes.unreadable)
        self._revise(changes.revisions, changes.withdrawn)
        self.stats["new_votes"] += len(changes.new)
        return changes.new

    def _raise_overlap(self, listing: list[Any], by_remote: dict[int, list[Any]], unreadable: Counter[int]) -> None:
        """Label Studio serves a task until it holds ``overlap`` annotations (skipped ones aside), readable or
        not: a task that wants more votes (an aggregator asked for one more) or holds annotations curate cannot
        read (each one answer fewer) gets its overlap raised, one request per such task. Label Studio does not
        recompute ``is_labeled`` on such an update, so it is sent along."""
        for remote_task in listing:
            if remote_task.id not in by_remote:
                continue
            wanted = max(int(t["votes_wanted"]) for t in by_remote[remote_task.id]) + unreadable[remote_task.id]
            if (remote_task.overlap or 0) < wanted:
                held = sum(not (isinstance(a, dict) and a.get("was_cancelled") is True)
                           for a in remote_task.annotations or [])
                with self._errors(f"asking for {wanted} answers on task {remote_task.id}"):
                    self.ls.tasks.update(id=str(remote_task.id), overlap=wanted, is_labeled=held >= wanted)
                self.stats["overlap_raised"] += 1

    def _by_remote_task(self, tasks: list[Any], project: int) -> dict[int, list[Any]]:
        grouped: dict[int, list[Any]] = {}
        foreign = 0
        for task in tasks:
            owner, _, remote = (task["remote_id"] or "").partition("/")
            if owner != str(project) or not remote.isdigit():
                foreign += 1
                continue
            grouped.setdefault(int(remote), []).append(task)
        if foreign:
            self.stats["other_project"] += foreign
            log.warning("%d tasks were published to another Label Studio project than %d at %s; their votes are "
                        "not pulled", foreign, project, self.url)
        return grouped

    def _sync_complete_tasks(self) -> None:
        """Answers changed (or deleted, or added) on this queue's complete tasks since the last look: one
        filtered listing of the queue's project."""
        complete = self.catalog.tasks_of(self.queue, "complete")
        if not complete:
            return
        by_remote = self._by_remote_task(complete, self.project_id)
        mark = self._project.get("synced_until")
        query: dict[str, Any] = {}
        if mark:
            since = datetime.fromisoformat(mark.replace("Z", "+00:00")) - SYNC_MARGIN
            query = {"filters": {"conjunction": "and", "items": [{
                "filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                "value": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}]}}
        latest = mark
        changed = []
        with self._errors("looking for answers changed on complete tasks"):
            for task in self.ls.tasks.list(project=self.project_id, fields="all", page_size=500,
                                           include=f"{_ANNOTATION_FIELDS}", query=json.dumps(query)):
                stamp = _stamp_or_none(task.updated_at)
                if stamp and (latest is None or stamp > latest):
                    latest = stamp
                if task.id in by_remote:
                    changed.append(task)
        changes = self._compare(changed, by_remote)
        if changes.new:
            self.catalog.add_votes([v.as_row() for v in changes.new])
            self.stats["new_votes"] += len(changes.new)
        self._revise(changes.revisions, changes.withdrawn)
        if latest and latest != mark:
            self._project["synced_until"] = latest
            self._save_project()

    def _revise(self, revisions: list[tuple[str, dict[str, Any]]], withdrawn: list[str]) -> None:
        if revisions or withdrawn:
            revised, removed = self.catalog.revise_votes(revisions, withdrawn)
            self.stats["revised"] += revised
            self.stats["withdrawn"] += removed
            log.info("labelstudio: %d answers changed, %d deleted since the last pull", revised, removed)

    def _compare(self, listing: list[Any], by_remote: dict[int, list[Any]]) -> Changes:
        """New votes, revisions and withdrawn votes, from the annotations Label Studio holds now against the
        votes the catalog holds. An annotation that does not parse is skipped and counted (its vote, if it
        had one, is withdrawn: the annotator's answer is no longer readable); a listed task curate did not ask
        about is ignored."""
        curate_ids = [t["id"] for group in by_remote.values() for t in group]
        stored = {}
        for vote in self.catalog.current_votes(curate_ids):
            if vote["remote_id"].startswith("ls:"):
                stored[(vote["task_id"], vote["remote_id"].split(":")[1])] = vote
        changes = Changes()
        seen: set[tuple[int, str]] = set()
        listed: set[int] = set()
        skipped: list[tuple[Any, str]] = []
        for remote_task in listing:
            group = by_remote.get(remote_task.id)
            if group is None:
                self.stats["foreign_tasks"] += 1
                continue
            listed.update(t["id"] for t in group)
            for raw in remote_task.annotations or []:
                try:
                    annotation = parse_annotation(raw)
                    answers = self._answers(annotation, group)
                except Malformed as exc:
                    changes.unreadable[remote_task.id] += 1
                    skipped.append((raw.get("id") if isinstance(raw, dict) else None, str(exc)))
                    continue
                seen.update(self._votes_of(annotation, answers, group, stored, changes))
        changes.withdrawn = [v["remote_id"] for (task_id, key), v in stored.items() if task_id in listed
                             and (task_id, key) not in seen]
        self._report_malformed(skipped)
        return changes

    def _votes_of(self, annotation: Annotation, answers: dict[int, str], group: list[Any],
                  stored: dict[tuple[int, str], Any], changes: Changes) -> list[tuple[int, str]]:
        """One annotation's votes (one per curate task of its Label Studio task) into ``changes``: new ones,
        and revisions of stored ones whose answer or annotator changed; returns the (task, key) pairs seen."""
        annotator = self._annotator(annotation.user)
        lead_time = annotation.lead_time / len(group) if annotation.lead_time is not None else None  # shared
        seen = []
        for task in group:
            key = str(annotation.id) if not self.config.multi_class else f"{annotation.id}.{task['id']}"
            seen.append((task["id"], key))
            answer, old = answers[task["id"]], stored.get((task["id"], key))
            if old is None:
                changes.new.append(Vote(task["id"], annotator, answer, f"ls:{key}", annotation.created, lead_time))
            elif old["answer"] != answer or old["annotator"] != annotator:
                changes.revisions.append((old["remote_id"], {
                    "task_id": task["id"], "annotator": annotator, "answer": answer,
                    "remote_id": f"ls:{key}:{annotation.stamp}", "created_at": annotation.created}))
        return seen

    def _report_malformed(self, skipped: list[tuple[Any, str]]) -> None:
        if not skipped:
            return
        self.stats["malformed"] += len(skipped)
        reasons = Counter(reason for _, reason in skipped)
        log.warning("labelstudio: skipped %d annotations that do not parse (ids %s): %s; the other answers "
                    "count, and each such task is served to one more annotator", len(skipped),
                    ", ".join(str(i) for i, _ in skipped[:20]) + (", ..." if len(skipped) > 20 else ""),
                    "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(5)))

    def _answers(self, annotation: Annotation, group: list[Any]) -> dict[int, str]:
        """curate task id -> yes | no | unsure for one annotation (skipped or empty: unsure). Raises
        :class:`Malformed` for choices the task did not offer."""
        choices = annotation.choices
        if not self.config.multi_class:
            if not choices:
                return {t["id"]: "unsure" for t in group}
            answer = choices[0].strip().lower()
            if len(choices) > 1 or answer not in ANSWERS:
                raise Malformed(f"answer {list(choices)!r} is not one of Yes, No, Unsure")
            return {t["id"]: answer for t in group}
        offered = {t["wnid"] for t in group} | {"none", "unsure"}
        if set(choices or ()) - offered:
            raise Malformed(f"classes {sorted(set(choices or ()) - offered)!r} were not offered")
        if not choices or "unsure" in choices:
            return {t["id"]: "unsure" for t in group}
        return {t["id"]: "yes" if t["wnid"] in choices else "no" for t in group}

    def _annotator(self, user: int | dict[str, Any] | None) -> str:
        if isinstance(user, dict):
            return str(user.get("email") or f"ls-user-{user.get('id')}")
        if user is None:
            return "ls-user-unknown"
        if user not in self._users:
            with self._errors("listing users"):
                self._users.update({u.id: u.email or f"ls-user-{u.id}" for u in self.ls.users.list()})
        return self._users.get(user, f"ls-user-{user}")

    # ------------------------------------------------------------------ the rest
    def next_step(self, missing_votes: int) -> str:
        return (f"annotators answer in Label Studio at {self.labeling_url()} (invite them with the link "
                f"`curate labelstudio serve` prints); run the same command again later to collect their votes")

    def close(self) -> None:
        if self.stats:
            log.info("labelstudio (%s): %s", self.url, ", ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        self._stack.close()
