"""Embedding throughput: curate's batched ``embed_images`` against a one-image-at-a-time baseline,
both measured in this run on the same images, backbone and device.

    python benchmarks/bench_embed.py [--images DIR] [--n 256] [--backbone mobilenet_v2] [--weights PATH]

Defaults read Imagenette from ../shared/eval/imagenette-mini and MobileNetV2 weights from
../shared/models when present (synthetic images and random weights otherwise). Prints images/s for
both and their ratio; on CUDA the batched path uses AMP and channels_last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from curate.vision.backbones import load_backbone
from curate.vision.embed import embed_images

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def images(folder: Path | None, n: int, scratch: Path) -> list[Path]:
    if folder and folder.is_dir():
        return sorted(folder.rglob("*.JPEG"))[:n]
    scratch.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = scratch / f"{i}.jpg"
        Image.effect_noise((320, 240), 30 + i % 60).convert("RGB").save(path)
        paths.append(path)
    return paths


@torch.inference_mode()
def baseline(paths: list[Path], backbone) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            x = backbone.transform(img.convert("RGB")).unsqueeze(0).to(backbone.device)
        backbone.model(x).float().cpu()
    return len(paths) / (time.perf_counter() - start)


def batched(paths: list[Path], backbone, batch_size: int, workers: int) -> float:
    start = time.perf_counter()
    embed_images(paths, backbone, batch_size=batch_size, num_workers=workers, progress=False)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED / "eval" / "imagenette-mini" / "train")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--backbone", default="mobilenet_v2")
    default_weights = SHARED / "models" / "mobilenet_v2_imagenet.pth"
    parser.add_argument("--weights", default=str(default_weights) if default_weights.is_file() else "none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    paths = images(args.images, args.n, ROOT / ".cache" / "bench_images")
    backbone = load_backbone(args.backbone, args.weights, "auto")
    device = torch.cuda.get_device_name(0) if backbone.device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    embed_images(paths[:8], backbone, batch_size=8, progress=False)  # warm-up
    base = baseline(paths, backbone)
    fast = batched(paths, backbone, args.batch_size, args.workers)
    print(f"device: {device}; backbone {backbone.key}; {len(paths)} images")
    print(f"baseline (1 image per forward): {base:8.1f} img/s")
    print(f"embed_images (batch {args.batch_size}, {args.workers} workers): {fast:8.1f} img/s")
    print(f"ratio: {fast / base:.2f}x")


if __name__ == "__main__":
    main()
