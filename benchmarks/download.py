"""Download throughput: curate's candidates stage against img2dataset, on one loopback image host.

A server process holds N distinct JPEGs (photo-like, a few tens of KB each by default, or web-sized
1.6-megapixel photos with ``--photos web``) and answers every request after 20-50 ms of added latency.
The same URL list is downloaded by ``curate run --only candidates`` (urls source; the run's synsets stage
is done beforehand, outside the timing,
images capped at 512 px, stored in the run's image store, every outcome in the catalog) and by
img2dataset (``--resize_mode keep_ratio_largest --image_size 512``, files output), at the same
concurrency, interleaved, in one session; each is timed as the whole command, start-up included.
Prints images/s for both, the images each stored, and the ratio.

    python benchmarks/download.py                      # 10,000 small JPEGs, 32 concurrent downloads
    python benchmarks/download.py --photos web -n 2000

img2dataset is not a dependency of curate: install it beside, in ``.venv-bench`` (``make bench-download``
does), or pass ``--img2dataset PATH``.
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CURATE = REPO / ".venv" / "bin" / "curate"
WNID = "n02084071"
SIZES = {"small": (500, 375), "web": (1600, 1000)}


def base_photos(kind: str, count: int = 24) -> list[bytes]:
    """Photo-like JPEGs: smooth noise, a gradient and some shapes, so that they compress like photos."""
    from PIL import Image, ImageDraw

    width, height = SIZES[kind]
    photos = []
    for seed in range(count):
        rng = random.Random(seed)
        img = Image.effect_noise((width // 8, height // 8), 60 + seed).convert("RGB")
        img = img.resize((width, height), Image.Resampling.BICUBIC)
        img = Image.blend(img, Image.linear_gradient("L").convert("RGB").resize((width, height)), 0.35)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            box = sorted(rng.sample(range(width), 2)) + sorted(rng.sample(range(height), 2))
            draw.ellipse((box[0], box[2], box[1], box[3]), fill=tuple(rng.randrange(256) for _ in range(3)))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        photos.append(out.getvalue())
    return photos


def distinct(photo: Image.Image, index: int) -> bytes:
    """A distinct picture per index (shapes of its own drawn over a base photo), so that near-duplicate
    detection keeps every one of them, as it would keep distinct web photos."""
    from PIL import ImageDraw

    rng = random.Random(index)
    img = photo.copy()
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rng.randrange(img.width), rng.randrange(img.height)
        size = rng.randrange(img.width // 6, img.width // 3)
        draw.ellipse((x - size, y - size, x + size, y + size), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def serve(kind: str, n: int, latency_ms: tuple[int, int], ready: multiprocessing.Queue) -> None:
    from PIL import Image

    photos = [Image.open(io.BytesIO(p)).convert("RGB") for p in base_photos(kind)]
    images = [distinct(photos[i % len(photos)], i) for i in range(n)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # As production servers do (nginx: tcp_nodelay on): without it, the body waits behind Nagle's
        # algorithm for the ACK of the headers, which a keep-alive client delays by 40 ms.
        disable_nagle_algorithm = True

        def do_GET(self):  # noqa: N802
            time.sleep(random.uniform(*latency_ms) / 1000)
            try:
                body = images[int(self.path.rsplit("/", 1)[-1].removesuffix(".jpg"))]
            except (ValueError, IndexError):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    ready.put((httpd.server_address[1], sum(map(len, images)) / n))
    httpd.serve_forever()


def write_lists(folder: Path, port: int, n: int) -> tuple[Path, Path]:
    import pandas as pd

    urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(n)]
    with (folder / "urls.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "wnid"])
        writer.writerows([u, WNID] for u in urls)
    pd.DataFrame({"url": urls}).to_parquet(folder / "urls.parquet")
    return folder / "urls.csv", folder / "urls.parquet"


def prepare_curate(folder: Path, url_csv: Path, n: int, concurrency: int) -> tuple[Path, Path]:
    """A pipeline and a run directory whose synsets stage is done (WordNet loading is not the download path)."""
    import yaml

    template = folder / "curate-template"
    pipeline = {
        "run": {"name": "bench", "dir": str(template)},
        "synsets": {"wnids": [WNID], "parent_in_gloss": False},
        "candidates": {
            "sources": [{"type": "urls", "path": str(url_csv), "max_per_query": n}],
            "max_per_class": n,
            "download": {"workers": concurrency, "per_host_workers": 0, "allow_private_networks": True,
                         "max_side_px": 512, "retries": 1},
        },
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    subprocess.run([str(CURATE), "run", str(path), "--only", "synsets", "--no-progress", "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    return path, template


def run_curate(folder: Path, pipeline: Path, template: Path) -> tuple[float, int]:
    """``curate run --only candidates`` on a fresh copy of the prepared run: search, download, store, catalog."""
    run_dir = folder / "curate-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    started = time.perf_counter()
    subprocess.run([str(CURATE), "run", str(pipeline), "--run-dir", str(run_dir), "--only", "candidates",
                    "--no-progress", "-q"], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    stored = sum(1 for _ in (run_dir / "images").rglob("*.jpg"))
    shutil.rmtree(run_dir)
    return seconds, stored


def run_img2dataset(binary: Path, folder: Path, url_parquet: Path, concurrency: int,
                    processes: int) -> tuple[float, int]:
    out = folder / "img2dataset-out"
    shutil.rmtree(out, ignore_errors=True)
    command = [str(binary), "--url_list", str(url_parquet), "--input_format", "parquet", "--url_col", "url",
               "--output_format", "files", "--output_folder", str(out), "--processes_count", str(processes),
               "--thread_count", str(concurrency // processes), "--image_size", "512", "--resize_mode",
               "keep_ratio_largest", "--resize_only_if_bigger", "True", "--encode_quality", "90",
               "--retries", "1", "--timeout", "20", "--enable_wandb", "False",
               "--number_sample_per_shard", "1000", "--distributor", "multiprocessing"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    stored = sum(1 for _ in out.rglob("*.jpg"))
    shutil.rmtree(out)
    return seconds, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--images", type=int, default=10_000)
    parser.add_argument("--photos", choices=sorted(SIZES), default="small")
    parser.add_argument("--concurrency", type=int, default=32, help="downloads in flight, both tools")
    parser.add_argument("--processes", type=int, default=2, help="img2dataset processes (curate: one per core)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, nargs=2, default=(20, 50))
    parser.add_argument("--img2dataset", type=Path, default=REPO / ".venv-bench" / "bin" / "img2dataset")
    args = parser.parse_args()

    ready: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(args.photos, args.images, tuple(args.latency_ms), ready),
                                     daemon=True)
    server.start()
    port, mean_bytes = ready.get(timeout=600)
    folder = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        url_csv, url_parquet = write_lists(folder, port, args.images)
        pipeline, template = prepare_curate(folder, url_csv, args.images, args.concurrency)
        print(f"{args.images} {args.photos} JPEGs of {mean_bytes / 1000:.0f} kB on average, "
              f"{args.latency_ms[0]}-{args.latency_ms[1]} ms latency, {args.concurrency} concurrent downloads")
        results: dict[str, list[float]] = {"curate": [], "img2dataset": []}
        have_i2d = args.img2dataset.is_file()
        if not have_i2d:
            print(f"img2dataset not found at {args.img2dataset}: install it with `make bench-download`")
        for repeat in range(args.repeats):
            seconds, stored = run_curate(folder, pipeline, template)
            results["curate"].append(stored / seconds)
            print(f"  run {repeat + 1}: curate       {stored:6d} stored in {seconds:6.1f} s = "
                  f"{stored / seconds:6.1f} img/s")
            if have_i2d:
                seconds, stored = run_img2dataset(args.img2dataset, folder, url_parquet, args.concurrency,
                                                  args.processes)
                results["img2dataset"].append(stored / seconds)
                print(f"  run {repeat + 1}: img2dataset  {stored:6d} stored in {seconds:6.1f} s = "
                      f"{stored / seconds:6.1f} img/s")
        curate_rate = statistics.median(results["curate"])
        print(f"curate: {curate_rate:.1f} img/s (median)")
        if results["img2dataset"]:
            i2d_rate = statistics.median(results["img2dataset"])
            print(f"img2dataset: {i2d_rate:.1f} img/s (median)")
            print(f"ratio curate / img2dataset: {curate_rate / i2d_rate:.2f}x")
    finally:
        server.terminate()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
