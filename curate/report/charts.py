"""The report's pictures: estimated noise rate per class (bars) and cleanlab's confident joint (heatmap).

Reads: the class summary and the confident joint (counts, given class x suggested class). Writes one PNG
each, with matplotlib's Figure API (no pyplot: no global state, safe in worker threads). Class names
come from the web (WordNet lemmas, or an audited dataset's folders): ``$`` is escaped so a name can
never switch matplotlib into math mode and fail the report. Big class sets are cut to the classes that
matter (noisiest, most confused); the tables beside the picture hold every class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

MAX_BARS = 40  # a 1,000-class bar chart is a poster nobody reads; the table has them all
MAX_HEATMAP_CLASSES = 30
MAX_ANNOTATED_CLASSES = 15  # counts written in the cells up to this many classes, unreadable beyond
LABEL_CHARS = 24


def axis_label(name: str, wnid: str) -> str:
    """``name (wnid)``, the name shortened to fit; ``$`` escaped (matplotlib would read math in it)."""
    short = name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"
    return (short if name == wnid else f"{short} ({wnid})").replace("$", r"\$")


def write_noise_rate_chart(path, classes: pd.DataFrame) -> int:
    """Horizontal bars of the estimated noise rate, noisiest on top; returns how many classes it shows."""
    rows = classes.sort_values("estimated_noise_rate", ascending=False, kind="stable").head(MAX_BARS).iloc[::-1]
    fig = Figure(figsize=(7, max(2.0, 0.28 * len(rows) + 0.9)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    labels = [axis_label(str(n), str(w)) for n, w in zip(rows["name"], rows["label"], strict=True)]
    ax.barh(range(len(rows)), rows["estimated_noise_rate"], color="#c0392b")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("estimated noise rate (fraction of given labels that are wrong)")
    top = float(rows["estimated_noise_rate"].max()) if len(rows) else 0.0
    ax.set_xlim(0, max(0.05, top * 1.1))
    ax.tick_params(axis="y", labelsize=8)
    fig.savefig(path)
    return len(rows)


def heatmap_classes(joint: pd.DataFrame) -> list[str]:
    """All classes when few, else those with the most images moved in or out (off-diagonal mass)."""
    if len(joint) <= MAX_HEATMAP_CLASSES:
        return list(joint.index)
    off = joint.to_numpy(dtype=float, copy=True)
    np.fill_diagonal(off, 0.0)
    mass = pd.Series(off.sum(axis=0) + off.sum(axis=1), index=joint.index)
    keep = set(mass.sort_values(ascending=False, kind="stable").index[:MAX_HEATMAP_CLASSES])
    return [c for c in joint.index if c in keep]


def write_joint_heatmap(path, joint: pd.DataFrame, names: dict[str, str]) -> int:
    """Given class (rows) vs suggested class (columns): off-diagonal cells in reds (images that look
    mislabelled), the diagonal in grey (kept labels). Returns how many classes it shows."""
    shown = heatmap_classes(joint)
    counts = joint.loc[shown, shown].to_numpy(dtype=float)
    k = len(shown)
    fig = Figure(figsize=(min(5.0 + 0.4 * k, 16.0), min(4.0 + 0.36 * k, 15.0)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    diagonal = np.eye(k, dtype=bool)
    off = np.ma.masked_array(counts, mask=diagonal)
    image = ax.imshow(off, cmap="Reds", vmin=0, vmax=max(1.0, float(off.max() if off.count() else 0.0)))
    ax.imshow(np.ma.masked_array(np.ones_like(counts), mask=~diagonal), cmap=ListedColormap(["#d9d9d9"]))
    labels = [axis_label(names.get(w, w), w) for w in shown]
    ax.set_xticks(range(k), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("suggested class (out-of-sample classifier)")
    ax.set_ylabel("given class")
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate(ax, counts, float(off.max() if off.count() else 0.0))
    ax.set_title("off the diagonal: images that look mislabelled", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="images", ticks=MaxNLocator(integer=True))
    fig.savefig(path)
    return k


def _annotate(ax, counts: np.ndarray, off_max: float) -> None:
    whole = bool(np.allclose(counts, np.round(counts)))
    for (i, j), value in np.ndenumerate(counts):
        if value == 0 and i != j:
            continue
        dark = i != j and off_max > 0 and value > 0.6 * off_max
        ax.text(j, i, f"{value:.0f}" if whole else f"{value:.1f}", ha="center", va="center", fontsize=7,
                color="white" if dark else "#1f1f1f")
