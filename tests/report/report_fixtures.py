"""A small audited dataset as the noise stage hands it to the report: three classes whose names, captions
and sources carry hostile HTML, label issues, outliers, two near-duplicate groups, a confident joint,
dataset checks and annotators. Every image is a tiny PNG drawn here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from PIL import Image

from curate.report.noise_report import write_noise_report

PWN = "window.__pwned=1"
HOSTILE = [
    f"<script>{PWN}</script>",
    f'<img src=x onerror="{PWN}">',
    f'"><svg onload={PWN}>',
    f"</style></script><script>{PWN}</script>",
    f"' onmouseover='{PWN}' x='",
    "{{ 7*7 }} =HYPERLINK(\"http://evil.example\") $x^2$",
]
TENCH, SPRINGER, CASSETTE = "n01440764", "n02102040", "n02979186"
CLASS_NAMES = {TENCH: f"tench <script>{PWN}</script>", SPRINGER: f'<img src=x onerror="{PWN}">',
               CASSETTE: "cassette $x^2$ player"}
COLOURS = {TENCH: (200, 60, 40), SPRINGER: (40, 160, 60), CASSETTE: (50, 70, 200)}
PER_CLASS = 4
# images (by position) of the issues: two outliers, a near-duplicate pair across classes (tench, cassette),
# one within a class (springer), and an issue of a kind nobody planned for
ISSUE_ROWS = [3, 7, 1, 9, 4, 6, 11]


def draw_images(folder: Path) -> list[tuple[str, str, Path]]:
    """(sha256, given wnid, path) of four small PNGs per class."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for c, (wnid, colour) in enumerate(COLOURS.items()):
        for i in range(PER_CLASS):
            path = folder / f"{wnid}_{i}.png"
            Image.new("RGB", (60 + 10 * i, 40 + 5 * c), tuple(min(255, v + 12 * i) for v in colour)).save(path)
            rows.append((hashlib.sha256(path.read_bytes()).hexdigest(), wnid, path))
    return rows


def report_inputs(image_dir: Path) -> dict:
    """Keyword arguments of ``write_noise_report`` (all but ``out_dir``)."""
    images = draw_images(image_dir)
    shas = [s for s, _, _ in images]
    given = [w for _, w, _ in images]
    predicted = list(given)
    predicted[0], predicted[5], predicted[10] = SPRINGER, CASSETTE, TENCH  # one flip per class
    flagged = {0: 1.0, 5: 2.0, 10: 3.0}
    table = pd.DataFrame({
        "sha256": shas, "given_label": given, "given_name": [CLASS_NAMES[w] for w in given],
        "predicted_label": predicted, "predicted_name": [CLASS_NAMES[w] for w in predicted],
        "label_score": [0.05 if i in flagged else 0.9 for i in range(len(shas))],
        "is_label_issue": [i in flagged for i in range(len(shas))],
        "issue_rank": [flagged.get(i, float("nan")) for i in range(len(shas))],
        "source": [HOSTILE[i % len(HOSTILE)] for i in range(len(shas))],
        "caption": [HOSTILE[(i + 1) % len(HOSTILE)] for i in range(len(shas))],
        "url": [f"javascript:{PWN}" if i % 2 else f"https://example.org/{i}.jpg" for i in range(len(shas))],
        "votes": ["4 yes / 1 no / 1 unsure"] * len(shas),
        "n_votes": [6] * len(shas),
        "path": [f"{w}/{p.name}" for _, w, p in images],
    })
    return {
        "table": table[[c for c in table.columns if c != "path"] + ["path"]],  # path last: the report moves it
        "class_summary": pd.DataFrame({
            "label": list(COLOURS), "name": [CLASS_NAMES[w] for w in COLOURS], "n_given": [PER_CLASS] * 3,
            "n_label_issues": [1, 1, 1], "estimated_noise_rate": [0.25, 0.30, 0.10],
            "label_quality": [0.7, 0.6, 0.9]}),
        "image_path": dict(zip(shas, (p for _, _, p in images), strict=True)).__getitem__,
        "title": f"Noise {HOSTILE[0]}",
        "meta": {"run": HOSTILE[1], "backbone": "resnet18:none"},
        "annotators": [{"annotator": HOSTILE[2], "votes": 40, "unsure": 3, "gold_votes": 10, "gold_accuracy": 0.9,
                        "median_s_per_task": 2.5},
                       {"annotator": "bob", "votes": 12, "unsure": 0, "gold_votes": 0, "gold_accuracy": None,
                        "median_s_per_task": None}],
        "issues": pd.DataFrame({
            "sha256": [shas[i] for i in ISSUE_ROWS],
            "given_label": [given[i] for i in ISSUE_ROWS],
            "kind": ["outlier", "outlier", "near_duplicate", "near_duplicate", "near_duplicate", "near_duplicate",
                     HOSTILE[0]],
            "score": [0.01, 0.2, 0.05, 0.06, 0.3, 0.31, 0.4],
            "group": [float("nan"), float("nan"), 0, 0, 1, 1, float("nan")],
        }),
        "joint": pd.DataFrame([[3, 1, 0], [0, 3, 1], [1, 0, 3]], index=list(COLOURS), columns=list(COLOURS)),
        "dataset_checks": {"non_iid": {"score": 0.73, "summary": "no sign of non-IID ordering"},
                           "class_imbalance": {"score": 0.9, "summary": HOSTILE[1]}},
    }


def write_rich_report(out_dir: Path, image_dir: Path, **overrides) -> Path:
    return write_noise_report(out_dir, **{**report_inputs(image_dir), **overrides})
