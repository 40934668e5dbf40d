"""pipeline.yaml -> typed, validated configuration.

Reads: a YAML file plus ``--set a.b=c`` overrides. Every model rejects unknown keys; all problems
are collected and raised together as one :class:`~curate.errors.ConfigError` (exit 2), each
prefixed with its YAML path (``annotate.votes_per_image: ...``). Relative paths in the file are
resolved against the folder holding the YAML file, so a pipeline means the same thing from any
working directory. Secrets (tokens, API keys) are never read from YAML, only from the environment.
Writes: nothing; :func:`save_resolved` writes the resolved config into a run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.errors import ConfigError

STAGE_NAMES = ("synsets", "candidates", "annotate", "noise", "export", "benchmark")


class Section(BaseModel):
    """Base of every config block: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = "run"
    dir: Path = Path("runs/run")
    seed: int = 0
    log_level: Literal["debug", "info", "warning"] = "info"


class SynsetsConfig(Section):
    roots: list[str] = Field(default_factory=list, description="synset names (dog.n.01) or wnids; subtrees taken")
    max_depth: int = Field(0, ge=0, description="levels below each root; 0 = the roots themselves")
    leaves_only: bool = False
    wnids: list[str] = Field(default_factory=list, description="explicit ImageNet-style ids, n########")
    imageable_only: bool = True
    max_synsets: int = Field(1000, ge=1)
    parent_in_gloss: bool = True

    @field_validator("wnids")
    @classmethod
    def _wnid_format(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not (len(v) == 9 and v[0] == "n" and v[1:].isdigit())]
        if bad:
            raise ValueError(f"not a WordNet noun id of the form n######## : {', '.join(bad)}")
        return values

    @model_validator(mode="after")
    def _something_selected(self) -> SynsetsConfig:
        if not self.roots and not self.wnids:
            raise ValueError("give at least one of 'roots' or 'wnids'")
        return self


class LocalSourceConfig(Section):
    type: Literal["local"] = "local"
    root: Path
    index: str | None = Field(None, description="CSV file (relative to root) with columns file, caption")
    captions: list[Literal["index", "sidecar", "filename"]] = ["index", "sidecar", "filename"]
    max_per_query: int = Field(500, ge=1)


SourceConfig = Annotated[LocalSourceConfig, Field(discriminator="type")]


class DownloadConfig(Section):
    workers: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(20.0, gt=0)
    retries: int = Field(2, ge=0)
    max_bytes: int = Field(25_000_000, gt=0)
    min_side_px: int = Field(32, ge=1)
    max_side_px: int = Field(512, ge=32, description="longest side after normalization")
    jpeg_quality: int = Field(90, ge=50, le=100)
    user_agent: str = "curate/0.1 (+https://github.com/curate-datasets/curate)"


class CandidatesConfig(Section):
    sources: list[SourceConfig] = Field(min_length=1)
    max_per_class: int = Field(1000, ge=1)
    download: DownloadConfig = DownloadConfig()


class SimulatedCrowdConfig(Section):
    workers: int = Field(12, ge=1)
    accuracy: float = Field(0.85, ge=0.0, le=1.0, description="mean accuracy of honest workers")
    accuracy_spread: float = Field(0.1, ge=0.0, le=0.5)
    spammer_share: float = Field(0.1, ge=0.0, le=1.0, description="share of workers answering at random")
    seed: int | None = None


class AnnotateConfig(Section):
    backend: Literal["simulated"] = "simulated"
    votes_per_image: int = Field(3, ge=1, le=50)
    aggregate: Literal["majority"] = "majority"
    simulated: SimulatedCrowdConfig = SimulatedCrowdConfig()


