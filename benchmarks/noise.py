"""Label-noise detection: curate's noise estimate against cleanlab's defaults, on the same features,
scored against known flips; and embedding throughput.

    python benchmarks/noise.py [--data DIR] [--weights PATH] [--backbone mobilenet_v2] [--noise 5 25 50]
                               [--test-time-flip] [--no-region-views] [--device auto] [--limit N]

Data: an Imagenette-style folder (``train/<wnid>/*.JPEG`` and ``noisy_imagenette.csv`` with fastai's
``noisy_labels_{5,25,50}`` columns; the folder is the true label). Defaults read
``../shared/eval/imagenette-128`` and ``../shared/models/mobilenet_v2_imagenet.pth`` (through the same
weights-from-a-file option a user has). For every noise level it scores the flagged set (precision,
recall, F1 against ``given != true``) of:

- ``curate``: :func:`curate.labelnoise.estimate_label_issues` with the noise stage's defaults (region
  views on: the embedding and its four corner windows, from one forward pass);
- ``cleanlab defaults``: ``cleanlab.classification.CleanLearning()`` (its default logistic regression,
  5 folds, ``prune_by_noise_rate``) on the same L2-normalized embeddings (view 0, the ordinary one);

on the whole train split and on a harder slice: the five classes a probe trained on the clean labels
confuses most with each other, as a five-class dataset (the images that are one of them and are given
one of them; a flip to or from another class leaves the slice, so its noise rate is about 4/9 of the
level's). Embeddings are cached under ``.cache/`` per
(images, backbone, weights, flip, region views); the first run prints the embedding throughput (images/s, JPEG
decoding included) with the device, and on CUDA also resnet50's at 224 px.
"""

from __future__ import annotations

import argparse
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from curate.labelnoise import DEFAULT_FILTER, DEFAULT_ROUNDS, estimate_label_issues, out_of_sample_pred_probs
from curate.vision.backbones import load_backbone
from curate.vision.embed import embed_images

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SLICE_SIZE = 5


def main() -> None:
    args = parse_args()
    train = read_split(args.data, args.limit)
    print(f"data: {args.data} ({len(train)} train images, {train['true'].nunique()} classes)")
    features = embeddings(args, train)
    rows = []
    for slice_name, names in slices(features, train, args.seed).items():
        for level in args.noise:
            rows += score_level(features, train, level, slice_name, names, args.seed)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print()
    ratios = table.pivot_table(index=["slice", "noise %"], columns="method", values="F1")
    ratios["curate / defaults"] = ratios["curate"] / ratios["cleanlab defaults"]
    print(ratios.to_string(float_format=lambda x: f"{x:.3f}"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "eval" / "imagenette-128")
    default_weights = SHARED / "models" / "mobilenet_v2_imagenet.pth"
    parser.add_argument("--weights", default=str(default_weights) if default_weights.is_file() else "imagenet")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--noise", type=int, nargs="+", default=[5, 25, 50])
    parser.add_argument("--test-time-flip", action="store_true")
    parser.add_argument("--no-region-views", dest="region_views", action="store_false",
                        help="one embedding per image (the noise stage's region_views: false)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use every n-th image only (0: all), for a quick look")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data / "noisy_imagenette.csv").is_file():
        parser.error(f"{args.data} has no noisy_imagenette.csv")
    return args


def read_split(data: Path, limit: int) -> pd.DataFrame:
    frame = pd.read_csv(data / "noisy_imagenette.csv")
    frame = frame[~frame["is_valid"].astype(bool)].reset_index(drop=True)
    frame["true"] = frame["path"].str.split("/").str[1]
    frame["file"] = [data / p for p in frame["path"]]
    return frame.iloc[:: limit or 1].reset_index(drop=True) if limit else frame


