"""The base of every config model: :class:`Section`, the plug-in unions and the weights helpers.

Every stage and plug-in module builds its ``Config`` from here; :mod:`curate.config` assembles them into the
pipeline model. This module imports nothing of curate, so any module may import it without closing a circle.
Reads: nothing; :meth:`Section.check_inputs` and :func:`weights_problem` look whether the files named exist.
Writes: nothing. Failure: pydantic's ``ValidationError`` (unknown keys, bad values), which
:func:`curate.config.validate` turns into one ConfigError listing every problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Section(BaseModel):
    """Base of every config block: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def resolve_paths(self, base: Path) -> None:
        """Make relative ``Path`` fields absolute against ``base``, recursing into sub-sections."""
        for name, value in list(self):
            if isinstance(value, Path):
                setattr(self, name, (base / value).resolve())
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, Section):
                    child.resolve_paths(base)

    def check_inputs(self, where: str) -> list[str]:
        """Problems with the files and folders this section names (``where`` is its YAML path)."""
        problems: list[str] = []
        for name, value in self:
            children = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for index, child in children:
                if isinstance(child, Section):
                    problems += child.check_inputs(f"{where}.{name}" + (f".{index}" if index is not None else ""))
        return problems


def _type_shorthand(default: str | None) -> Any:
    def expand(value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if default is not None and isinstance(value, dict) and "type" not in value:
            return {"type": default, **value}  # --set run.executor.processes=4 on a default plug-in
        return value

    return expand


def plugin_config(registry: Any, default: str | None = None) -> Any:
    """The config type for one plug-in of ``registry``: a discriminated union of their ``Config``s. A bare
    name stands for ``{type: name}``; a mapping without ``type`` means the ``default`` plug-in, if any."""
    configs = tuple(registry.configs())
    union = configs[0] if len(configs) == 1 else Union[configs]  # noqa: UP007 (built at run time)
    return Annotated[union, Field(discriminator="type"), BeforeValidator(_type_shorthand(default))]


def weights_spec(value: str, base: Path) -> str:
    """``imagenet`` | ``none`` | a state_dict path, made absolute against ``base``."""
    return value if value in ("imagenet", "none") else str((base / value).resolve())


def weights_problem(value: str | None, where: str) -> list[str]:
    if value and value not in ("imagenet", "none") and not Path(value).is_file():
        return [f"{where}: file not found: {value}"]
    return []
