"""SIGKILL a download of a few thousand URLs from a loopback host, then resume: every image is stored
once, nothing that succeeded is fetched again, and no worker process outlives the killed run."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import DOG, pipeline_dict, write_pipeline
from PIL import Image

N_URLS = 2500


def jpeg(index: int) -> bytes:
    img = Image.new("RGB", (64, 48), (index % 256, (index // 256) % 256, 90))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80, comment=f"image {index}")  # distinct bytes for every URL
    return out.getvalue()


class Host(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: Counter[str] = Counter()
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        with self.lock:
            self.hits[self.path] += 1
        time.sleep(0.01)
        body = jpeg(int(self.path.rsplit("/", 1)[-1].removesuffix(".jpg")))
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def settled(catalog: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(catalog, timeout=1) as con:
            return dict(con.execute("SELECT url, status FROM candidates WHERE status != 'pending'").fetchall())
    except sqlite3.Error:
        return {}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_sigkill_during_downloads_then_resume(tmp_path: Path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Host)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    with (tmp_path / "urls.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "wnid"])
        writer.writerows([f"{base}/img/{i}.jpg", DOG] for i in range(N_URLS))
    data = pipeline_dict(tmp_path, tmp_path / "run")
    data["synsets"] = {"wnids": [DOG]}
    data["candidates"]["sources"] = [{"type": "urls", "path": "urls.csv", "max_per_query": N_URLS}]
    data["candidates"]["max_per_class"] = N_URLS
    data["candidates"]["download"].update(workers=8, allow_private_networks=True, per_host_workers=0)
    pipeline = write_pipeline(tmp_path / "p.yaml", data)
    command = [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "--only", "synsets",
               "--only", "candidates", "--set", "run.executor={type: local, processes: 2}"]
    catalog = tmp_path / "run" / "catalog.sqlite"
    try:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(settled(catalog)) < 300 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = children_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_at_kill = settled(catalog)
        assert 300 <= len(done_at_kill) < N_URLS, "the kill must land in the middle of the downloads"
        assert workers, "the downloads ran in worker processes"
        time.sleep(3)
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists() and
                "Z" not in (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0]] == []

        assert subprocess.run(command, capture_output=True).returncode == 0
    finally:
        httpd.shutdown()
    with sqlite3.connect(catalog) as con:
        status = dict(con.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        rows = con.execute("SELECT sha256, path FROM images").fetchall()
    assert status == {"downloaded": N_URLS}
    run_dir = tmp_path / "run"
    files = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "images").rglob("*") if p.is_file())
    assert files == sorted(path for _, path in rows) and len(rows) == N_URLS  # each image once, no temporaries
    paths = {url: url.removeprefix(base) for url in done_at_kill}
    assert all(Host.hits[paths[url]] == 1 for url in done_at_kill)  # nothing that succeeded is fetched again
    assert sum(Host.hits.values()) < N_URLS + 100  # only what was in flight at the kill is fetched twice
