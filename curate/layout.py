"""RunLayout: every path inside a run directory. No other module joins run-directory paths.

```
RUN_DIR/
  config.yaml        the resolved configuration          catalog.sqlite   the catalog (+ -wal, -shm)
  images/ab/<sha256>.jpg   the content-addressed store    logs/curate.log  the run's log
  report/            the noise report                     export/          the exported dataset
  benchmark/<mode>.json    benchmark results              .lock            held by the running curate
  benchmark/<mode>.png, index.html, learning_curve.json/.png, checkpoints/<name>.pt (while training)
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

    def benchmark_plot(self, name: str) -> Path:
        """Loss and accuracy per epoch of one training (``finetune``, ``finetune.noisy``)."""
        return self.benchmark / f"{name}.png"

    @property
    def benchmark_checkpoints(self) -> Path:
        return self.benchmark / "checkpoints"

    def benchmark_checkpoint(self, name: str) -> Path:
        """One training's checkpoint: model, optimizer, scheduler, scaler and finished epochs."""
        return self.benchmark_checkpoints / f"{name}.pt"

    @property
    def benchmark_learning_curve(self) -> Path:
        return self.benchmark / "learning_curve.json"

    @property
    def benchmark_learning_curve_plot(self) -> Path:
        return self.benchmark / "learning_curve.png"

    @property
    def benchmark_index(self) -> Path:
        """The benchmark's page: every mode's numbers and charts, noisy vs cleaned, the learning curve."""
        return self.benchmark / "index.html"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def labelstudio(self) -> Path:
        """The local Label Studio server of this run (``curate labelstudio serve``) and curate's notes on it."""
        return self.root / "labelstudio"

    @property
    def labelstudio_data(self) -> Path:
        """The server's own data folder (its SQLite database, media, secret key)."""
        return self.labelstudio / "data"

    @property
    def labelstudio_database(self) -> Path:
        return self.labelstudio_data / "label_studio.sqlite3"

    @property
    def labelstudio_server(self) -> Path:
        """``{"url": ..., "pid": ...}`` of the running local server; no secrets."""
        return self.labelstudio / "server.json"

    @property
    def labelstudio_credentials(self) -> Path:
        """Admin user, password and API token of the local server (mode 0600)."""
        return self.labelstudio / "credentials.json"

    @property
    def labelstudio_projects(self) -> Path:
        """The run's Label Studio project per server URL (id, storage, sync mark), so reruns reuse it."""
        return self.labelstudio / "projects.json"

    @property
    def labelstudio_log(self) -> Path:
        return self.labelstudio / "server.log"

    @property
    def labelstudio_lock(self) -> Path:
        """Held (``flock``) by the process serving this run's Label Studio: one server per run."""
        return self.labelstudio / "serve.lock"

    @property
    def served(self) -> Path:
        """The only folder Label Studio serves files from (its local-files document root). It holds ``images``, a
        link to the image store, and nothing else: the catalog, logs and Label Studio's own data and credentials
        stay outside every tree a signed-in user can attach as storage."""
        return self.root / "served"

    @property
    def served_images(self) -> Path:
        return self.served / "images"

    def stored(self, relpath: str) -> Path:
        """An ``images`` row's ``path`` (relative to the run directory) as a path."""
        return self.root / relpath

    def exists(self) -> bool:
        return self.catalog.is_file()

    def ensure(self) -> RunLayout:
        self.root.mkdir(parents=True, exist_ok=True)
        return self
