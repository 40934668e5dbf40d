"""Where a pipeline file may send secrets: which variables it may name, plain http only to loopback, and a
warning naming the host when a key goes to one the service does not own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import DOG, pipeline_dict, write_pipeline

from curate.cli import main
from curate.config import load_config, validate
from curate.errors import ConfigError
from curate.labelstudio import LabelStudioError
from curate.labelstudio.client import resolve_server
from curate.layout import RunLayout
from curate.sources import Query, SourceError
from curate.sources.flickr import FlickrConfig, FlickrSource
from curate.sources.openverse import OpenverseSource, OpenverseSourceConfig

FLICKR_OK = {"stat": "ok", "photos": {"page": 1, "pages": 1, "photo": [
    {"id": "1", "owner": "9@N01", "title": "dog", "license": "4", "url_z": "https://live.example/1.jpg"}]}}
OPENVERSE_OK = {"results": [{"url": "https://live.example/2.jpg", "title": "dog"}], "page_count": 1}


@pytest.fixture(autouse=True)
def _no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLICKR_API_KEY", "OPENVERSE_TOKEN", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def with_backend(tmp_path: Path, **backend: Any) -> dict[str, Any]:
    data = pipeline_dict(tmp_path / "corpus", tmp_path / "run")
    data["annotate"]["backend"] = {"type": "labelstudio", **backend}
    return data


def with_source(tmp_path: Path, source: dict[str, Any]) -> Path:
    data = pipeline_dict(tmp_path / "corpus", tmp_path / "run")
    data["synsets"] = {"wnids": [DOG]}
    data["candidates"]["sources"] = [source]
    return write_pipeline(tmp_path / "pipeline.yaml", data)


# --------------------------------------------------------------------------- token_env


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "LABEL_STUDIO_PASSWORD", "GITHUB_TOKEN", "HOME",
                                  "label_studio_api_key", "CURATE_SECRET"])
def test_token_env_may_not_name_other_secrets(tmp_path: Path, name: str):
    with pytest.raises(ConfigError) as info:
        validate(with_backend(tmp_path, token_env=name))
    message = str(info.value)
    assert "annotate.backend.token_env" in message and repr(name) in message
    assert "CURATE_ or LABEL_STUDIO_" in message and "_API_KEY or _TOKEN" in message


@pytest.mark.parametrize("name", ["LABEL_STUDIO_API_KEY", "LABEL_STUDIO_USER_TOKEN", "CURATE_LS_TOKEN",
                                  "CURATE_TOKEN", "CURATE_LABEL_STUDIO_API_KEY"])
def test_token_env_names_curate_and_label_studio_tokens(tmp_path: Path, name: str):
    assert validate(with_backend(tmp_path, token_env=name)).annotate.backend.token_env == name


def test_curate_validate_exits_2_naming_the_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pipeline = write_pipeline(tmp_path / "pipeline.yaml", with_backend(tmp_path, token_env="AWS_SECRET_ACCESS_KEY"))
    assert main(["validate", str(pipeline)]) == 2
    assert "AWS_SECRET_ACCESS_KEY" in capsys.readouterr().err


def test_the_server_refuses_a_variable_outside_the_rule_even_unvalidated(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    with pytest.raises(LabelStudioError, match="AWS_SECRET_ACCESS_KEY"):
        resolve_server(RunLayout(tmp_path / "run"), "https://ls.example.org", "AWS_SECRET_ACCESS_KEY")


# --------------------------------------------------------------------------- plain http


@pytest.mark.parametrize("url", ["http://ls.example.org:8080", "http://10.0.0.5:8080", "ftp://ls.example.org",
                                 "ls.example.org:8080"])
def test_a_label_studio_url_the_token_cannot_travel_to_safely_is_refused(tmp_path: Path, url: str):
    with pytest.raises(ConfigError) as info:
        validate(with_backend(tmp_path, url=url))
    assert "annotate.backend.url" in str(info.value)


@pytest.mark.parametrize("url", ["https://ls.example.org", "http://127.0.0.1:8080", "http://localhost:8080",
                                 "http://[::1]:8080", "http://127.0.0.2:9000"])
def test_https_or_loopback_label_studio_urls_are_accepted(tmp_path: Path, url: str):
    assert validate(with_backend(tmp_path, url=url)).annotate.backend.url == url


def test_a_flickr_base_url_over_plain_http_is_refused_at_validation(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLICKR_API_KEY", "k-123456")
    pipeline = with_source(tmp_path, {"type": "flickr", "base_url": "http://api.example.org/services/rest/"})
    with pytest.raises(ConfigError) as info:
        load_config(pipeline)
    assert "candidates.sources.0.base_url: $FLICKR_API_KEY would travel unencrypted to api.example.org" \
        in str(info.value)
    loopback = with_source(tmp_path, {"type": "flickr", "base_url": "http://127.0.0.1:9/services/rest/"})
    assert load_config(loopback).candidates.sources[0].base_url.startswith("http://127.0.0.1")


def test_an_openverse_base_url_over_plain_http_is_refused_while_a_token_is_set(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    pipeline = with_source(tmp_path, {"type": "openverse", "base_url": "http://openverse.example.org"})
    load_config(pipeline)  # anonymous: nothing secret travels
    monkeypatch.setenv("OPENVERSE_TOKEN", "t-123456")
    with pytest.raises(ConfigError, match=r"sources.0.base_url: \$OPENVERSE_TOKEN would travel unencrypted"):
        load_config(pipeline)


def requests_made(monkeypatch: pytest.MonkeyPatch, source: Any, answer: Any) -> list[dict[str, Any]]:
    """Replace the source's HTTP call by a recorder answering ``answer``."""
    made: list[dict[str, Any]] = []

    def get_json(url: str, params: Any = None, headers: Any = None) -> Any:
        made.append({"url": url, "params": params, "headers": headers})
        return answer

    monkeypatch.setattr(source, "get_json", get_json)
    return made


