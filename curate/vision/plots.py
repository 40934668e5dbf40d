"""Charts of benchmark results: a training's loss and accuracy per epoch, and the learning curve.

Reads: a result's ``history`` rows (:func:`curate.vision.train.epoch_row`) or learning-curve points.
Writes: one PNG per call (matplotlib's object API, no global pyplot state), whole or not at all (drawn
to a temporary sibling, then ``os.replace``). On failure: an empty history or curve draws empty axes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_history(path: Path, title: str, history: Sequence[Mapping]) -> Path:
    """Training loss (left) and training / validation top-1 (right) per epoch."""
    fig = Figure(figsize=(8, 3.2), dpi=110, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", color="#34495e")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title=title)
    acc_ax.plot(epochs, [row["train_top1"] for row in history], marker="o", label="train top-1", color="#95a5a6")
    evaluated = [row for row in history if "val_top1" in row]
    for key, colour in (("val_top1", "#c0392b"), ("val_top5", "#e67e22")):
        acc_ax.plot([r["epoch"] for r in evaluated], [r[key] for r in evaluated], marker="o",
                    label=key.replace("_top", " top-"), color=colour)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_learning_curve(path: Path, curve: Mapping[str, Sequence[Mapping]], title: str = "learning curve") -> Path:
    """Validation top-1 against training images per class (log scale), one line per mode."""
    fig = Figure(figsize=(6, 4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for mode, points in curve.items():
        points = sorted(points, key=lambda p: p["samples_per_class"])
        ax.plot([p["samples_per_class"] for p in points], [p["top1"] for p in points], marker="o", label=mode)
    ax.set_xscale("log")
    counts = sorted({p["samples_per_class"] for points in curve.values() for p in points})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set(xlabel="training images per class", ylabel="validation top-1", ylim=(0, 1.02), title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
