"""pipeline.yaml -> typed, validated configuration, assembled from the plug-ins' own config classes.

Reads: a YAML file plus ``--set a.b=c`` overrides. The pipeline model is built from the stage
registry (one section per stage, each stage's ``Config`` beside the stage) and, inside the sections,
from the plug-in registries as pydantic discriminated unions on ``type`` (``type: local`` picks the
local source's model; a bare name such as ``backend: simulated`` is short for ``{type: simulated}``; the
base classes and unions come from :mod:`curate.sections`, which plug-ins and stages import instead of this module).
Every model rejects unknown keys; all problems are collected and raised together as one
:class:`~curate.errors.ConfigError` (exit 2), each prefixed with its YAML path. Relative paths are
resolved against the folder holding the YAML file (each section knows its path fields through
:meth:`Section.resolve_paths`), and :meth:`Section.check_inputs` reports missing files. Secrets
(tokens, API keys) are never read from YAML, only from the environment; which variables a file may name
and where a credential may travel is :mod:`curate.credentials`'s rule.
Writes: nothing; :func:`save_resolved` writes the resolved config into a run directory.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from curate.errors import ConfigError
from curate.sections import Section, plugin_config


@cache
def run_model() -> type[Section]:
    """The ``run`` section; its ``executor`` is a plug-in, so the model is built once the registry is."""
    from curate.executors import EXECUTORS

    class RunConfig(Section):
        name: str = "run"
        dir: Path = Path("runs/run")
        seed: int = 0
        log_level: Literal["debug", "info", "warning"] = "info"
        executor: plugin_config(EXECUTORS, default="local") = Field(  # type: ignore[valid-type]
            default_factory=lambda: {"type": "local"}, validate_default=True,
            description="where per-item work (downloads) runs: local = a thread pool on this machine",
        )

    return RunConfig


@cache
def pipeline_model() -> type[Section]:
    """The pipeline model: ``run`` plus one section per registered stage, in pipeline order."""
    from curate.stages import STAGES

    fields: dict[str, Any] = {"run": (run_model(), Field(default_factory=run_model()))}
    for stage in STAGES:
        required = stage.Config.model_json_schema().get("required")
        fields[stage.name] = (stage.Config, ...) if required else (stage.Config, Field(default_factory=stage.Config))
    return create_model("PipelineConfig", __base__=Section, **fields)


def stage_names() -> list[str]:
    from curate.stages import STAGES

    return STAGES.names()


@cache
def _plugin_tags() -> frozenset[str]:
    """Every plug-in ``type`` name in the pipeline model: pydantic puts the chosen tag into error locations;
    we leave it out. Found by walking the model's sections, so every plug-in the model accepts is known."""
    seen: set[type[BaseModel]] = set()
    pending: list[type[BaseModel]] = [pipeline_model()]
    while pending:
        model = pending.pop()
        if model not in seen:
            seen.add(model)
            pending += [m for field in model.model_fields.values() for m in _models_in(field.annotation)]
    return frozenset(tag for model in seen if (tag := _type_tag(model)) is not None)


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str, overrides: list[str] | None = None, run_dir: Path | None = None) -> Any:
    """Read, override, validate and resolve a pipeline file. Raises ConfigError listing every problem."""
    path = Path(path)
    raw = _read_yaml(path)
    for item in overrides or []:
        _apply_override(raw, item)
    config = validate(raw, source=str(path))
    config.resolve_paths(path.resolve().parent)
    if run_dir is not None:
        config.run.dir = run_dir.resolve()
    problems = config.check_inputs("")
    if problems:
        raise ConfigError([p.lstrip(".") for p in problems], source=str(path))
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"pipeline file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML syntax error{where}: {problem}", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read pipeline file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections (run, synsets, candidates, ...)", str(path))
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """``a.b.c=value``; the value is parsed as YAML (numbers, booleans, lists); list items by index."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: i + 1])
    last = parts[-1]
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: the value is not valid YAML: {value!r}") from None
    if isinstance(node, list):
        node[_index(node, last, parts)] = parsed
    else:
        node[last] = parsed


def _child(node: Any, part: str, path: list[str]) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {'.'.join(path)}: not a section")
    child = node.get(part)
    if isinstance(child, str):  # a plug-in given by name only (backend: simulated) becomes a mapping
        child = node[part] = {"type": child}
    return node.setdefault(part, {}) if child is None else child


def _index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {'.'.join(path)}: no list item {part!r} (the list has {len(node)})")
    return int(part)


def validate(raw: dict[str, Any], source: str = "pipeline") -> Any:
    try:
        return pipeline_model().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_format_error(e) for e in exc.errors()], source=source) from None


def _format_error(error: Any) -> str:
    tags = _plugin_tags()
    loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and (p in tags or p.startswith("function-")))]
    where = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"][:-1]), n=3, cutoff=0.6)
        return f"{where}: unknown key" + (f"; did you mean {' or '.join(close)}?" if close else "")
    if error["type"] == "missing":
        return f"{where}: required key missing"
    if error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"{where}: unknown type {ctx.get('tag')!r}; known: {ctx.get('expected_tags')}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        return f"{where}: {message}"
    return f"{where}: {message} (got {error.get('input')!r})"


def _known_keys(loc: tuple) -> list[str]:
    """The keys the models at ``loc`` (an error location: field names, list indices, plug-in tags) accept."""
    models: list[type[BaseModel]] = [pipeline_model()]
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: the models are those of the list's annotation, already unwrapped
        tagged = [m for m in models if _type_tag(m) == part]
        if tagged:
            models = tagged
            continue
        models = [inner for m in models if part in m.model_fields
                  for inner in _models_in(m.model_fields[part].annotation)]
    return sorted({key for m in models for key in m.model_fields})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X | None``, ``list[X]``, ``Annotated[Union[...], ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _type_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    return field.default if field is not None and isinstance(field.default, str) else None


def save_resolved(config: Any, path: Path) -> None:
    """Write the resolved config (absolute paths, defaults filled in) as YAML."""
    data = config.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
