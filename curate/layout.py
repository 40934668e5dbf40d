"""RunLayout: every path inside a run directory. No other module joins run-directory paths.

```
RUN_DIR/
  config.yaml        the resolved configuration          catalog.sqlite   the catalog (+ -wal, -shm)
  images/ab/<sha256>.jpg   the content-addressed store    logs/curate.log  the run's log
  report/            the noise report                     export/          the exported dataset
  benchmark/<mode>.json    benchmark results              .lock            held by the running curate
```
Reads and writes nothing itself, except that :meth:`RunLayout.ensure` creates the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "curate.log"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_index(self) -> Path:
        return self.report / "index.html"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def benchmark(self) -> Path:
        return self.root / "benchmark"

    def benchmark_result(self, mode: str) -> Path:
        return self.benchmark / f"{mode}.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def stored(self, relpath: str) -> Path:
        """An ``images`` row's ``path`` (relative to the run directory) as a path."""
        return self.root / relpath

    def exists(self) -> bool:
        return self.catalog.is_file()

    def ensure(self) -> RunLayout:
        self.root.mkdir(parents=True, exist_ok=True)
        return self
