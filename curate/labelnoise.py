"""Label-noise estimation with cleanlab on backbone embeddings.

Reads: a feature matrix (one row per image, e.g. from :func:`curate.vision.embed_images`), or several
views of each image as an (N, V, D) array (``embed_images(..., regions=True)``), and the given integer
labels 0..K-1. Writes nothing; returns out-of-sample predicted probabilities from a
K-fold logistic regression, then cleanlab's verdict per image (``given_label``, ``predicted_label``,
``label_score``, ``is_label_issue``, ``issue_rank``) and per class (estimated noise rate, label
quality). On failure: inputs of the wrong shape, labels outside 0..K-1, or a class with fewer than
two images raise ``ValueError`` with the reason; the calling stage turns it into a stage error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cleanlab.count
import cleanlab.dataset
import cleanlab.filter
import cleanlab.rank
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

MIN_PER_CLASS = 2  # K-fold needs every class in at least two folds
MAX_ITER = 2000


@dataclass
class NoiseResult:
    # one row per sample, input order: given_label, predicted_label, label_score, is_label_issue, issue_rank
    table: pd.DataFrame
    # one row per class: label, n_given, n_label_issues, estimated_noise_rate, label_quality
    class_summary: pd.DataFrame
    overall_noise_rate: float  # cleanlab's estimate of the fraction of wrong given labels
    # (K, K) cleanlab's estimate of the joint distribution of given (rows) and true (columns) labels
    joint: np.ndarray | None = None
    pred_probs: np.ndarray | None = None  # (N, K) the out-of-sample probabilities the verdict used


# Measured on Imagenette-128 train (9,469 images, MobileNetV2 features, fastai's noisy labels at 5 / 25 / 50 %;
# benchmarks/noise.py), F1 of the flagged set:
#   1 round,  prune_by_class                                     0.929 / 0.969 / 0.976
#   1 round,  calibrated_count                                   0.952 / 0.975 / 0.975
#   2 rounds, calibrated_count (the second without the flags)    0.951 / 0.977 / 0.984
#   + region views (default; the probe trains on all five views,  0.961 / 0.981 / 0.983
#     an image's probabilities are the mean over its views)
# Region views (curate.vision.views) are the ordinary embedding and its four corner windows of the last
# feature map, from the same forward pass (44 against 47 images/s embedding on CPU). Their rows in the
# table above and in these experiments (Imagenette-128, MobileNetV2, F1 at 5 / 25 / 50 %):
#   windows scored by the probe of whole images, mean with the whole image  0.960 / 0.979 / 0.982
#   the same, max over windows instead of the mean                          0.951 / 0.977 / 0.982
#   probe trained on all views (kept)                                       0.962 / 0.980 / 0.984
#   nine 5 x 5 windows instead of four corners, trained on all views        0.964 / 0.979 / -
#   3 x 3 or 4 x 4 windows (too little of the image each)                   0.926-0.951 / 0.958-0.977 / -
#   + the mirrored image's five windows as five more views                  0.964 / 0.982 / 0.983
#     (twice the embedding time; not an option: noise.test_time_flip averages the mirror in instead)
# Also tried, no better: C 0.3 / 0.5 / 2 / 3 / 10, 10 folds, a third round, three fold seeds averaged,
# k-NN probabilities alone (F1 0.87-0.91 at 5 %) or averaged with the linear head, the ImageNet head's
# class probabilities as features, a fixed self-confidence threshold (best threshold differs per noise level),
# and other views of each image: the mirrored one averaged in (noise.test_time_flip: +0.001 to +0.003), the
# whole image resized to 224 px instead of the centre crop (0.962 / 0.976 / 0.983) or both views averaged
# (0.960 / 0.976 / 0.983): within this measurement's spread (0.01 of F1 at 5 % is about five images); an RBF
# SVM head beside the linear one (25 %: 0.974 alone, 0.976 averaged; four times slower).
DEFAULT_ROUNDS = 2
DEFAULT_FILTER = "calibrated_count"
FILTERS = ("calibrated_count", "prune_by_class", "prune_by_noise_rate", "both", "confident_learning",
           "predicted_neq_given")


def estimate_label_issues(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    n_folds: int = 5,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    filter_by: str = DEFAULT_FILTER,
    C: float = 1.0,  # noqa: N803
    progress: bool = False,
) -> NoiseResult:
    """Out-of-sample probabilities, then cleanlab's verdict; each further round refits the fold models
    without the labels the previous round flagged (they are still scored), so a class's probe learns
    from cleaner examples. The rounds help most where noise is common (F1 at 50 %: 0.976 -> 0.984)."""
    labels = _check_inputs(features, labels)
    flagged = None
    for round_ in range(rounds):
        pred_probs = out_of_sample_pred_probs(features, labels, n_folds=n_folds, seed=seed + round_, C=C,
                                              progress=progress, exclude=flagged)
        result = find_label_issues(labels, pred_probs, class_names, filter_by=filter_by, seed=seed)
        flagged = result.table["is_label_issue"].to_numpy()
        log.info("label issues, round %d of %d: %d flagged", round_ + 1, rounds, int(flagged.sum()))
    return result


def out_of_sample_pred_probs(
    features: np.ndarray,
    labels: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name for the inverse regularization strength
    progress: bool = False,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """(N, K) class probabilities where each row comes from the fold model that did not see it.

    ``exclude`` (boolean, one per row): rows left out of every fold's training set (a second round
    trains without the labels the first round flagged); they still get probabilities."""
    labels = _check_inputs(features, labels)
    views = features if features.ndim == 3 else features[:, None, :]
    keep = np.ones(len(labels), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    num_classes = int(labels.max()) + 1
    n_splits = _n_splits(labels, num_classes, n_folds)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(labels, labels)
    pred_probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    for train_idx, held_out_idx in tqdm(folds, total=n_splits, desc="cross-validate", disable=not progress):
        train_idx = _trainable(train_idx[keep[train_idx]], train_idx, labels)
        model = linear_probe(C, seed).fit(*_rows(views[train_idx], labels[train_idx]))
        pred_probs[np.ix_(held_out_idx, model.classes_)] = _mean_over_views(model, views[held_out_idx])
    log.info("out-of-sample probabilities: %d samples (%d views each), %d classes, %d folds",
             len(labels), views.shape[1], num_classes, n_splits)
    return pred_probs


def _rows(views: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every view of every image as a training row of its image's label."""
    n, v, d = views.shape
    return views.reshape(n * v, d), np.repeat(labels, v)


