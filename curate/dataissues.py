"""Issues beside wrong labels, found by cleanlab's ``Datalab`` on the same embeddings: outliers, near
duplicates, and whether the data is independent and identically distributed (non-IID).

Reads: a feature matrix (one row per image) and the given integer labels; ``order`` says in which order
the images were collected (the non-IID test looks for structure along it). Writes nothing; returns one
row per (image, issue) for ``outlier`` and ``near_duplicate`` (Datalab's scores: 0..1, lower is more
severe; near duplicates carry the id of their set) and one summary per dataset-level check.
On failure: too few images for Datalab's neighbour graph (fewer than ``MIN_IMAGES``) returns no issues
and says so in the checks; other errors propagate (the calling stage reports them).

Why the order matters: curate collects class by class (one synset's searches, then the next), so the
images in collection order are grouped by class and Datalab's order test would always fire. The test
is run on the images with the classes spread evenly, each class in its own collection order: what it can
then find is drift along the collection (later search pages, one source's batch), which is what an
analyst wants to know.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CHECKS = ("outlier", "near_duplicate", "non_iid")
MIN_IMAGES = 20  # Datalab's k-NN graph uses k = 10 neighbours; below twice that its scores mean little
NON_IID_P = 0.05  # Datalab flags the dataset as non-IID below this p-value


@dataclass
class DataIssues:
    # one row per (image, issue): position (row of the feature matrix), kind, score, group
    issues: pd.DataFrame
    # dataset-level checks: name -> {"score": float, "summary": str}
    checks: dict[str, dict] = field(default_factory=dict)


def find_data_issues(
    features: np.ndarray,
    labels: np.ndarray,
    order: Sequence[int] | None = None,
    checks: Sequence[str] = CHECKS,
) -> DataIssues:
    """Datalab's outlier, near-duplicate and non-IID checks on L2-normalized ``features``."""
    empty = pd.DataFrame(columns=["position", "kind", "score", "group"])
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown Datalab checks {unknown}; known: {', '.join(CHECKS)}")
    if not checks:
        return DataIssues(empty)
    if len(features) < MIN_IMAGES:
        skipped = f"skipped: {len(features)} images, Datalab needs {MIN_IMAGES}"
        return DataIssues(empty, {"datalab": {"score": float("nan"), "summary": skipped}})
    permutation = _interleaved(labels, order)
    lab = _run_datalab(_normalized(features)[permutation], np.asarray(labels)[permutation], checks)
    frames = [_per_image(lab, kind, permutation) for kind in ("outlier", "near_duplicate") if kind in checks]
    issues = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else empty
    found = {kind: _check_summary(lab, kind) for kind in checks}
    log.info("Datalab: %s", ", ".join(f"{k} {v['summary']}" for k, v in found.items()))
    return DataIssues(issues, found)


def _run_datalab(features: np.ndarray, labels: np.ndarray, checks: Sequence[str]):
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=features, issue_types={kind: {} for kind in checks})
    return lab


def _per_image(lab, kind: str, permutation: np.ndarray) -> pd.DataFrame:
    """Datalab's flagged rows of ``kind``, mapped back to the caller's row order."""
    found = lab.get_issues(kind)
    flagged = found[found[f"is_{kind}_issue"]]
    groups = _near_duplicate_groups(flagged) if kind == "near_duplicate" else {}
    return pd.DataFrame({
        "position": permutation[flagged.index.to_numpy()],
        "kind": kind,
        "score": flagged[f"{kind}_score"].to_numpy(dtype=float),
        "group": [groups.get(i, np.nan) for i in flagged.index],
    })


def _near_duplicate_groups(flagged: pd.DataFrame) -> dict[int, int]:
    """Datalab row -> id of its near-duplicate set (connected through ``near_duplicate_sets``), numbered
    in order of each set's first row."""
    parent = {int(i): int(i) for i in flagged.index}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, others in zip(flagged.index, flagged["near_duplicate_sets"], strict=True):
        for j in others:
            if int(j) in parent:
                parent[find(int(j))] = find(int(i))
    ids: dict[int, int] = {}
    return {i: ids.setdefault(find(i), len(ids) + 1) for i in sorted(parent)}


def _check_summary(lab, kind: str) -> dict:
    if kind == "non_iid":
        p_value = float(lab.get_info("non_iid")["p-value"])
        verdict = ("the images' features drift along the collection order (a query, page or source brings "
                   "other pictures than the ones before it)" if p_value < NON_IID_P
                   else "no sign of drift along the collection order")
        return {"score": p_value, "summary": f"p-value {p_value:.3g}: {verdict}"}
    found = lab.get_issues(kind)
    count = int(found[f"is_{kind}_issue"].sum())
    score = float(lab.get_issue_summary(kind)["score"].iloc[0])
    return {"score": score, "summary": f"{count} image{'' if count == 1 else 's'} flagged (dataset score {score:.3f})"}


def _interleaved(labels: np.ndarray, order: Sequence[int] | None) -> np.ndarray:
    """Row positions with the classes spread evenly (each image at its class's fraction of the way
    through its collection), each class in collection ``order``."""
    labels = np.asarray(labels)
    ranked = np.arange(len(labels)) if order is None else np.asarray(order, dtype=int)
    fraction = np.empty(len(labels))
    for k in np.unique(labels):
        members = ranked[labels[ranked] == k]
        fraction[members] = (np.arange(len(members)) + 0.5) / len(members)
    return ranked[np.argsort(fraction[ranked], kind="stable")]


def _normalized(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.where(norms == 0, 1.0, norms)).astype(np.float32)
