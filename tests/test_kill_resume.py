"""Kill-and-resume harness: SIGKILL ``curate run`` at seeded moments in every stage, resume with the same
command, and compare the finished run with an uninterrupted one.

Scenario ``offline``: 60 drawn images (three classes and two polysemy look-alikes), the simulated crowd with
dynamic consensus (votes come in rounds), the noise stage on seeded mobilenet_v3_small weights (a weights
file counts as trained, so the noise stage flags images and the review round asks the crowd), the export in
all three formats, and the benchmark's three modes (linear probe, fine-tune, scratch; two tiny epochs each).
One uninterrupted reference run per module. A chain runs the same command again and again: each process is
killed at the next moment of the seed's list (see :data:`MOMENTS`; the delay inside the stage is drawn from
``random.Random(seed)``), until a process runs to the end. Then the run must equal the reference: the export's
files (hashes; the datasheet without its creation time), ``labels.csv``, the votes, tasks, labels, decisions,
issues, candidates and images tables, the noise report's tables and the benchmark's numbers; no vote twice
per (task, annotator), no image stored twice or without its row; no ``*.incomplete``/``*.previous``/``*.tmp``
left; and after every kill no process of the killed command's process group alive (its workers end on their own).
At least 80% of the kills must land inside their stage (the stage running and its output not yet written).
The datasheet is compared whole (less its creation time): it once copied the annotate stage's last-run counts, so
after a resumed annotate it said what that run added, not what the dataset holds
(:func:`test_the_datasheet_describes_the_dataset_not_the_last_run`).

Scenario ``labelstudio``: the annotate stage against a real Label Studio (one server per module, started as
tests/test_labelstudio.py starts it; its ten-image corpus, tasks imported two per request): killed after a
seeded number (1 to 4) of import requests, resumed until it waits for the crowd; three annotators answer every
task through the API; killed while it pulls and aggregates; resumed until done. No task twice in the project,
one vote per task and annotator, each the answer given; in the full harness the catalog also equals that of
an uninterrupted run.

The CI subset (``make test``, ``pytest -q``) is seed 0 with :data:`CI_MOMENTS` (one kill in each of candidates,
annotate, noise, review, export and benchmark) and one Label Studio kill (while importing). The full harness,
every moment of :data:`MOMENTS` for seeds 0, 1 and 2 (33 kills) and both Label Studio moments per seed
(6 kills), runs with::

    CURATE_KILL_FULL=1 .venv/bin/python -m pytest tests/test_kill_resume.py -q -p no:cacheprovider

Each chain records its kills (moment, drawn delay and count, the stage it landed in, workers left) in
``kills.json`` beside its run directory.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from random import Random

import pytest
from conftest import (
    CAT,
    COMPUTER_MOUSE,
    DOG,
    HOTDOG,
    MOUSE,
    draw_image,
    pipeline_dict,
    require_labelstudio,
    write_pipeline,
)
from killharness import (
    Kill,
    Moment,
    catalog_snapshot,
    duplicates,
    kill_at,
    leftovers,
    query,
    snapshot,
    wait_for_group_end,
)
from test_labelstudio import SMALL, Server, answer_all, build_small_corpus, project_id, remote_tasks

from curate.catalog import Catalog
from curate.cli import main
from curate.crowd.truth import make_truth
from curate.labelstudio.client import connect

pytestmark = [pytest.mark.slow, pytest.mark.kill]

FULL = os.environ.get("CURATE_KILL_FULL") == "1"
SEEDS = [0, 1, 2] if FULL else [0]
MAX_RUNS = 40  # processes per chain: every kill plus the resumes that finish

# word, class, colour, shape, images
CORPUS = [("dog", DOG, (200, 40, 40), "ellipse", 18), ("cat", CAT, (40, 40, 200), "rectangle", 18),
          ("field mouse", MOUSE, (40, 160, 40), "polygon", 18), ("hot dog", HOTDOG, (230, 200, 60), "rectangle", 3),
          ("computer mouse", COMPUTER_MOUSE, (120, 120, 120), "ellipse", 3)]

MOMENTS = [
    Moment("synsets: reading WordNet", "synsets", after=r"\[synsets\] choose", delay=(0.3, 3.0)),
    Moment("candidates: downloading", "candidates", after=r"queries searched", delay=(0.0, 0.8)),
    Moment("annotate: between rounds", "annotate", after=r"annotate: round \d+:", nth=(1, 5),
           delay=(0.0, 0.02)),
    Moment("noise: embedding", "noise", after=r"to compute with", delay=(0.1, 1.0)),
    Moment("noise: fitting", "noise", after=r"out-of-sample probabilities", delay=(0.0, 0.5)),
    Moment("noise: writing the report", "noise", appears="report.incomplete", delay=(0.0, 0.5)),
    Moment("review: writing the decisions", "review", after=r"decided by the crowd", delay=(0.0, 0.5)),
    Moment("export: writing", "export", appears="export.incomplete", delay=(0.0, 0.05)),
    Moment("benchmark: linear probe", "benchmark", after=r"\[benchmark\] benchmark models", delay=(0.1, 0.8),
           unfinished="benchmark/linear_probe.json"),
    Moment("benchmark: fine-tune", "benchmark", after=r"finetune: head initialised", delay=(0.0, 0.7),
           unfinished="benchmark/finetune.json"),
    Moment("benchmark: scratch", "benchmark", after=r"scratch epoch 1/", delay=(0.0, 0.4),
           unfinished="benchmark/scratch.json"),
]
CI_MOMENTS = ["candidates: downloading", "annotate: between rounds", "noise: embedding",
              "review: writing the decisions", "export: writing", "benchmark: fine-tune"]


def build_corpus(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for word, wnid, colour, shape, count in CORPUS:
        for i in range(count):
            name = f"images/img_{len(rows):03d}.png"
            draw_image(colour, shape, seed=len(rows), size=256).save(root / name)
            rows.append({"file": name, "caption": f"{word} {i}", "true_wnids": wnid})
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def offline_pipeline(corpus: Path, run_dir: Path, weights: Path) -> Path:
    data = pipeline_dict(corpus, run_dir)
    data["candidates"]["download"] = {"workers": 2, "max_side_px": 64}
    data["annotate"] = {"backend": {"type": "simulated", "workers": 7, "accuracy": 0.85, "accuracy_spread": 0.05,
                                    "spammer_share": 0.0},
                        "votes_per_image": 2, "max_votes_per_image": 5,
                        "aggregate": {"type": "dynamic_consensus", "seed_tasks_per_class": 3}}
    data["noise"] = {"backbone": "mobilenet_v3_small", "weights": str(weights), "folds": 3, "min_images_per_class": 3,
                     "batch_size": 16}
    data["review"] = {"policy": {"label": "review", "outlier": "keep", "near_duplicate": "keep",
                                 "cross_class_duplicate": "drop"}, "votes_per_image": 3}
    data["export"] = {"formats": ["imagenet", "hf_imagefolder", {"type": "webdataset", "maxcount": 20}],
                      "val_fraction": 0.25}
    tiny = {"epochs": 2, "image_size_px": 32, "batch_size": 16, "cpu_threads": 1}
    data["benchmark"] = {"modes": [{"type": "linear_probe", "epochs": 5},
                                   {"type": "finetune", "warmup_probe_epochs": 2, **tiny},
                                   {"type": "scratch", **tiny}]}
    return write_pipeline(run_dir.parent / "pipeline.yaml", data)


def command(pipeline: Path, *only: str) -> list[str]:
    return [sys.executable, "-m", "curate", "run", str(pipeline), "--no-progress", "-q",
            *[arg for stage in only for arg in ("--only", stage)]]


def chain(cmd: list[str], run_dir: Path, moments: list[Moment], rng: Random, env: dict | None = None) -> list[Kill]:
    """Kill at each moment in turn, then run to the end; every process killed is checked for workers left."""
    kills = [kill_at(cmd, run_dir, moment, rng, env) for moment in moments]
    for _ in range(MAX_RUNS - len(kills)):
        finished = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if finished.returncode == 0:
            return kills
    raise AssertionError(f"the run did not finish after the kills: {finished.stderr[-3000:]}")


def record(kills: list[Kill], path: Path) -> list[Kill]:
    path.write_text(json.dumps([vars(k) for k in kills], indent=1))
    return kills


def assert_kills_landed(kills: list[Kill]) -> None:
    assert [(k.moment, k.leftover_workers) for k in kills if k.leftover_workers] == []
    inside = sum(k.inside for k in kills)
    per_stage = sorted(Counter((k.stage, k.inside) for k in kills).items())
    assert inside >= 0.8 * len(kills), f"only {inside} of {len(kills)} kills landed in their stage: {per_stage}"


def differences(result: dict, reference: dict) -> dict:
    return {key: (value, reference[key]) for key, value in result.items() if value != reference[key]}


def test_the_harness_sees_a_worker_that_outlives_its_killed_driver(tmp_path: Path):
    """The check itself: a driver whose child ignores its death is reported (and the child ended)."""
    driver = [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '60']); "
              "print('[synsets] choose', flush=True); time.sleep(60)"]
    (tmp_path / "logs").mkdir()
    with (tmp_path / "logs" / "curate.log").open("w") as log:
        proc = subprocess.Popen(driver, stdout=log, start_new_session=True)
        deadline = time.monotonic() + 15
        while "choose" not in (tmp_path / "logs" / "curate.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        leftover = wait_for_group_end(proc.pid, grace_s=1.0)
    assert [line.split(" ", 1)[1].strip() for line in leftover] == ["sleep 60"]
    assert wait_for_group_end(proc.pid, grace_s=1.0) == []


# --------------------------------------------------------------------------------- offline scenario
@pytest.fixture(scope="module")
def offline(tmp_path_factory, seeded_weights) -> dict:
    """The corpus, and the reference: the same pipeline run once without a kill."""
    corpus = build_corpus(tmp_path_factory.mktemp("kill-corpus"))
    run_dir = tmp_path_factory.mktemp("kill-reference") / "run"
    pipeline = offline_pipeline(corpus, run_dir, seeded_weights)
    done = subprocess.run(command(pipeline), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"corpus": corpus, "weights": seeded_weights, "reference": snapshot(run_dir)}


@pytest.fixture(scope="module", params=SEEDS, ids=lambda seed: f"seed{seed}")
def resumed(request, offline, tmp_path_factory) -> dict:
    """The same pipeline killed at every moment of the seed's list and resumed until it finished."""
    run_dir = tmp_path_factory.mktemp(f"kill-seed{request.param}") / "run"
    pipeline = offline_pipeline(offline["corpus"], run_dir, offline["weights"])
    moments = MOMENTS if FULL else [m for m in MOMENTS if m.name in CI_MOMENTS]
    kills = chain(command(pipeline), run_dir, moments, Random(request.param))
    return {"run_dir": run_dir, "kills": record(kills, run_dir.parent / "kills.json"), "result": snapshot(run_dir)}