def embeddings(args: argparse.Namespace, train: pd.DataFrame) -> np.ndarray:
    backbone = load_backbone(args.backbone, args.weights, args.device)
    listing = hashlib.sha256("\n".join(train["path"]).encode()).hexdigest()[:12]
    views = f"{'+hflip' if args.test_time_flip else ''}{'+regions' if args.region_views else ''}"
    key = f"{backbone.key}{views}-{listing}".replace(":", "_")
    cache = ROOT / ".cache" / "bench-noise" / f"{key}.npy"
    if cache.is_file():
        print(f"embeddings: cached ({cache.name})")
        return np.load(cache)
    features, rate = timed_embedding(train["file"].tolist(), backbone, args, regions=args.region_views)
    print(f"embedding throughput: {rate:,.0f} images/s, {backbone.key} on {device_name(backbone.device)}, "
          f"batch {args.batch_size}, {args.workers} decoding workers{', + mirrored' if args.test_time_flip else ''}"
          f"{', + region views' if args.region_views else ''}")
    if backbone.device.type == "cuda":
        resnet = load_backbone("resnet50", "none", args.device)
        _, rate = timed_embedding(train["file"].tolist(), resnet, args, batch_size=256)
        print(f"embedding throughput: {rate:,.0f} images/s, resnet50 at 224 px (decoding included) on "
              f"{device_name(resnet.device)}, batch 256, {args.workers} decoding workers")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, features)
    return features


def timed_embedding(files, backbone, args, batch_size: int | None = None,
                    regions: bool = False) -> tuple[np.ndarray, float]:
    embed_images(files[:64], backbone, batch_size=32, progress=False)  # warm-up: kernels, caches
    start = time.perf_counter()
    features = embed_images(files, backbone, batch_size=batch_size or args.batch_size, num_workers=args.workers,
                            progress=False, hflip=args.test_time_flip,
                            regions=regions)
    return features, len(files) / (time.perf_counter() - start)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def slices(features: np.ndarray, train: pd.DataFrame, seed: int) -> dict[str, list[str]]:
    """All images, and those given one of the five classes most confused with each other on clean labels."""
    classes = sorted(train["true"].unique())
    y = train["true"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = out_of_sample_pred_probs(_first_view(features), y, seed=seed)
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, y, probs)
    np.fill_diagonal(confusion, 0)
    mutual = confusion + confusion.T
    chosen = [int(np.unravel_index(mutual.argmax(), mutual.shape)[0])]
    while len(chosen) < min(SLICE_SIZE, len(classes)):
        rest = [k for k in range(len(classes)) if k not in chosen]
        chosen.append(max(rest, key=lambda k: mutual[k, chosen].sum()))
    names = [classes[k] for k in sorted(chosen)]
    print(f"harder slice: {', '.join(names)}")
    return {"all": classes, f"confusable {len(names)}": names} if len(classes) > SLICE_SIZE else {"all": classes}


def score_level(features: np.ndarray, train: pd.DataFrame, level: int, slice_name: str, classes: list[str],
                seed: int) -> list[dict]:
    """Scores on the images that are, and are given, one of ``classes`` at this noise level."""
    given = train[f"noisy_labels_{level}"].to_numpy()
    inside = np.isin(given, classes) & np.isin(train["true"].to_numpy(), classes)
    features, given, true = features[inside], given[inside], train["true"].to_numpy()[inside]
    y = np.array([classes.index(g) for g in given])
    wrong = given != true
    rows = []
    start = time.perf_counter()
    ours = estimate_label_issues(features, y, classes, seed=seed).table["is_label_issue"].to_numpy()
    rows.append(scored("curate", ours, wrong, start, slice_name, level))
    start = time.perf_counter()
    rows.append(scored("cleanlab defaults", cleanlab_defaults(_first_view(features), y, seed), wrong, start,
                       slice_name, level))
    return rows


def _first_view(features: np.ndarray) -> np.ndarray:
    """The ordinary embedding: view 0 of region views, or the features themselves."""
    return features[:, 0] if features.ndim == 3 else features


def cleanlab_defaults(features: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from cleanlab.classification import CleanLearning

    normalized = features / np.linalg.norm(features, axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default LogisticRegression's convergence warnings
        return CleanLearning(seed=seed).find_label_issues(normalized, y)["is_label_issue"].to_numpy()


def scored(method: str, flagged: np.ndarray, wrong: np.ndarray, start: float, slice_name: str, level: int) -> dict:
    hits = int((flagged & wrong).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(wrong.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"slice": slice_name, "noise %": level, "method": method, "images": len(wrong), "wrong": int(wrong.sum()),
            "flagged": int(flagged.sum()), "precision": precision, "recall": recall, "F1": f1,
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    print(f"curate defaults: filter {DEFAULT_FILTER}, {DEFAULT_ROUNDS} rounds")
    main()