class NoiseConfig(Section):
    backbone: str = "resnet50"
    weights: str = Field("imagenet", description="imagenet | none | path to a state_dict")
    weights_fallback: Literal["none"] | None = Field(
        None, description="what to use when ImageNet weights cannot be loaded; unset = stop with an error"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(1, ge=0, description="image-decoding worker processes for embedding")
    folds: int = Field(5, ge=2)
    # prune_by_class: on Imagenette (25 % flipped) recall 0.96 vs 0.90 for prune_by_noise_rate, same precision
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"] = (
        "prune_by_class"
    )
    min_images_per_class: int = Field(5, ge=2)
    max_flagged_in_report: int = Field(500, ge=0)


class ExportConfig(Section):
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    drop_label_issues: bool = True
    min_images_per_class: int = Field(1, ge=1)


class BenchmarkConfig(Section):
    mode: Literal["linear_probe"] = "linear_probe"
    backbone: str | None = Field(None, description="defaults to noise.backbone")
    weights: str | None = Field(None, description="defaults to noise.weights")
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)


class PipelineConfig(Section):
    run: RunConfig = RunConfig()
    synsets: SynsetsConfig
    candidates: CandidatesConfig
    annotate: AnnotateConfig = AnnotateConfig()
    noise: NoiseConfig = NoiseConfig()
    export: ExportConfig = ExportConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str, overrides: list[str] | None = None, run_dir: Path | None = None) -> PipelineConfig:
    """Read, override, validate and resolve a pipeline file. Raises ConfigError listing every problem."""
    path = Path(path)
    raw = _read_yaml(path)
    for item in overrides or []:
        _apply_override(raw, item)
    config = _validate(raw, source=str(path))
    _resolve_paths(config, base=path.resolve().parent)
    if run_dir is not None:
        config.run.dir = run_dir.resolve()
    check_inputs(config, source=str(path))
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
    parsed = yaml.safe_load(value) if value.strip() else ""
    if isinstance(node, list):
        node[_index(node, last, parts)] = parsed
    else:
        node[last] = parsed


def _child(node: Any, part: str, path: list[str]) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {'.'.join(path)}: not a section")
    return node.setdefault(part, {})


def _index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {'.'.join(path)}: no list item {part!r} (the list has {len(node)})")
    return int(part)


def _validate(raw: dict[str, Any], source: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_format_error(e) for e in exc.errors()], source=source) from None


def _format_error(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and p in ("local",))]
    where = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key missing"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        return f"{where}: {message}"
    return f"{where}: {message} (got {error.get('input')!r})"


def _resolve_paths(config: PipelineConfig, base: Path) -> None:
    config.run.dir = (base / config.run.dir).resolve()
    for source in config.candidates.sources:
        source.root = (base / source.root).resolve()
    for section in (config.noise, config.benchmark):
        if section.weights and section.weights not in ("imagenet", "none"):
            section.weights = str((base / section.weights).resolve())


def check_inputs(config: PipelineConfig, source: str | None = None) -> None:
    """Checks on the world the config names (folders, files), all reported at once."""
    problems = []
    for i, src in enumerate(config.candidates.sources):
        where = f"candidates.sources.{i}"
        if not src.root.is_dir():
            problems.append(f"{where}.root: folder not found: {src.root}")
        elif src.index and not (src.root / src.index).is_file():
            problems.append(f"{where}.index: file not found: {src.root / src.index}")
    for name, section in (("noise", config.noise), ("benchmark", config.benchmark)):
        weights = section.weights
        if weights and weights not in ("imagenet", "none") and not Path(weights).is_file():
            problems.append(f"{name}.weights: file not found: {weights}")
    if problems:
        raise ConfigError(problems, source=source)


def save_resolved(config: PipelineConfig, path: Path) -> None:
    """Write the resolved config (absolute paths, defaults filled in) as YAML."""
    data = config.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def section_dump(config: PipelineConfig, *names: str) -> dict[str, Any]:
    """The named sections as plain data; stages fingerprint their inputs with this."""
    return {name: getattr(config, name).model_dump(mode="json") for name in names}