def test_every_kill_lands_in_its_stage_and_leaves_no_worker(resumed):
    assert_kills_landed(resumed["kills"])


def test_a_resumed_run_leaves_no_staging_folder_and_did_nothing_twice(resumed):
    assert leftovers(resumed["run_dir"]) == []
    assert duplicates(resumed["run_dir"]) == {"votes": [], "images": [], "store_without_row": [],
                                              "row_without_file": []}


def test_a_resumed_run_ends_as_the_uninterrupted_one(resumed, offline):
    assert differences(resumed["result"], offline["reference"]) == {}


def test_the_datasheet_describes_the_dataset_not_the_last_run(resumed, offline):
    if not any(k.stage == "annotate" and k.inside for k in resumed["kills"]):
        pytest.skip("no kill landed in annotate: its last run was a whole one")
    assert resumed["result"]["datasheet"]["labeling"] == offline["reference"]["datasheet"]["labeling"]


# --------------------------------------------------------------------------------- Label Studio scenario
LS_MOMENTS = [
    Moment("annotate: importing tasks into Label Studio", "annotate", after=r"POST \S+/api/projects/\d+/import",
           nth=(1, 4)),
    Moment("annotate: pulling the answers from Label Studio", "annotate", after=r"\[annotate\] verify",
           delay=(0.2, 1.5)),
]


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory) -> dict:
    """A Label Studio server for the module (its document root pytest's base folder), three annotators, and
    the environment that points ``curate run`` at it."""
    require_labelstudio()
    server = Server(tmp_path_factory.mktemp("kill-ls-server"), tmp_path_factory.getbasetemp())
    try:
        with connect(server.url, server.token) as ls:
            annotators = {}
            for name in ("ann1", "ann2", "ann3"):
                user = ls.users.create(email=f"{name}@example.org", username=name, password="not-a-secret-1")
                annotators[user.email] = user.id
        env = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.token)
        base = tmp_path_factory.mktemp("kill-ls-base") / "run"
        pipeline = labelstudio_pipeline(build_small_corpus(base.parent / "corpus"), server.root, base)
        assert main(["run", str(pipeline), "--no-progress", "-q", "--only", "synsets", "--only", "candidates"]) == 0
        yield {"server": server, "annotators": annotators, "env": env, "base": base}
    finally:
        server.current.stop()


