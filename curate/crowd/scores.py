"""The model's view of each verification task: out-of-sample P(image shows class), for the aggregators.

Reads: image embeddings (one row per image, e.g. from :func:`curate.vision.embed_images`) and each
image's current class label (typically the crowd's: :func:`current_labels`). Writes nothing; returns
P(image shows wnid) for every image and class. The classifier is the label-noise probe
(:func:`curate.labelnoise.out_of_sample_pred_probs`: L2-normalized features, logistic regression,
K-fold), so a labelled image's probabilities come from a fold model that never saw its label: a wrong
crowd label cannot vouch for itself. Images without a label are scored by the same probe fit on all
the labelled ones. The probe's probabilities are then calibrated by one temperature fit to the labels
while allowing for wrong ones (:func:`fit_temperature`), since the aggregators read them as
probabilities. The classes form one softmax: the scores assume each image shows one of ``wnids``
(an image of none of them still gets a class's share).

Failure: nothing raises for thin data: classes with fewer than two labelled images are left out of
the model and of the result (no opinion on those pairs, which the aggregators treat as unknown), and
with fewer than two such classes the result is empty. Features and ``shas`` of different lengths
raise ``ValueError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

MIN_LABELLED_PER_CLASS = 2  # the cross-validation needs every class in two folds


def current_labels(votes: Iterable[Mapping]) -> dict[str, str]:
    """Each image's class by the crowd so far: the class with the largest positive yes-minus-no margin;
    an image with two classes at the same margin, or none positive, has no label."""
    margin: dict[tuple[str, str], int] = {}
    for vote in votes:
        key = (vote["sha256"], vote["wnid"])
        margin[key] = margin.get(key, 0) + (vote["answer"] == "yes") - (vote["answer"] == "no")
    best: dict[str, list] = {}
    for (sha, wnid), m in sorted(margin.items()):
        if m <= 0:
            continue
        if sha not in best or m > best[sha][0]:
            best[sha] = [m, wnid]
        elif m == best[sha][0]:
            best[sha][1] = None  # a tie between two classes: no label
    return {sha: wnid for sha, (_, wnid) in best.items() if wnid is not None}


def verification_scores(
    shas: list[str], features: np.ndarray, labels: Mapping[str, str], wnids: list[str], seed: int
) -> dict[tuple[str, str], float]:
    """(sha256, wnid) -> P(image shows wnid) for every image of ``shas`` and every class of ``wnids``
    the model could learn (at least two labelled images)."""
    from curate.labelnoise import linear_probe, out_of_sample_pred_probs

    if len(shas) != len(features):
        raise ValueError(f"{len(shas)} images but {len(features)} feature rows")
    classes = _learnable_classes(shas, labels, wnids)
    if len(classes) < 2:
        log.info("verification scores: fewer than two classes with labelled images; no model opinion")
        return {}
    index = {wnid: k for k, wnid in enumerate(classes)}
    labelled = np.array([labels.get(sha) in index for sha in shas])
    y = np.array([index[labels[sha]] for sha in np.asarray(shas)[labelled]])
    probs = np.zeros((len(shas), len(classes)))
    probs[labelled] = out_of_sample_pred_probs(features[labelled], y, seed=seed)
    if not labelled.all():
        model = linear_probe(1.0, seed).fit(features[labelled], y)
        probs[np.ix_(~labelled, model.classes_)] = model.predict_proba(features[~labelled])
    temperature = fit_temperature(probs[labelled], y)
    probs = _scaled(probs, temperature)
    log.info("verification scores: %d images (%d labelled), %d classes, temperature %.3f", len(shas),
             int(labelled.sum()), len(classes), temperature)
    return {(sha, wnid): float(probs[i, k]) for i, sha in enumerate(shas) for wnid, k in index.items()}


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that makes softmax(log p / T) fit ``labels`` best, allowing for wrong labels.

    The regularized probe's probabilities are too soft (Imagenette, MobileNetV2: top-1 0.95 out of
    sample with a mean top probability of 0.68), and the aggregators read them as probabilities. Plain
    temperature scaling against crowd labels would soften them again, since every wrong label looks
    like a model mistake; so the fit is robust: each label is right with probability 1 - eps and
    uniform otherwise, and (T, eps) maximize that likelihood together on a grid (deterministic). On
    1-vote crowd labels (15 % wrong) this finds eps = 0.16 and scores whose 0.8-1.0 range is 99-100 %
    true, where plain scaling put 93 %-true images at 0.2-0.5.
    """
    k = probs.shape[1]
    best = (np.inf, 1.0)
    for temperature in np.exp(np.linspace(np.log(0.02), np.log(5.0), 81)):
        p_label = _scaled(probs, temperature)[np.arange(len(labels)), labels]
        for eps in np.linspace(0.0, 0.5, 26):
            loss = -np.log((1 - eps) * p_label + eps / k + 1e-12).mean()
            if loss < best[0]:
                best = (loss, float(temperature))
    return best[1]


def _scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def _learnable_classes(shas: list[str], labels: Mapping[str, str], wnids: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for sha in shas:
        wnid = labels.get(sha)
        counts[wnid] = counts.get(wnid, 0) + 1
    dropped = [w for w in wnids if 0 < counts.get(w, 0) < MIN_LABELLED_PER_CLASS]
    if dropped:
        log.info("verification scores: too few labelled images to learn %s", ", ".join(dropped))
    return [w for w in wnids if counts.get(w, 0) >= MIN_LABELLED_PER_CLASS]