def test_keys_never_leave_over_plain_http_even_without_validation(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLICKR_API_KEY", "k-123456")
    monkeypatch.setenv("OPENVERSE_TOKEN", "t-123456")
    flickr = FlickrSource(FlickrConfig(base_url="http://api.example.org/rest/", retries=0))
    openverse = OpenverseSource(OpenverseSourceConfig(base_url="http://openverse.example.org", retries=0))
    for source, answer in ((flickr, FLICKR_OK), (openverse, OPENVERSE_OK)):
        made = requests_made(monkeypatch, source, answer)
        with pytest.raises(SourceError, match="would travel unencrypted"):
            source.search(Query("dog"), 5)
        assert made == []


# --------------------------------------------------------------------------- warnings


def warnings_naming(caplog: pytest.LogCaptureFixture, host: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and host in r.getMessage()]


def test_a_flickr_key_sent_to_another_host_is_warned_once_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("FLICKR_API_KEY", "k-123456")
    source = FlickrSource(FlickrConfig(base_url="https://flickr-mirror.example.org/rest/"))
    made = requests_made(monkeypatch, source, FLICKR_OK)
    source.search(Query("dog"), 5)
    source.search(Query("cat"), 5)
    assert len(made) == 2
    (warning,) = warnings_naming(caplog, "flickr-mirror.example.org")
    assert "$FLICKR_API_KEY" in warning and "api.flickr.com" in warning


def test_an_openverse_token_sent_to_another_host_is_warned_once_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("OPENVERSE_TOKEN", "t-123456")
    source = OpenverseSource(OpenverseSourceConfig(base_url="https://openverse-mirror.example.org"))
    made = requests_made(monkeypatch, source, OPENVERSE_OK)
    source.search(Query("dog"), 5)
    source.search(Query("cat"), 5)
    assert made[0]["headers"] == {"Authorization": "Bearer t-123456"}
    (warning,) = warnings_naming(caplog, "openverse-mirror.example.org")
    assert "$OPENVERSE_TOKEN" in warning


def test_the_services_own_hosts_and_loopback_are_not_warned(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("FLICKR_API_KEY", "k-123456")
    for base_url in ("https://api.flickr.com/services/rest/", "http://127.0.0.1:9/services/rest/"):
        source = FlickrSource(FlickrConfig(base_url=base_url))
        requests_made(monkeypatch, source, FLICKR_OK)
        source.search(Query("dog"), 5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_label_studio_token_sent_to_the_files_url_is_warned_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "ls-123456")
    layout = RunLayout(tmp_path / "run")
    for _ in range(2):
        assert resolve_server(layout, "https://ls-remote.example.org/").url == "https://ls-remote.example.org"
    (warning,) = warnings_naming(caplog, "ls-remote.example.org")
    assert "$LABEL_STUDIO_API_KEY" in warning


def test_a_label_studio_url_from_the_environment_is_not_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "ls-123456")
    monkeypatch.setenv("LABEL_STUDIO_URL", "https://ls-own.example.org")
    assert resolve_server(RunLayout(tmp_path / "run")).url == "https://ls-own.example.org"
    assert resolve_server(RunLayout(tmp_path / "run"), "http://127.0.0.1:8080").url == "http://127.0.0.1:8080"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