def _mean_over_views(model: Pipeline, views: np.ndarray) -> np.ndarray:
    n, v, d = views.shape
    return model.predict_proba(views.reshape(n * v, d)).reshape(n, v, -1).mean(axis=1)


def find_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    class_names: Sequence[str],
    filter_by: str = DEFAULT_FILTER,
    frac_noise: float = 1.0,
    seed: int = 0,
) -> NoiseResult:
    """cleanlab's label issues, ranked by self-confidence, with per-class noise estimates.

    ``filter_by="calibrated_count"`` (the default) flags the N images of lowest self-confidence, N being
    cleanlab's calibrated estimate of the number of wrong labels (``num_label_issues``,
    ``off_diagonal_calibrated``): cleanlab's count is sound while its per-class pruning order (by margin)
    loses where noise is rare (F1 at 5 %: 0.952 against 0.929 for ``prune_by_class``, table above).
    The other values are cleanlab's own filters.

    ``seed`` is accepted for symmetry with :func:`out_of_sample_pred_probs`: cleanlab's filters are
    deterministic, so the result depends only on ``labels`` and ``pred_probs``.
    """
    labels = np.asarray(labels)
    _check_pred_probs(labels, pred_probs, class_names)
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {', '.join(FILTERS)}; got {filter_by!r}")
    if filter_by == "calibrated_count":
        ranked = _lowest_self_confidence(labels, pred_probs, frac_noise)
    else:
        ranked = cleanlab.filter.find_label_issues(
            labels, pred_probs, filter_by=filter_by, frac_noise=frac_noise,
            return_indices_ranked_by="self_confidence", n_jobs=1,
        )
    table = _issue_table(labels, pred_probs, class_names, ranked)
    joint = cleanlab.count.estimate_joint(labels, pred_probs)
    summary = _class_summary(labels, pred_probs, class_names, joint, table)
    overall = float(1.0 - np.trace(joint))
    log.info("label issues: %d of %d flagged (seed %d); estimated noise rate %.3f",
             len(ranked), len(labels), seed, overall)
    return NoiseResult(table=table, class_summary=summary, overall_noise_rate=overall, joint=joint,
                       pred_probs=pred_probs)


