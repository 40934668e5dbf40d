"""The ``urls`` source: CSV / Parquet / JSONL lists of image URLs, labelled by wnid or class, or by caption."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import CAT, DOG, MOUSE, pipeline_dict, write_pipeline
from pydantic import ValidationError

import curate.sources.urls as urls_module
from curate.errors import ConfigError
from curate.sources.base import Query
from curate.sources.urls import UrlsConfig, UrlsSource

DOG_Q = Query("dog", DOG, lemmas=("dog", "domestic dog", "Canis familiaris"))
CAT_Q = Query("cat", CAT, lemmas=("cat", "true cat"))
MOUSE_Q = Query("mouse", MOUSE, lemmas=("mouse",))


def url(name: str) -> str:
    return f"https://img.example.org/{name}.jpg"


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    frame = pd.DataFrame(rows)
    kind = "".join(path.suffixes)
    if kind in (".csv", ".tsv", ".csv.gz"):
        frame.to_csv(path, index=False, sep="\t" if kind == ".tsv" else ",")
    elif kind == ".parquet":
        frame.to_parquet(path, index=False)
    elif kind == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif kind == ".json":
        frame.to_json(path, orient="records")
    else:
        raise AssertionError(kind)
    return path


def names(hits: list) -> list[str]:
    return [h.url.rsplit("/", 1)[1].removesuffix(".jpg") for h in hits]


def source(path: Path, **fields: Any) -> UrlsSource:
    return UrlsSource(UrlsConfig(path=path, **fields))


MIXED = [
    {"url": url("labelled-dog"), "caption": "a cat sleeping", "wnid": DOG, "class": ""},
    {"url": url("labelled-cat"), "caption": "a dog barking", "wnid": CAT, "class": ""},
    {"url": url("class-dog"), "caption": "", "wnid": "", "class": "Domestic_Dog"},
    {"url": url("class-wnid"), "caption": "", "wnid": "", "class": MOUSE.upper()},
    {"url": url("class-hotdog"), "caption": "a dog in a bun", "wnid": "", "class": "hot dog"},
    {"url": url("caption-dogs"), "caption": "Two DOGS playing", "wnid": "", "class": ""},
    {"url": url("caption-catalog"), "caption": "a catalog page", "wnid": "", "class": ""},
    {"url": url("caption-cat"), "caption": "my cat, asleep", "wnid": "", "class": ""},
]


@pytest.mark.parametrize("name", ["list.csv", "list.tsv", "list.csv.gz", "list.parquet", "list.jsonl", "list.json"])
def test_each_file_format_is_read(tmp_path: Path, name: str):
    src = source(write(tmp_path / name, MIXED))
    assert src.instance == f"urls:{name}"
    assert names(src.search(DOG_Q, 10)) == ["labelled-dog", "class-dog", "caption-dogs"]
    assert names(src.search(CAT_Q, 10)) == ["labelled-cat", "caption-cat"]
    assert names(src.search(MOUSE_Q, 10)) == ["class-wnid"]


def test_a_name_replaces_the_file_name_in_the_instance(tmp_path: Path):
    path = write(tmp_path / "list.csv", MIXED)
    assert source(path).instance == "urls:list.csv"
    assert source(path, name="laion-dogs").instance == "urls:laion-dogs"
    with pytest.raises(ValidationError, match="name"):
        UrlsConfig(path=path, name="two words")


def test_wnid_rows_belong_to_their_class_for_every_query_and_never_to_another(tmp_path: Path):
    src = source(write(tmp_path / "list.csv", MIXED))
    puppy = Query("puppy", DOG, kind="synonym", lemmas=DOG_Q.lemmas)  # no caption says puppy
    assert names(src.search(puppy, 10)) == ["labelled-dog", "class-dog"]
    other = Query("dog", "n99999999", lemmas=("other",))  # 'dog' captions of rows labelled for other classes
    assert names(src.search(other, 10)) == ["caption-dogs"]


def test_class_column_matches_lemmas_case_insensitively_and_the_wnid(tmp_path: Path):
    src = source(write(tmp_path / "list.csv", MIXED))
    hot = Query("hot dog", "n07697537", lemmas=("hot dog", "red hot"))
    assert names(src.search(hot, 10)) == ["class-hotdog"]  # caption-matched rows need every word: none say 'hot'
    assert "class-hotdog" not in names(src.search(DOG_Q, 10))  # a class row is never matched by its caption


def test_caption_matching_is_whole_word_with_plurals(tmp_path: Path):
    rows = [{"url": url(n), "caption": c} for n, c in [
        ("dogs", "two dogs"), ("catalog", "catalog of parts"), ("berries", "fresh berries"),
        ("boxes", "boxes of toys"), ("brown-dog", "a brown dog"), ("hotdog", "hotdog stand"),
    ]]
    src = source(write(tmp_path / "list.jsonl", rows))
    assert names(src.search(Query("dog"), 10)) == ["dogs", "brown-dog"]
    assert src.search(Query("cat"), 10) == []
    assert names(src.search(Query("berry"), 10)) == ["berries"]
    assert names(src.search(Query("box"), 10)) == ["boxes"]
    assert names(src.search(Query("brown dog"), 10)) == ["brown-dog"]
    assert src.search(Query("!!"), 10) == []


def test_limit_keeps_labelled_rows_first(tmp_path: Path):
    rows = [{"url": url(f"cap{i}"), "caption": "dog", "wnid": ""} for i in range(5)]
    rows += [{"url": url(f"lab{i}"), "caption": "", "wnid": DOG} for i in range(3)]
    src = source(write(tmp_path / "list.parquet", rows))
    assert names(src.search(DOG_Q, 4)) == ["lab0", "lab1", "lab2", "cap0"]
    assert len(src.search(DOG_Q, 100)) == 8
    assert len(src.search(DOG_Q, 1)) == 1


def test_provenance_columns_and_custom_column_names(tmp_path: Path):
    rows = [
        {"URL": url("a"), "TEXT": "a dog", "license": "CC BY 4.0", "creator": "Ann",
         "page_url": "https://example.org/a", "true_wnids": DOG},
        {"URL": url("b"), "TEXT": "a dog", "license": None, "creator": None, "page_url": None, "true_wnids": None},
    ]
    src = source(write(tmp_path / "laion.parquet", rows), url_col="URL", caption_col="TEXT")
    first, second = src.search(Query("dog"), 10)
    assert (first.title, first.license, first.creator, first.page_url, first.true_wnids) == (
        "a dog", "CC BY 4.0", "Ann", "https://example.org/a", DOG)
    assert (second.license, second.creator, second.page_url, second.true_wnids) == (None, None, None, None)


def test_only_web_urls_are_returned(tmp_path: Path, caplog):
    rows = [
        {"url": url("web"), "caption": "dog"},
        {"url": "http://img.example.org/plain.jpg", "caption": "dog"},
        {"url": "file:///etc/passwd", "caption": "dog"},
        {"url": "FILE:///home/me/dog.jpg", "caption": "dog"},
        {"url": "ftp://ftp.example.org/dog.jpg", "caption": "dog"},
        {"url": "", "caption": "dog"},
    ]
    src = source(write(tmp_path / "list.csv", rows))
    with caplog.at_level(logging.WARNING, logger="curate.sources.urls"):
        hits = src.search(Query("dog"), 10)
    assert [h.url for h in hits] == [url("web"), "http://img.example.org/plain.jpg"]
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "skipped 4 rows" in record.getMessage()
    assert "file: 2" in record.getMessage() and "ftp: 1" in record.getMessage()


def test_the_file_is_read_once(tmp_path: Path, monkeypatch):
    calls = []
    real = urls_module.read_table
    monkeypatch.setattr(urls_module, "read_table", lambda path, *rest: calls.append(path) or real(path, *rest))
    src = source(write(tmp_path / "list.csv", MIXED))
    src.search(DOG_Q, 10)
    src.search(CAT_Q, 10)
    assert len(calls) == 1


def test_missing_url_column_or_unreadable_file_is_a_config_error(tmp_path: Path):
    path = write(tmp_path / "list.csv", [{"link": url("a"), "caption": "dog"}])
    with pytest.raises(ConfigError, match=r"list\.csv: the URL list lacks the column 'url' \(it has: link, caption\)"):
        source(path).search(Query("dog"), 10)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    with pytest.raises(ConfigError, match=r"broken\.parquet: cannot read the URL list as parquet"):
        source(broken).search(Query("dog"), 10)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"url": "https://a/b.jpg"}\n{oops\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl: cannot read the URL list as jsonl"):
        source(bad_json).search(Query("dog"), 10)


def test_check_inputs(tmp_path: Path):
    assert UrlsConfig(path=tmp_path / "none.csv").check_inputs("s") == [f"s.path: file not found: {tmp_path}/none.csv"]
    (tmp_path / "list.xlsx").write_text("x")
    (problem,) = UrlsConfig(path=tmp_path / "list.xlsx").check_inputs("s")
    assert "unsupported file type 'list.xlsx'" in problem
    write(tmp_path / "list.csv", MIXED)
    assert UrlsConfig(path=tmp_path / "list.csv").check_inputs("s") == []
    with pytest.raises(ValidationError):
        UrlsConfig(path=tmp_path / "list.csv", max_per_query=0)


def test_relative_path_resolves_against_the_pipeline_folder(tmp_path: Path, monkeypatch):
    from curate.config import load_config

    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "list.csv", MIXED)
    data = pipeline_dict(tmp_path / "corpus", tmp_path / "run")
    data["candidates"]["sources"] = [{"type": "urls", "path": "list.csv"}]
    pipeline = write_pipeline(folder / "pipeline.yaml", data)
    monkeypatch.chdir(tmp_path)  # not the pipeline's folder
    (cfg,) = load_config(pipeline).candidates.sources
    assert cfg.path == (folder / "list.csv").resolve()
    assert names(UrlsSource(cfg).search(DOG_Q, 10)) == ["labelled-dog", "class-dog", "caption-dogs"]

    data["candidates"]["sources"] = [{"type": "urls", "path": "missing.csv"}]
    with pytest.raises(ConfigError) as info:
        load_config(write_pipeline(folder / "pipeline.yaml", data))
    assert info.value.exit_code == 2
    assert f"candidates.sources.0.path: file not found: {folder.resolve() / 'missing.csv'}" in info.value.problems


def test_only_http_page_urls_are_kept(tmp_path: Path):
    path = write(tmp_path / "list.csv", [
        {"url": url("a"), "caption": "dog", "page_url": "javascript:alert(1)"},
        {"url": url("b"), "caption": "dog", "page_url": "file:///etc/passwd"},
        {"url": url("c"), "caption": "dog", "page_url": "https://example.org/c"},
    ])
    assert [hit.page_url for hit in source(path).search(Query("dog"), 5)] == [None, None, "https://example.org/c"]
