"""The noise stage on real photographs with known label noise (Imagenette, 25 % of train labels flipped).

Scored exactly: precision and recall of the flagged set against the flips. Weights come from a local
state_dict file, the option an air-gapped lab uses for ImageNet weights.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import IMAGENETTE_MINI, MOBILENET, pipeline_dict, write_pipeline

from curate import wordnet
from curate.config import load_config
from curate.runner import open_run, run_stage
from curate.stages.noise import NoiseStage
from curate.wordnet_data import ensure_wordnet

pytestmark = pytest.mark.skipif(not (IMAGENETTE_MINI.is_dir() and MOBILENET.is_file()),
                                reason="evaluation data (shared/eval, shared/models) not present")


def load_rows() -> list[dict]:
    with (IMAGENETTE_MINI / "noisy_imagenette.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["is_valid"] == "False"]


def ingest(ctx, rows: list[dict]) -> dict[str, bool]:
    """Store each train image and give it its noisy label; return sha256 -> is the label wrong."""
    ensure_wordnet(use_downloader=False)
    wnids = sorted({r["path"].split("/")[1] for r in rows})
    ctx.catalog.upsert_synsets([wordnet.describe(wordnet.synset_from_id(w)) for w in wnids])
    flipped, images, labels = {}, [], []
    for row in rows:
        image = ctx.store.put((IMAGENETTE_MINI / row["path"]).read_bytes(), max_side_px=256)
        images.append(image.as_row())
        labels.append({"sha256": image.sha256, "wnid": row["noisy_labels_25"], "method": "majority",
                       "p_true": 1.0, "accepted": 1, "n_votes": 3})
        flipped[image.sha256] = row["noisy_labels_25"] != row["path"].split("/")[1]
    ctx.catalog.add_images(images)
    ctx.catalog.replace_labels("majority", labels)
    return flipped


def test_noise_stage_finds_the_flipped_labels(tmp_path: Path):
    data = pipeline_dict(IMAGENETTE_MINI, tmp_path / "run")
    data["candidates"]["sources"][0] = {"type": "local", "root": str(IMAGENETTE_MINI)}  # unused here
    data["noise"] = {"backbone": "mobilenet_v2", "weights": str(MOBILENET), "folds": 5, "batch_size": 50}
    with open_run(load_config(write_pipeline(tmp_path / "p.yaml", data)), progress=False) as ctx:
        check_noise_stage(ctx, tmp_path)


def check_noise_stage(ctx, tmp_path: Path) -> None:
    flipped = ingest(ctx, load_rows())
    assert sum(flipped.values()) == 269

    result = run_stage(NoiseStage(), ctx)
    flagged = ctx.catalog.issue_shas("label")
    true_pos = sum(flipped[s] for s in flagged)
    precision, recall = true_pos / len(flagged), true_pos / sum(flipped.values())
    print(f"\nimagenette-mini 25 % noise: flagged {len(flagged)}, precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.8 and recall >= 0.8
    assert result.stats["label_issues"] == len(flagged)
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    assert len(ctx.catalog.embeddings(result.stats["embeddings"], list(flipped))) == 1000

    again = run_stage(NoiseStage(), ctx)  # same labels and config: nothing recomputed
    assert again.nothing_to_do