def _lowest_self_confidence(labels: np.ndarray, pred_probs: np.ndarray, frac_noise: float) -> np.ndarray:
    """Indices of the ``frac_noise`` * N images of lowest P(given label), lowest first; N is cleanlab's
    calibrated count of wrong labels."""
    count = cleanlab.count.num_label_issues(labels, pred_probs, estimation_method="off_diagonal_calibrated")
    count = int(round(count * frac_noise))
    self_confidence = pred_probs[np.arange(len(labels)), labels]
    return np.argsort(self_confidence, kind="stable")[:count]


def _trainable(kept: np.ndarray, fold: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The fold's training rows without the excluded ones, except for classes that exclusion would
    empty (or leave with one image): those keep all their rows, so every class stays predictable."""
    counts = np.bincount(labels[kept], minlength=int(labels.max()) + 1)
    short = [k for k in np.unique(labels[fold]) if counts[k] < MIN_PER_CLASS]
    if not short:
        return kept
    return np.union1d(kept, fold[np.isin(labels[fold], short)])


def linear_probe(C: float, seed: int) -> Pipeline:  # noqa: N803
    """L2-normalize the embeddings, then logistic regression.

    No standardization on purpose: scaling every dimension to unit variance inflates the many
    low-variance ones, and the model then fits the noisy labels (Imagenette, mobilenet_v2 features,
    25% noise: out-of-sample accuracy against the true labels 0.96 with L2 only, 0.78 with L2+standardize).
    """
    return make_pipeline(Normalizer(norm="l2"), LogisticRegression(C=C, max_iter=MAX_ITER, random_state=seed))


def _check_inputs(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if features.ndim not in (2, 3) or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"need features (N, D) or (N, views, D) and labels (N,); got {features.shape} and "
                         f"{labels.shape}")
    if len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("labels must be a non-empty array of integers 0..K-1")
    return labels


def _n_splits(labels: np.ndarray, num_classes: int, n_folds: int) -> int:
    """min(n_folds, smallest class count), refusing classes too small to cross-validate."""
    counts = np.bincount(labels, minlength=num_classes)
    too_small = [k for k in range(num_classes) if counts[k] < MIN_PER_CLASS]
    if too_small:
        shown = ", ".join(f"{k} ({counts[k]} images)" for k in too_small[:10])
        raise ValueError(f"classes need at least {MIN_PER_CLASS} images for label-noise estimation: {shown}")
    return max(MIN_PER_CLASS, min(n_folds, int(counts.min())))


def _check_pred_probs(labels: np.ndarray, pred_probs: np.ndarray, class_names: Sequence[str]) -> None:
    if pred_probs.ndim != 2 or pred_probs.shape != (len(labels), len(class_names)):
        raise ValueError(
            f"pred_probs must be (N, K) = ({len(labels)}, {len(class_names)}); got {pred_probs.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must lie in 0..{len(class_names) - 1}")


def _issue_table(
    labels: np.ndarray, pred_probs: np.ndarray, class_names: Sequence[str], ranked: np.ndarray
) -> pd.DataFrame:
    names = np.asarray(class_names, dtype=object)
    issue_rank = np.full(len(labels), np.nan)
    issue_rank[ranked] = np.arange(1, len(ranked) + 1)
    return pd.DataFrame({
        "given_label": names[labels],
        "predicted_label": names[pred_probs.argmax(axis=1)],
        "label_score": cleanlab.rank.get_label_quality_scores(labels, pred_probs, method="self_confidence"),
        "is_label_issue": ~np.isnan(issue_rank),
        "issue_rank": issue_rank,
    })


def _class_summary(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    class_names: Sequence[str],
    joint: np.ndarray,
    table: pd.DataFrame,
) -> pd.DataFrame:
    ranked = cleanlab.dataset.rank_classes_by_label_quality(labels, pred_probs, joint=joint)
    ranked = ranked.set_index("Class Index").reindex(range(len(class_names)))
    flagged = table.groupby("given_label")["is_label_issue"].sum()
    return pd.DataFrame({
        "label": list(class_names),
        "n_given": np.bincount(labels, minlength=len(class_names)),
        "n_label_issues": [int(flagged.get(name, 0)) for name in class_names],
        "estimated_noise_rate": ranked["Label Noise"].to_numpy(),
        "label_quality": ranked["Label Quality Score"].to_numpy(),
    })