def labelstudio_pipeline(corpus: Path, document_root: Path, run_dir: Path) -> Path:
    """The small corpus of tests/test_labelstudio.py (ten images), its questions asked in Label Studio."""
    data = pipeline_dict(corpus, run_dir)
    data["annotate"] = {"backend": {"type": "labelstudio", "local_files_root": str(document_root),
                                    "import_batch": 2},
                        "votes_per_image": 3, "aggregate": "majority"}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return write_pipeline(run_dir.parent / "pipeline.yaml", data)


def everyone_answers(ls: dict, run_dir: Path) -> None:
    with connect(ls["server"].url, ls["server"].token) as client:
        answer_all(client, project_id(run_dir, ls["server"].url), ls["annotators"], run_dir)


def tasks_in_project(ls: dict, run_dir: Path) -> Counter:
    """How often each curate task is in the run's Label Studio project (once, or the push duplicated it)."""
    with connect(ls["server"].url, ls["server"].token) as client:
        listed = remote_tasks(client, project_id(run_dir, ls["server"].url))
    return Counter(task.data["curate_task_id"] for task in listed)


def crowd_run(ls: dict, run_dir: Path, moments: list[Moment], rng: Random) -> list[Kill]:
    """On a copy of the base run (classes and images): push (killed at the first moment), everyone answers,
    pull (killed at the second), until finished."""
    shutil.copytree(ls["base"], run_dir, ignore=shutil.ignore_patterns(".lock"))
    corpus = ls["base"].parent / "corpus"
    cmd = command(labelstudio_pipeline(corpus, ls["server"].root, run_dir), "annotate")
    kills = chain(cmd, run_dir, moments[:1], rng, ls["env"])  # ends waiting: the crowd owes every vote
    everyone_answers(ls, run_dir)
    kills += chain(cmd, run_dir, moments[1:], rng, ls["env"])
    return kills


