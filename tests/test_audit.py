"""``curate audit``: the pipeline it generates, its errors, the ``given`` crowd, classes from labels, and the
audit of Imagenette with fastai's 25 % flipped labels scored against the flips."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import IMAGENETTE_MINI, MOBILENET, draw_image
from pydantic import ValidationError

from curate.audit import AuditOptions, build_pipeline, scan, source_config, write_pipeline
from curate.cli import main
from curate.config import load_config
from curate.crowd import BACKENDS
from curate.crowd.aggregate import Majority
from curate.errors import ConfigError
from curate.stages import STAGES
from curate.stages.synsets import SynsetsConfig, describe_labels

SHAPES = {"cat": ((40, 40, 200), "rectangle"), "dog": ((200, 40, 40), "ellipse"),
          "n02330245": ((40, 160, 40), "polygon")}


def build_tree(root: Path, per_class: int = 8) -> Path:
    for k, (label, (colour, shape)) in enumerate(SHAPES.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_image(colour, shape, seed=10 * k + i).save(root / label / f"{label}_{i}.png")
    return root


def audit_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args, "--no-progress", "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def read_issues(out: Path) -> list[dict[str, str]]:
    with (out / "report" / "label_issues.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def relative_paths(rows: list[dict[str, str]], root: Path) -> list[str]:
    """The ``path`` column, checked to hold paths relative to ``root``."""
    paths = [row.get("path") or "" for row in rows]
    missing = [p for p in paths if not (root / p).is_file()]
    assert paths and not missing, f"label_issues.csv paths not relative to the audited folder: {missing[:5]}"
    return paths


# ---------------------------------------------------------------------------------------------- the pipeline


def test_the_generated_pipeline_is_an_imagefolder_source_the_given_crowd_and_noise(tmp_path: Path):
    data = build_tree(tmp_path / "data")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    options = AuditOptions(data, tmp_path / "out", backbone="mobilenet_v2", weights=str(weights), device="cpu",
                           batch_size=50)
    source = source_config(options)
    labels, listing = scan(source)
    assert labels == {"cat": 8, "dog": 8, "n02330245": 8}
    path = write_pipeline(options.out, build_pipeline(options, {**source, "listing_sha256": listing}, labels))
    assert path == tmp_path / "out" / "pipeline.yaml"
    assert "curate run" in path.read_text().splitlines()[1]
    config = load_config(path)
    (folder,) = config.candidates.sources
    assert (folder.type, folder.root, folder.table, folder.listing_sha256) == ("imagefolder", data, None, listing)
    assert config.run.dir == tmp_path / "out"
    assert config.synsets.from_labels
    assert config.candidates.max_per_class == 8
    assert not config.candidates.quality.enabled and config.candidates.quality.near_duplicate_distance == 0
    assert config.annotate.backend.type == "given"
    assert (config.annotate.votes_per_image, config.annotate.max_votes_per_image) == (1, 1)
    noise = config.noise
    assert (noise.backbone, noise.weights, noise.device, noise.batch_size) == ("mobilenet_v2", str(weights), "cpu", 50)
    assert [f.type for f in config.export.formats] == ["imagenet"] and config.export.val_fraction == 0.0
    if "review" in STAGES.names():  # the clean copy: the given labels cannot be reviewed, flagged ones are dropped
        assert config.review.policy.label == "drop"
    assert main(["validate", str(path)]) == 0


def test_links_leading_outside_are_followed_unless_asked_not_to(tmp_path: Path):
    data = build_tree(tmp_path / "data", per_class=2)
    draw_image((40, 40, 200), "rectangle", seed=99).save(tmp_path / "outside.png")
    (data / "cat" / "linked.png").symlink_to(tmp_path / "outside.png")
    following = AuditOptions(data, tmp_path / "out")
    assert "follow_symlinks" not in source_config(following)  # earlier audits' pipelines stay as written
    assert scan(source_config(following))[0]["cat"] == 3
    strict = AuditOptions(data, tmp_path / "out", follow_symlinks=False)
    assert source_config(strict)["follow_symlinks"] is False
    assert scan(source_config(strict))[0] == {"cat": 2, "dog": 2, "n02330245": 2}
    assert strict.command().endswith(" --no-follow-symlinks")


def test_a_table_audit_reads_files_below_the_tables_folder(tmp_path: Path):
    data = build_tree(tmp_path / "data", per_class=2)
    table = tmp_path / "data" / "labels.csv"
    table.write_text("path,label\n" + "".join(f"{p.relative_to(data).as_posix()},{p.parent.name}\n"
                                              for p in sorted(data.rglob("*.png"))))
    source = source_config(AuditOptions(table, tmp_path / "out"))
    assert source == {"type": "imagefolder", "root": str(data), "table": str(table)}
    assert scan(source)[0] == {"cat": 2, "dog": 2, "n02330245": 2}


def test_audit_end_to_end_report_clean_copy_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       seeded_weights: Path):
    data = build_tree(tmp_path / "data")
    (data / "cat" / "broken.jpg").write_bytes(b"not an image")
    draw_image(*SHAPES["dog"], seed=99).save(data / "cat" / "really_a_dog.png")
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--backbone", "mobilenet_v3_small", "--weights", str(seeded_weights),
            "--device", "cpu", "--batch-size", "16", "--clean-copy"]
    code, stdout, err = audit_cli(capsys, *args)
    assert code == 0, err
    assert f"audit of {data}: 25 images, 3 classes, " in stdout
    assert "skipped:" in stdout and "1 rejected" in stdout
    assert str(out / "report" / "index.html") in stdout and (out / "report" / "index.html").is_file()
    rows = read_issues(out)
    assert rows and {r["given_label"] for r in rows} <= set(SHAPES)
    assert {r["caption"] for r in rows} == set(relative_paths(rows, data))
    assert "votes" not in rows[0]  # the given labels are no crowd's votes
    with (out / "export" / "labels.csv").open(newline="", encoding="utf-8") as fh:
        copied = {r["sha256"] for r in csv.DictReader(fh)}
    assert len(copied) == 25 - len(rows) and not copied & {r["sha256"] for r in rows}  # the flagged left out
    assert len([p for p in (out / "export" / "train").rglob("*") if p.is_file()]) == len(copied)
    assert not (out / "export" / "val").exists()

    again, stdout_again, _ = audit_cli(capsys, *args)  # resumes: every stage has nothing to do
    assert again == 0 and stdout_again == stdout

    (data / "cat" / "really_a_dog.png").rename(data / "dog" / "really_a_dog.png")  # the label fixed
    code, _, err = audit_cli(capsys, *args)
    assert code == 2 and "holds an audit of other data, or of this dataset before" in err


# ---------------------------------------------------------------------------------------------- errors


def one_class(tmp_path: Path) -> list[str]:
    build_tree(tmp_path / "data", per_class=2)
    shutil.rmtree(tmp_path / "data" / "dog")
    shutil.rmtree(tmp_path / "data" / "n02330245")
    return [str(tmp_path / "data")]


def csv_without_columns(tmp_path: Path) -> list[str]:
    (tmp_path / "labels.csv").write_text("file,class\na.png,cat\n")
    return [str(tmp_path / "labels.csv")]


def csv_naming_a_missing_file(tmp_path: Path) -> list[str]:
    build_tree(tmp_path / "data", per_class=1)
    (tmp_path / "data" / "labels.csv").write_text("path,label\ncat/cat_0.png,cat\ndog/gone.png,dog\n")
    return [str(tmp_path / "data" / "labels.csv")]


def untrained_weights(tmp_path: Path) -> list[str]:
    return [str(build_tree(tmp_path / "data", per_class=1)), "--weights", "none"]


def missing_weights(tmp_path: Path) -> list[str]:
    return [str(build_tree(tmp_path / "data", per_class=1)), "--weights", str(tmp_path / "nope.pth")]


def out_inside_the_data(tmp_path: Path) -> list[str]:
    return [str(build_tree(tmp_path / "data", per_class=1)), "--out", str(tmp_path / "data" / "audit")]


def out_holding_something_else(tmp_path: Path) -> list[str]:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("")
    return [str(build_tree(tmp_path / "data", per_class=1))]


def a_label_with_a_bar(tmp_path: Path) -> list[str]:
    data = build_tree(tmp_path / "data", per_class=1)
    (data / "cat").rename(data / "cat|dog")
    return [str(data)]


def links_out_not_followed(tmp_path: Path) -> list[str]:
    data = build_tree(tmp_path / "data", per_class=1)
    for label in ("dog", "n02330245"):
        (data / label).rename(tmp_path / label)
        (data / label).symlink_to(tmp_path / label, target_is_directory=True)
    return [str(data), "--no-follow-symlinks"]


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [str(tmp / "nowhere")], "nowhere: no such folder or file"),
    (a_label_with_a_bar, "class folder 'cat|dog': the label holds '|'"),
    (links_out_not_followed, "1 class folders with images (cat); an audit needs at least 2"),
    (one_class, "1 class folders with images (cat); an audit needs at least 2"),
    (csv_without_columns, "the table lacks the column(s) path, label (it has: file, class)"),
    (csv_naming_a_missing_file, "line 3: file 'dog/gone.png' not found"),
    (missing_weights, "weights file not found"),
    (untrained_weights, "--weights none: an untrained backbone cannot judge labels"),
    (out_inside_the_data, "lies inside the dataset"),
    (out_holding_something_else, "is not empty and holds no audit"),
])
def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture, make_args, message: str):
    args = make_args(tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    code, _, err = audit_cli(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "pipeline.yaml").exists()


def test_unreadable_images_are_counted_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture, seeded_weights: Path):
    """Covered end to end above (1 rejected); here a tree of nothing but broken files still fails cleanly."""
    for label in ("cat", "dog"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "x.jpg").write_bytes(b"broken")
    code, stdout, err = audit_cli(capsys, str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                                  "--backbone", "mobilenet_v3_small", "--weights", str(seeded_weights),
                                  "--device", "cpu")
    assert code == 0, err
    assert "0 images" in stdout and "2 rejected" in stdout and "no report" in stdout


# ---------------------------------------------------------------------------------------------- the given crowd


class _Ctx:
    def __init__(self, votes_per_image: int, max_votes: int):
        annotate = type("A", (), {"votes_per_image": votes_per_image, "max_votes_per_image": max_votes})
        self.config = type("C", (), {"annotate": annotate})


def test_the_given_crowd_says_yes_once_per_task():
    backend = BACKENDS.get("given")
    crowd = backend.from_context(backend.Config(), _Ctx(1, 1))
    tasks = [{"id": 7, "sha256": "a", "wnid": "cat"}, {"id": 8, "sha256": "b", "wnid": "dog"}]
    assert crowd.push(tasks) == {7: "given:7", 8: "given:8"}
    votes = crowd.pull(tasks)
    assert [(v.task_id, v.annotator, v.answer, v.remote_id) for v in votes] == [
        (7, "given", "yes", "given:7"), (8, "given", "yes", "given:8")]
    rows = [{"sha256": t["sha256"], "wnid": t["wnid"], "task_id": v.task_id, "annotator": v.annotator,
             "answer": v.answer} for t, v in zip(tasks, votes, strict=True)]
    labels = Majority().aggregate(rows)
    assert [(r["p_true"], r["accepted"], r["n_votes"]) for r in labels] == [(1.0, 1, 1), (1.0, 1, 1)]


def test_the_given_crowd_refuses_more_than_one_vote_per_image():
    backend = BACKENDS.get("given")
    with pytest.raises(ConfigError, match="votes_per_image: 1"):
        backend.from_context(backend.Config(), _Ctx(3, 10))


# ---------------------------------------------------------------------------------------------- classes from labels


def test_from_labels_excludes_a_wordnet_selection():
    assert SynsetsConfig(from_labels=True).from_labels
    with pytest.raises(ValidationError, match="leave 'roots' and 'wnids' empty"):
        SynsetsConfig(from_labels=True, wnids=["n02084071"])
    with pytest.raises(ValidationError, match="or from_labels: true"):
        SynsetsConfig()


def test_labels_without_wordnet_are_their_own_words(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("curate.wordnet_data.probe", lambda: None)
    rows = describe_labels(["golden_retriever", "n02084071"])
    assert [(r["wnid"], r["lemmas"], r["gloss"]) for r in rows] == [
        ("golden_retriever", "golden retriever", ""), ("n02084071", "n02084071", "")]


def test_wnid_labels_get_wordnet_words_where_it_is_installed():
    from curate.wordnet_data import probe

    if probe() is None:
        pytest.skip("WordNet is not installed (curate setup)")
    dog, cat = describe_labels(["n02084071", "cat"])
    assert dog["lemmas"].startswith("dog, domestic dog") and dog["gloss"]
    assert (cat["lemmas"], cat["gloss"]) == ("cat", "")


# ---------------------------------------------------------------------------------------------- Imagenette


def build_noisy_view(view: Path) -> dict[str, bool]:
    """Imagenette-mini's train images as an ImageFolder of links, each under fastai's 25 % noisy label;
    returns each file's path relative to the view -> whether its label is wrong."""
    flipped = {}
    with (IMAGENETTE_MINI / "noisy_imagenette.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["is_valid"] != "False":
                continue
            original = IMAGENETTE_MINI / row["path"]
            rel = f"{row['noisy_labels_25']}/{original.name}"
            (view / rel).parent.mkdir(parents=True, exist_ok=True)
            (view / rel).symlink_to(original)
            flipped[rel] = row["noisy_labels_25"] != original.parent.name
    return flipped


def precision_recall(flagged: set, flipped: dict) -> tuple[float, float]:
    true_pos = sum(flipped[key] for key in flagged)
    return true_pos / max(len(flagged), 1), true_pos / sum(flipped.values())


@pytest.mark.slow
@pytest.mark.skipif(not (IMAGENETTE_MINI.is_dir() and MOBILENET.is_file()),
                    reason="evaluation data (shared/eval, shared/models) not present")
def test_audit_finds_the_flipped_labels_of_imagenette(tmp_path: Path, capsys: pytest.CaptureFixture):
    view, out = tmp_path / "imagenette-noisy", tmp_path / "audit"
    flipped = build_noisy_view(view)
    assert (len(flipped), sum(flipped.values())) == (1000, 269)
    code, stdout, err = audit_cli(capsys, str(view), "--out", str(out), "--backbone", "mobilenet_v2",
                                  "--weights", str(MOBILENET), "--device", "cpu", "--batch-size", "50",
                                  "--clean-copy")
    assert code == 0, err
    assert "1000 images, 10 classes" in stdout
    rows = read_issues(out)
    flagged = set(relative_paths(rows, view))
    precision, recall = precision_recall(flagged, flipped)
    print(f"\naudit of imagenette-mini, 25 % noise: flagged {len(flagged)}, precision {precision:.3f}, "
          f"recall {recall:.3f}")
    # benchmarks/noise.py at 25 %: precision 0.972, recall 0.989 (this run: 0.985 / 0.981)
    assert precision >= 0.95 and recall >= 0.95
    assert yaml.safe_load((out / "pipeline.yaml").read_text())["annotate"]["backend"] == "given"
    assert len(list((out / "export" / "train").rglob("*.JPEG"))) == 1000 - len(flagged)  # the clean copy

