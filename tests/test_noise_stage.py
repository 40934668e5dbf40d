"""The noise stage's own behaviour: embeddings cached so a rerun embeds only new images, Datalab's
outliers and near duplicates stored and reported, CROWDLAB's annotator quality in the report."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CAT, DOG, MOUSE, draw_image, pipeline_dict, write_pipeline
from PIL import Image

import curate.vision.embed
from curate import wordnet
from curate.cli import main
from curate.config import load_config
from curate.runner import open_run, run_stage
from curate.stages.noise import NO_TRAINED_BACKBONE, NoiseStage
from curate.wordnet_data import ensure_wordnet

CLASSES = [(DOG, (200, 40, 40), "ellipse"), (CAT, (40, 40, 200), "rectangle"), (MOUSE, (40, 160, 40), "polygon")]


def ingest(ctx, per_class: int, first_seed: int = 0) -> list[str]:
    """Store ``per_class`` drawn images per class with their (correct) labels; return their sha256."""
    images, labels = [], []
    for k, (wnid, colour, shape) in enumerate(CLASSES):
        for i in range(per_class):
            picture = io.BytesIO()
            draw_image(colour, shape, seed=1000 * k + first_seed + i).save(picture, "PNG")
            image = ctx.store.put(picture.getvalue(), max_side_px=96)
            images.append(image.as_row())
            labels.append({"sha256": image.sha256, "wnid": wnid, "method": "majority", "p_true": 1.0,
                           "accepted": 1, "n_votes": 3})
    ctx.catalog.add_images(images)
    ctx.catalog.replace_labels("majority", [dict(r) for r in _labels(ctx)] + labels)
    return [row["sha256"] for row in images]


def _labels(ctx):
    return ctx.catalog.query("SELECT sha256, wnid, method, p_true, accepted, n_votes FROM labels")


@pytest.fixture
def ctx(tmp_path: Path, corpus: Path, seeded_weights: Path):
    ensure_wordnet(use_downloader=False)
    data = pipeline_dict(corpus, tmp_path / "run")
    data["noise"]["weights"] = str(seeded_weights)
    with open_run(load_config(write_pipeline(tmp_path / "p.yaml", data)), progress=False) as ctx:
        ctx.catalog.upsert_synsets([wordnet.describe(wordnet.synset_from_id(w)) for w, _, _ in CLASSES])
        yield ctx


def test_a_rerun_embeds_only_the_images_that_arrived_since(ctx, monkeypatch):
    embedded: list[int] = []
    real = curate.vision.embed.embed_images

    def counting(paths, *args, **kwargs):
        embedded.append(len(paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(curate.vision.embed, "embed_images", counting)
    first = ingest(ctx, per_class=6)
    run_stage(NoiseStage(), ctx)
    assert sum(embedded) == len(first) == 18

    embedded.clear()
    later = ingest(ctx, per_class=2, first_seed=100)
    result = run_stage(NoiseStage(), ctx)
    assert sum(embedded) == len(later) == 6  # only the new ones
    assert result.stats["images"] == 24
    assert result.stats["embeddings"] == f"{result.stats['backbone']}+regions"
    assert len(ctx.catalog.embeddings(result.stats["embeddings"], first + later)) == 24


def test_test_time_flip_and_region_views_are_cached_apart(ctx):
    shas = ingest(ctx, per_class=6)
    stats = run_stage(NoiseStage(), ctx).stats
    backbone, regions = stats["backbone"], stats["embeddings"]
    assert stats["views_per_image"] == 5
    ctx.config.noise.test_time_flip = True
    run_stage(NoiseStage(), ctx)
    flipped = ctx.catalog.embeddings(f"{backbone}+hflip+regions", shas)
    assert len(flipped) == 18
    assert flipped[shas[0]] != ctx.catalog.embeddings(regions, shas[:1])[shas[0]]

    ctx.config.noise.test_time_flip = False
    ctx.config.noise.region_views = False
    stats = run_stage(NoiseStage(), ctx).stats
    assert stats["embeddings"] == backbone and stats["views_per_image"] == 1
    one = np.frombuffer(ctx.catalog.embeddings(backbone, shas[:1])[shas[0]], dtype=np.float32)
    five = np.frombuffer(ctx.catalog.embeddings(regions, shas[:1])[shas[0]], dtype=np.float32)
    assert len(five) == 5 * len(one)
    assert np.allclose(five[: len(one)], one, atol=1e-4)  # view 0 is the ordinary embedding


def test_near_duplicates_and_outliers_are_stored_and_reported(ctx):
    shas = ingest(ctx, per_class=8)
    # the same picture again, re-encoded as a JPEG: another file, the same content
    with Image.open(ctx.store.path(shas[0])) as img:
        again = io.BytesIO()
        img.convert("RGB").save(again, "JPEG", quality=70)
    copy = ctx.store.put(again.getvalue(), max_side_px=96)
    ctx.catalog.add_images([copy.as_row()])
    ctx.catalog.replace_labels("majority", [dict(r) for r in _labels(ctx)] + [
        {"sha256": copy.sha256, "wnid": DOG, "method": "majority", "p_true": 1.0, "accepted": 1, "n_votes": 3}])

    result = run_stage(NoiseStage(), ctx)
    near = ctx.catalog.query("SELECT sha256, detail FROM issues WHERE kind = 'near_duplicate'")
    groups = {r["sha256"]: r["detail"] for r in near}
    assert copy.sha256 in groups and shas[0] in groups
    assert groups[copy.sha256] == groups[shas[0]] and groups[shas[0]].startswith("group ")
    assert result.stats["near_duplicates"] == len(near)
    assert "non_iid_p_value" in result.stats

    report = ctx.layout.report
    issues = pd.read_parquet(report / "issues.parquet")
    assert {copy.sha256, shas[0]} <= set(issues.loc[issues["kind"] == "near_duplicate", "sha256"])
    assert (report / "confident_joint.csv").is_file()


def test_the_report_rates_annotators_with_crowdlab(tmp_path: Path, corpus: Path, seeded_weights: Path):
    data = pipeline_dict(corpus, tmp_path / "run")
    data["noise"]["weights"] = str(seeded_weights)
    pipeline = write_pipeline(tmp_path / "p.yaml", data)
    stages = ["synsets", "candidates", "annotate", "noise"]
    assert main(["run", str(pipeline), "--no-progress", *[a for s in stages for a in ("--only", s)]]) == 0
    annotators = pd.read_csv(tmp_path / "run" / "report" / "annotators.csv")
    assert len(annotators) == 7
    assert annotators["crowdlab_quality"].between(0, 1).all()
    table = pd.read_csv(tmp_path / "run" / "report" / "all_labels.csv")
    assert table["votes"].str.contains("yes").all()


def test_an_untrained_backbone_looks_for_no_issue_and_clears_earlier_ones(ctx, monkeypatch):
    shas = ingest(ctx, per_class=6)
    assert run_stage(NoiseStage(), ctx).stats["backbone_trained"] is True  # an earlier run, with trained weights
    assert (ctx.layout.report / "label_issues.csv").is_file()
    earlier = [{"sha256": shas[0], "wnid": DOG, "kind": "label", "score": 0.1, "suggested_wnid": CAT, "detail": None}]
    ctx.catalog.replace_issues(("label",), earlier)
    embedded: list[int] = []
    monkeypatch.setattr(curate.vision.embed, "embed_images", lambda paths, *a, **k: embedded.append(len(paths)))
    ctx.config.noise.weights = "none"

    stats = run_stage(NoiseStage(), ctx).stats
    assert stats["skipped"] == NO_TRAINED_BACKBONE and stats["backbone_trained"] is False
    assert "give ImageNet weights with --set noise.weights=FILE" in stats["skipped"]
    assert "label_issues" not in stats and embedded == []
    assert ctx.catalog.scalar("SELECT COUNT(*) FROM issues WHERE kind IN ('label', 'outlier', 'near_duplicate')") == 0
    html = (ctx.layout.report / "index.html").read_text()
    assert "Noise check skipped" in html and "torch hub cache" in html and "flagged label issues" not in html
    assert not (ctx.layout.report / "label_issues.csv").exists()  # the earlier report is replaced whole