def truthful_votes(ls: dict, run_dir: Path) -> list[tuple]:
    """The votes every task must end with: one per annotator, each the truth (as :func:`answer_all` answers)."""
    catalog = Catalog(run_dir / "catalog.sqlite", readonly=True)
    try:
        is_true = make_truth(catalog.truth_table())
    finally:
        catalog.close()
    tasks = query(run_dir, "SELECT sha256, wnid, backend FROM tasks")
    return sorted((sha, wnid, backend, email, "yes" if is_true(sha, wnid) else "no", 1)
                  for sha, wnid, backend in tasks for email in ls["annotators"])


def test_annotate_against_label_studio_killed_and_resumed(labelstudio, tmp_path: Path):
    """CI: one kill while the tasks are imported (seed 0). Full: both moments per seed, and the catalog
    compared with an uninterrupted run's."""
    kills = []
    for seed in SEEDS:
        run_dir = tmp_path / f"seed{seed}" / "run"
        moments = LS_MOMENTS if FULL else LS_MOMENTS[:1]
        kills += record(crowd_run(labelstudio, run_dir, moments, Random(seed)), run_dir.parent / "kills.json")
        assert max(tasks_in_project(labelstudio, run_dir).values()) == 1  # no task pushed twice
        result = catalog_snapshot(run_dir)
        assert len(result["tasks"]) == len(SMALL) and result["votes"] == truthful_votes(labelstudio, run_dir)
        assert duplicates(run_dir)["votes"] == []
        if FULL:
            reference_dir = tmp_path / "reference" / "run"
            if not reference_dir.exists():
                assert crowd_run(labelstudio, reference_dir, [], Random(0)) == []
            assert differences(result, catalog_snapshot(reference_dir)) == {}
    assert_kills_landed(kills)
