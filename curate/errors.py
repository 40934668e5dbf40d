"""Exceptions that carry an exit code: the CLI maps them to messages, never tracebacks.

- :class:`ConfigError` (exit 2): bad input found before any work (YAML, keys, missing files).
- :class:`StageError` (exit 1): a stage could not go on; carries the command that resumes the run.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class: an error the user can act on, printed without a traceback."""

    exit_code = 1


class ConfigError(CurateError):
    """The pipeline configuration (or a file it names) is wrong. ``problems`` lists every finding."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class StageError(CurateError):
    """A stage failed as a whole. Per-item failures are rows in the catalog, not exceptions.

    The message is built when shown, so a resume hint set after raising (the runner adds the command
    that resumes the run) is always part of it."""

    exit_code = 1

    def __init__(self, stage: str, message: str, resume_hint: str | None = None):
        super().__init__(stage, message)
        self.stage = stage
        self.message = message
        self.resume_hint = resume_hint

    def __str__(self) -> str:
        text = f"stage '{self.stage}' failed: {self.message}"
        if self.resume_hint:
            text += f"\nfix the cause, then resume with: {self.resume_hint}"
        return text
