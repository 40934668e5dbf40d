"""Quality checks and near duplicates in the candidates stage, before any crowd money is spent."""

from __future__ import annotations

import csv
import random
import sqlite3
from pathlib import Path

from conftest import CAT, DOG, pipeline_dict, write_pipeline
from PIL import Image, ImageDraw, ImageFilter

from curate.cli import main
from curate.quality import near_duplicate_groups


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Photo-like: smooth noise, a gradient and shapes (passes every check)."""
    rng = random.Random(seed)
    img = Image.effect_noise((size[0] // 8, size[1] // 8), 70).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    img = Image.blend(img, Image.linear_gradient("L").convert("RGB").resize(size), 0.3)
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = rng.randrange(size[0] - 40), rng.randrange(size[1] - 40)
        draw.rectangle((x, y, x + rng.randrange(10, 40), y + rng.randrange(10, 40)),
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def build(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    a = photo(1)
    files = {
        "dog_a.png": (a, DOG), "dog_b.png": (photo(2), DOG),
        "dog_a_again.jpg": (a, DOG),  # the same picture re-encoded: a near duplicate in its class
        "cat_a_smaller.png": (a.resize((288, 216)), CAT),  # the same picture found for another class
        "cat_c.png": (photo(3), CAT),
        "dog_dark.png": (Image.new("RGB", (400, 300), (3, 3, 3)), DOG),
        "dog_blurred.png": (photo(4).filter(ImageFilter.GaussianBlur(8)), DOG),
        "dog_banner.png": (photo(5, (1000, 100)), DOG),
    }
    rows = []
    for name, (img, wnid) in files.items():
        img.save(root / "images" / name, quality=60) if name.endswith(".jpg") else img.save(root / "images" / name)
        rows.append({"file": f"images/{name}", "caption": name.split("_")[0], "true_wnids": wnid})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "caption", "true_wnids"])
        writer.writeheader()
        writer.writerows(rows)


def test_quality_and_near_duplicates_before_the_crowd(tmp_path: Path, capsys):
    build(tmp_path / "corpus")
    data = pipeline_dict(tmp_path / "corpus", tmp_path / "run")
    data["synsets"] = {"wnids": [DOG, CAT]}
    data["candidates"]["download"]["max_side_px"] = 512
    data["candidates"]["quality"] = {}  # the defaults
    pipeline = write_pipeline(tmp_path / "p.yaml", data)
    assert main(["run", str(pipeline), "--no-progress", "--only", "synsets", "--only", "candidates"]) == 0
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as con:
        rows = {Path(url).name: (status, error) for url, status, error in
                con.execute("SELECT url, status, error FROM candidates")}
        tied = con.execute("SELECT COUNT(*) FROM images WHERE dup_of IS NOT NULL").fetchone()[0]
    assert rows["dog_a.png"][0] == rows["dog_b.png"][0] == rows["cat_c.png"][0] == "downloaded"
    assert rows["dog_a_again.jpg"] == ("duplicate", rows["dog_a_again.jpg"][1])
    assert rows["dog_a_again.jpg"][1].startswith("near duplicate of")
    assert rows["cat_a_smaller.png"][0] == "downloaded" and tied == 2  # both copies tied to dog_a's picture
    assert rows["dog_dark.png"][0] == "rejected" and rows["dog_dark.png"][1].startswith("too dark")
    assert rows["dog_blurred.png"][0] == "rejected" and rows["dog_blurred.png"][1].startswith("blurry")
    assert rows["dog_banner.png"][0] == "rejected" and rows["dog_banner.png"][1].startswith("extreme aspect ratio")
    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    for reason in ("too_dark", "blurry", "aspect_ratio"):
        assert f"rejected  {reason}" in out
    assert "near_duplicate=1" in (tmp_path / "run" / "logs" / "curate.log").read_text()

    # what the datasheet reports: the near duplicates set aside in all runs, not those the last run marked
    # (a resumed candidates stage marks only what is new: 0 here)
    from curate.catalog import Catalog

    catalog = Catalog(tmp_path / "run" / "catalog.sqlite")
    representative = {sha: group[0] for group in near_duplicate_groups(list(catalog.image_phashes().items()), 4)
                      for sha in group}
    assert catalog.mark_near_duplicates(representative) == 0
    assert catalog.count_near_duplicates() == 1
    catalog.close()
