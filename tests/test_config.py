from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import pipeline_dict, write_pipeline

from curate.cli import main
from curate.config import load_config
from curate.errors import ConfigError


def test_valid_pipeline_resolves_paths_and_defaults(pipeline_file: Path, corpus: Path):
    config = load_config(pipeline_file)
    assert config.candidates.sources[0].root == corpus.resolve()
    assert config.annotate.votes_per_image == 3
    assert config.export.drop_label_issues is None  # deprecated: review.policy decides
    assert config.review.policy.label is None and config.review.policy.cross_class_duplicate == "drop"


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path, corpus: Path):
    data = pipeline_dict(Path("corpus"), Path("runs/x"))
    config = load_config(write_pipeline(tmp_path / "p.yaml", data))
    assert config.run.dir == (tmp_path / "runs" / "x").resolve()
    assert config.candidates.sources[0].root == corpus.resolve()


def test_every_problem_is_reported_at_once_with_its_yaml_path(tmp_path: Path, corpus: Path):
    data = pipeline_dict(corpus, tmp_path / "run")
    data["annotate"]["votes_per_imag"] = 3
    data["noise"]["folds"] = 1
    data["candidates"]["sources"][0]["captions"] = ["telepathy"]
    with pytest.raises(ConfigError) as info:
        load_config(write_pipeline(tmp_path / "p.yaml", data))
    problems = "\n".join(info.value.problems)
    assert "annotate.votes_per_imag: unknown key; did you mean votes_per_image or max_votes_per_image?" in problems
    assert "noise.folds:" in problems
    assert "candidates.sources.0.captions.0:" in problems
    assert len(info.value.problems) == 3


def test_bad_wnid_and_missing_section(tmp_path: Path, corpus: Path):
    data = pipeline_dict(corpus, tmp_path / "run")
    data["synsets"]["wnids"] = ["dog"]
    del data["candidates"]
    with pytest.raises(ConfigError) as info:
        load_config(write_pipeline(tmp_path / "p.yaml", data))
    text = str(info.value)
    assert "synsets.wnids: not a WordNet noun id" in text and "candidates: required key missing" in text


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("run:\n  name: x\nsynsets: [dog\n")
    with pytest.raises(ConfigError, match="YAML syntax error at line"):
        load_config(path)


def test_missing_corpus_folder(tmp_path: Path):
    data = pipeline_dict(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(ConfigError, match=r"candidates.sources.0.root: folder not found"):
        load_config(write_pipeline(tmp_path / "p.yaml", data))


def test_missing_weights_file(pipeline_file: Path):
    with pytest.raises(ConfigError, match="noise.weights: file not found"):
        load_config(pipeline_file, ["noise.weights=missing.pth"])


def test_set_overrides_parse_yaml_values_and_list_items(pipeline_file: Path):
    config = load_config(pipeline_file, ["annotate.votes_per_image=5", "candidates.sources.0.max_per_query=7",
                                         "synsets.roots=[dog.n.01]"])
    assert config.annotate.votes_per_image == 5
    assert config.candidates.sources[0].max_per_query == 7
    assert config.synsets.roots == ["dog.n.01"]
    with pytest.raises(ConfigError, match="no list item '3'"):
        load_config(pipeline_file, ["candidates.sources.3.root=x"])
    with pytest.raises(ConfigError, match="annotate.bogus: unknown key"):
        load_config(pipeline_file, ["annotate.bogus=1"])


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, corpus: Path):
    data = pipeline_dict(corpus, tmp_path / "run")
    data["export"]["colour"] = "blue"
    path = write_pipeline(tmp_path / "p.yaml", data)
    proc = subprocess.run([sys.executable, "-m", "curate", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "export.colour: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # config errors fail before any work


@pytest.mark.parametrize("text", ["just a string\n", "run: [\n"])
def test_cli_malformed_files_exit_2(tmp_path: Path, capsys, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    assert "error: invalid configuration" in capsys.readouterr().err


def test_cli_missing_pipeline_file(tmp_path: Path, capsys):
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "pipeline file not found" in capsys.readouterr().err


def test_resolved_config_round_trips(pipeline_file: Path, tmp_path: Path):
    from curate.config import save_resolved

    config = load_config(pipeline_file)
    save_resolved(config, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == config
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text())["noise"]["weights"] == "none"


def test_plugins_by_name_or_mapping_and_their_keys_checked(pipeline_file: Path):
    config = load_config(pipeline_file, ["annotate.backend=simulated", "annotate.aggregate=majority",
                                         "export.formats=[imagenet]", "benchmark.modes=[linear_probe]"])
    assert config.annotate.backend.type == "simulated" and config.annotate.backend.workers == 12
    assert [f.type for f in config.export.formats] == ["imagenet"]
    assert config.benchmark.modes[0].epochs == 30
    config = load_config(pipeline_file, ["annotate.backend=simulated", "annotate.backend.workers=5"])
    assert config.annotate.backend.workers == 5  # --set reaches into a plug-in given by name only
    with pytest.raises(ConfigError) as info:
        load_config(pipeline_file, ["annotate.backend.workerz=3", "candidates.sources.0.type=openversee",
                                    "benchmark.modes=[{type: linear_probe, epochz: 1}]"])
    problems = info.value.problems
    assert "annotate.backend.workerz: unknown key; did you mean workers?" in problems  # a plug-in's own keys
    assert "benchmark.modes.0.epochz: unknown key; did you mean epochs?" in problems
    assert any(p.startswith("candidates.sources.0: unknown type 'openversee'; known: 'local'") for p in problems)


def test_the_pipeline_model_is_assembled_from_the_registries():
    from curate.config import pipeline_model
    from curate.stages import STAGES

    assert list(pipeline_model().model_fields) == ["run", *STAGES.names()]


def test_the_plugin_tags_left_out_of_error_paths_are_found_in_the_pipeline_model():
    """Every plug-in ``type`` of every registry, found by walking the model (config imports no plug-in registry)."""
    from curate.config import _plugin_tags
    from curate.crowd import AGGREGATORS, BACKENDS
    from curate.executors import EXECUTORS
    from curate.exporters import WRITERS
    from curate.modes import MODES
    from curate.sources import SOURCES

    registries = (SOURCES, BACKENDS, AGGREGATORS, WRITERS, MODES, EXECUTORS)
    assert _plugin_tags() == {name for registry in registries for name in registry.names()}


def test_the_demo_pipeline_is_valid():
    from conftest import REPO

    config = load_config(REPO / "pipelines" / "demo.yaml")
    assert config.annotate.backend.type == "simulated" and config.run.executor.type == "local"


def test_the_web_pipeline_is_valid():
    """pipelines/web.yaml needs the internet to run; it must always validate."""
    from conftest import REPO

    config = load_config(REPO / "pipelines" / "web.yaml")
    assert [s.type for s in config.candidates.sources] == ["openverse", "commons"]
    assert config.synsets.languages == ["cmn", "spa", "nld", "ita"]


def test_set_reaches_a_default_plugin_not_named_in_the_file(pipeline_file: Path):
    config = load_config(pipeline_file, ["run.executor.processes=4"])
    assert (config.run.executor.type, config.run.executor.processes) == ("local", 4)
