from __future__ import annotations

from pathlib import Path

import pytest

from curate import wordnet
from curate.errors import ConfigError
from curate.wordnet_data import ensure_wordnet


@pytest.fixture(scope="module", autouse=True)
def _wordnet():
    ensure_wordnet(use_downloader=False)


def test_wnids_are_wordnet30_offsets():
    assert wordnet.wnid_of(wordnet.synset_from_id("dog.n.01")) == "n02084071"
    assert wordnet.synset_from_id("n02106662").name() == "german_shepherd.n.01"


def test_roots_with_depth_and_leaves_only():
    depth0 = wordnet.select_synsets(["dog.n.01"], max_depth=0)
    depth1 = wordnet.select_synsets(["dog.n.01"], max_depth=1)
    assert [s.name() for s in depth0] == ["dog.n.01"]
    names = {s.name() for s in depth1}
    assert {"dog.n.01", "puppy.n.01", "pooch.n.01", "toy_dog.n.01"} <= names
    leaves = wordnet.select_synsets(["dog.n.01"], max_depth=1, leaves_only=True)
    assert all(not s.hyponyms() for s in leaves)
    assert "puppy.n.01" in {s.name() for s in leaves} and "toy_dog.n.01" not in {s.name() for s in leaves}


def test_imageability_filter_drops_abstractions_and_instances():
    assert not wordnet.is_imageable(wordnet.synset_from_id("idea.n.01"))
    assert not wordnet.is_imageable(wordnet.synset_from_id("eiffel_tower.n.01"))  # an instance noun
    assert wordnet.is_imageable(wordnet.synset_from_id("tower.n.01"))
    kept = wordnet.select_synsets([], wnids=["n02084071", wordnet.wnid_of(wordnet.synset_from_id("idea.n.01"))])
    assert [wordnet.wnid_of(s) for s in kept] == ["n02084071"]


def test_query_expansion_lemmas_and_parent_in_gloss():
    queries = wordnet.expand_queries(wordnet.synset_from_id("whippet.n.01"))
    texts = {(q.text, q.kind) for q in queries}
    assert ("whippet", "synonym") in texts
    # gloss "a small slender dog of greyhound type ...", parent synset greyhound.n.01
    assert ("whippet greyhound", "parent") in texts
    dog = {q.text for q in wordnet.expand_queries(wordnet.synset_from_id("dog.n.01"))}
    assert {"dog", "domestic dog", "Canis familiaris"} <= dog


def test_parent_rule_off():
    queries = wordnet.expand_queries(wordnet.synset_from_id("whippet.n.01"), parent_in_gloss=False)
    assert all(q.kind == "synonym" for q in queries)


def test_unknown_ids_reported_together():
    with pytest.raises(ConfigError) as info:
        wordnet.select_synsets(["nosuch.n.01"], wnids=["n99999999"])
    assert len(info.value.problems) == 2


def test_is_a_follows_hyponymy():
    dog, puppy, hotdog = (wordnet.synset_from_id(x) for x in ("dog.n.01", "puppy.n.01", "hotdog.n.02"))
    assert wordnet.is_a(puppy, dog) and wordnet.is_a(dog, dog)
    assert not wordnet.is_a(hotdog, dog)


def omw_reader(root: Path, rows: dict[str, list[str]]):
    """A WordNet reader with Open Multilingual WordNet data in OMW's own tab format (lang/wn-data-lang.tab)."""
    from nltk.corpus import wordnet as wn
    from nltk.corpus.reader import CorpusReader, WordNetCorpusReader

    for lang, lines in rows.items():
        (root / lang).mkdir(parents=True)
        (root / lang / f"wn-data-{lang}.tab").write_text(f"# {lang}\n" + "\n".join(lines) + "\n", encoding="utf-8")
    wn.ensure_loaded()
    return WordNetCorpusReader(wn.root, CorpusReader(str(root), r".*/wn-data-.*\.tab", encoding="utf8"))


def test_translations_from_the_open_multilingual_wordnet(tmp_path: Path, monkeypatch):
    import nltk

    ensure_wordnet(use_downloader=False)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])  # nltk reads only below its path
    reader = omw_reader(tmp_path / "omw", {
        "spa": ["02084071-n\tspa:lemma\tperro", "02084071-n\tspa:lemma\tperro_doméstico"],
        "ita": ["02084071-n\tita:lemma\tcane"],
    })
    dog = reader.synset("dog.n.01")
    queries, missing = wordnet.translations(dog, ["spa", "ita", "cmn"])
    assert [(q.lang, q.text, q.kind, q.wnid) for q in queries] == [
        ("spa", "perro", "translation", "n02084071"), ("spa", "perro doméstico", "translation", "n02084071"),
        ("ita", "cane", "translation", "n02084071")]
    assert missing == ["cmn"]


def test_missing_omw_data_is_reported_not_fatal():
    ensure_wordnet(use_downloader=False)
    queries, missing = wordnet.translations(wordnet.synset_from_id("n02084071"), ["nld"])
    assert (queries, missing) == ([], ["nld"])
