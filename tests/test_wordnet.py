from __future__ import annotations

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
