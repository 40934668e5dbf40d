"""What curation buys, measured on Imagenette with fastai's noisy labels: the benchmark modes trained on
the noisy labels and on the labels after curate's noise decisions, and a learning curve.

    python benchmarks/train.py [--device auto|cpu|cuda] [--preset cpu|gpu] [--noise 25] [--out DIR] ...

1. Training images (``--train-per-class`` of each noisy class; all with ``--preset gpu``) get fastai's
   ``noisy_labels_<noise>``; the validation images (all, or ``--val-per-class``) keep their true labels.
2. The noise stage's decisions: the frozen backbone's embeddings, K-fold out-of-sample probabilities and
   cleanlab's label issues (:mod:`curate.labelnoise`, as the ``noise`` stage runs them); flagged images
   are left out, as the ``export`` stage does. Precision and recall of the flags against the true flips
   are printed.
3. ``linear_probe`` and ``finetune`` (curate's benchmark modes, through their registry) trained on the
   noisy and on the cleaned labels, scored on the same clean validation split.
4. The learning curve: the three modes on ``--samples-per-class`` images per class of the cleaned labels.

Prints tables and writes ``results.json``, ``learning_curve.png`` and per-training charts into ``--out``
(default ``.cache/bench_train``); checkpoints there let an interrupted run resume. Defaults read
../shared/eval/imagenette-128 and the MobileNetV2 state_dict in ../shared/models; the ``cpu`` preset is
sized for minutes on two cores, ``gpu`` for the full data at 224 px.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curate.labelnoise import estimate_label_issues
from curate.modes import MODES, Job, create_mode
from curate.vision.backbones import Backbone, load_backbone
from curate.vision.data import ImageData, Split, per_class_subset
from curate.vision.embed import embed_images
from curate.vision.plots import plot_history, plot_learning_curve

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
log = logging.getLogger("bench_train")

# Per preset: data sizes, image size and epochs. gpu: every image, 224 px, longer schedules.
# Per preset: data sizes (0: all), the fine-tuning's image size, epochs, how often to evaluate (0: at the end).
# Scratch trains at 128 px, the images' own size, in both. cpu: about 14 minutes on two shared cores with
# --threads 1; the whole validation split (3,925 images), so that a difference of 1 % is 39 images, not 5.
# cpu fine-tunes at 160 px and evaluates at 224 px: a network trained on random resized crops sees objects
# larger than a centre crop of the same size shows them, so it is best tested at a higher resolution
# (Touvron et al. 2019, "Fixing the train-test resolution discrepancy"). Cleaned labels, 100 per class,
# same run: linear probe 0.944; fine-tuning 4 epochs at 160/160 px 0.932, 160/224 0.944, 192/224 0.943,
# 6 epochs at 160/224 0.949. A later run with the noise stage's region-view flags: 0.942 on 754 cleaned
# images and 0.950 on 752 (the learning curve's 80 per class), probe 0.944 / 0.945: fine-tuning's spread
# between near-identical training sets (about +-0.4 points) is as large as its margin over the probe.
PRESETS = {
    "cpu": {"train_per_class": 100, "val_per_class": 0, "image_size_px": 160, "eval_image_size_px": 224,
            "batch_size": 32, "finetune_epochs": 6, "scratch_epochs": 8, "probe_epochs": 30, "val_every": 0,
            "samples_per_class": [5, 20, 80]},
    "gpu": {"train_per_class": 0, "val_per_class": 0, "image_size_px": 224, "eval_image_size_px": None,
            "batch_size": 128, "finetune_epochs": 10, "scratch_epochs": 40, "probe_epochs": 50, "val_every": 1,
            "samples_per_class": [5, 20, 80, 300, 900]},
}


@dataclass
class Labelled:
    """Imagenette's training images with their true and noisy labels, and the clean validation split."""

    class_names: list[str]
    train: Split  # noisy targets
    true_targets: list[int]
    val: Split


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "eval" / "imagenette-128")
    parser.add_argument("--noise", default="25", choices=["0", "1", "5", "25", "50"], help="fastai's noise level (%%)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    default_weights = SHARED / "models" / "mobilenet_v2_imagenet.pth"
    parser.add_argument("--weights", default=str(default_weights) if default_weights.is_file() else "imagenet")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: gpu on CUDA, else cpu")
    parser.add_argument("--train-per-class", type=int, help="0: all")
    parser.add_argument("--val-per-class", type=int, help="0: all")
    parser.add_argument("--image-size-px", type=int)
    parser.add_argument("--eval-image-size-px", type=int, help="fine-tuning's evaluation crop (default: the preset's)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--finetune-epochs", type=int)
    parser.add_argument("--scratch-epochs", type=int)
    parser.add_argument("--probe-epochs", type=int)
    parser.add_argument("--val-every", type=int, help="evaluate every N epochs (0: after the last)")
    parser.add_argument("--samples-per-class", type=int, nargs="*", help="learning-curve points; none: skip it")
    parser.add_argument("--curve-modes", nargs="+", default=["linear_probe", "finetune", "scratch"])
    parser.add_argument("--num-workers", type=int, help="image-decoding processes (default: 0 on CPU, 8 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core); on a "
                        "machine shared with other busy processes 1 avoids OpenMP threads waiting for each other")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench_train")
    parser.add_argument("--progress", action="store_true", help="progress bars per epoch")
    return parser


def resolve_settings(args: argparse.Namespace, device_type: str) -> argparse.Namespace:
    """Every unset size from the preset (``gpu`` on CUDA, ``cpu`` elsewhere); 0 means all images."""
    preset = PRESETS[args.preset or ("gpu" if device_type == "cuda" else "cpu")]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("train_per_class", "val_per_class"):
        if getattr(args, key) == 0:
            setattr(args, key, None)
    return args


def load_data(args: argparse.Namespace) -> Labelled:
    """Train images with noisy and true labels (a seeded per-class subset), and clean val images."""
    with (args.data / "noisy_imagenette.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    class_names = sorted({row["path"].split("/")[1] for row in rows})
    index = {wnid: i for i, wnid in enumerate(class_names)}
    train_rows = [r for r in rows if r["is_valid"] == "False"]
    noisy = [index[r[f"noisy_labels_{args.noise}"]] for r in train_rows]
    train = Split([args.data / r["path"] for r in train_rows], noisy, [r["path"] for r in train_rows])
    true = {r["path"]: index[r["path"].split("/")[1]] for r in train_rows}
    if args.train_per_class:
        train = per_class_subset(train, args.train_per_class, args.seed)
    val_rows = [r for r in rows if r["is_valid"] == "True"]
    val = Split([args.data / r["path"] for r in val_rows], [index[r["path"].split("/")[1]] for r in val_rows],
                [r["path"] for r in val_rows])
    if args.val_per_class:
        val = per_class_subset(val, args.val_per_class, args.seed)
    return Labelled(class_names, train, [true[key] for key in train.keys], val)


def embed_all(data: Labelled, backbone: Backbone, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Frozen-backbone features of every image by key, with region views (the noise stage's default):
    the noise decisions use every view, the linear probe view 0 (the ordinary embedding)."""
    paths, keys = data.train.paths + data.val.paths, data.train.keys + data.val.keys
    started = time.perf_counter()
    features = embed_images(paths, backbone, batch_size=64, num_workers=args.num_workers or 0,
                            progress=args.progress, regions=True)
    log.info("embedded %d images in %.1f s", len(paths), time.perf_counter() - started)
    return dict(zip(keys, features, strict=True))


def noise_decisions(data: Labelled, features: dict[str, np.ndarray], seed: int) -> tuple[Split, dict]:
    """The cleaned training split (cleanlab's label issues left out) and the flags' precision/recall."""
    x = np.stack([features[k] for k in data.train.keys])
    y = np.asarray(data.train.targets)
    flagged = estimate_label_issues(x, y, data.class_names, seed=seed).table  # the noise stage's defaults
    is_issue = flagged["is_label_issue"].to_numpy()
    wrong = y != np.asarray(data.true_targets)
    hits = int((is_issue & wrong).sum())
    stats = {"train": len(y), "wrong_labels": int(wrong.sum()), "flagged": int(is_issue.sum()),
             "precision": hits / max(1, int(is_issue.sum())), "recall": hits / max(1, int(wrong.sum())),
             "wrong_labels_after_cleaning": int((wrong & ~is_issue).sum())}
    return data.train.subset([i for i in range(len(y)) if not is_issue[i]]), stats


def mode_settings(mode: str, args: argparse.Namespace):
    """The mode's Config at this benchmark's sizes."""
    if mode == "linear_probe":
        return MODES.get(mode).Config(epochs=args.probe_epochs)
    common = {"batch_size": args.batch_size, "num_workers": args.num_workers, "val_every": args.val_every}
    if mode == "finetune":
        return MODES.get(mode).Config(epochs=args.finetune_epochs, image_size_px=args.image_size_px,
                                      eval_image_size_px=args.eval_image_size_px, **common)
    return MODES.get(mode).Config(epochs=args.scratch_epochs, **common)


def train(mode: str, data: ImageData, backbone: Backbone, name: str, args: argparse.Namespace) -> dict:
    job = Job(data, backbone, args.out / "checkpoints" / f"{name}.pt", label=name, seed=args.seed,
              progress=args.progress)
    result = create_mode(mode_settings(mode, args)).run(job)
    if result.get("history"):
        plot_history(args.out / f"{name}.png", name, result["history"])
    k = result["k_top5"]
    print(f"  {name:<34} train {result['n_train']:>5}  top-1 {result['top1']:.3f}  top-{k} {result['top5']:.3f}"
          f"  ({result['seconds']:.0f} s)", flush=True)
    return result


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, args.weights, args.device)
    args = resolve_settings(args, backbone.device.type)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data(args)
    print(f"device {backbone.device} ({torch.get_num_threads()} CPU threads); backbone {backbone.key}; "
          f"{len(data.train)} train images ({args.noise} % noisy labels), {len(data.val)} clean val images; "
          f"fine-tuning at {args.image_size_px} px", flush=True)
    features = embed_all(data, backbone, args)
    cleaned, noise = noise_decisions(data, features, args.seed)
    print(f"noise decisions: {noise['flagged']} flagged of {noise['train']} ({noise['wrong_labels']} wrong labels): "
          f"precision {noise['precision']:.3f}, recall {noise['recall']:.3f}; "
          f"{noise['wrong_labels_after_cleaning']} wrong labels left", flush=True)

    def embed(split: Split) -> np.ndarray:
        return np.stack([features[k][0] for k in split.keys])

    noisy_data = ImageData(data.class_names, data.train, data.val, embed)
    cleaned_data = noisy_data.with_train(cleaned)
    print("noisy vs cleaned labels, on the clean val split:")
    comparison = {f"{mode}.{labels}": train(mode, d, backbone, f"{mode}.{labels}", args)
                  for mode in ("linear_probe", "finetune") for labels, d in (("noisy", noisy_data),
                                                                                ("cleaned", cleaned_data))}
    curve = learning_curve(cleaned_data, backbone, args) if args.samples_per_class else {}
    write_results(args, backbone, noise, comparison, curve, time.perf_counter() - started)


def learning_curve(data: ImageData, backbone: Backbone, args: argparse.Namespace) -> dict[str, list[dict]]:
    print(f"learning curve (cleaned labels), images per class {args.samples_per_class}:")
    curve: dict[str, list[dict]] = {}
    for mode in args.curve_modes:
        for n in args.samples_per_class:
            subset = data.with_train(per_class_subset(data.train, n, args.seed))
            result = train(mode, subset, backbone, f"learning_curve.{mode}.{n}", args)
            curve.setdefault(mode, []).append({"samples_per_class": n, "n_train": result["n_train"],
                                               "top1": result["top1"], "top5": result["top5"],
                                               "seconds": result["seconds"]})
    plot_learning_curve(args.out / "learning_curve.png", curve, title=f"learning curve ({backbone.key})")
    return curve


def write_results(args, backbone, noise, comparison, curve, seconds) -> None:
    print("\n| mode | labels | train images | top-1 | top-5 |\n|---|---|---|---|---|")
    for name, r in comparison.items():
        mode, labels = name.split(".")
        print(f"| {mode} | {labels} | {r['n_train']} | {r['top1']:.3f} | {r['top5']:.3f} |")
    if curve:
        points = args.samples_per_class
        print("\n| mode | " + " | ".join(f"{n}/class" for n in points) + " |\n" + "|---" * (len(points) + 1) + "|")
        for mode, rows in curve.items():
            print(f"| {mode} | " + " | ".join(f"{p['top1']:.3f}" for p in rows) + " |")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {"settings": settings, "device": str(backbone.device), "backbone": backbone.key, "noise": noise,
               "comparison": comparison, "learning_curve": curve, "seconds": round(seconds, 1)}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2))
    print(f"\n{seconds:.0f} s in all; results in {args.out}")


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main(get_args_parser().parse_args()))
