"""Which candidate an image's provenance names does not depend on the order downloads finished in.

Two candidates of one class that fetched the same bytes: the one with the lower id is ``downloaded`` and
gives the image its source, URL, licence and creator; the other is a ``duplicate``. Downloads finish in
whatever order the network gives, in one batch or in several.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import CAT, DOG

from curate.catalog import Catalog

SHA = "ab" * 32
OTHER = "cd" * 32


def catalog_with_candidates(path: Path) -> tuple[Catalog, dict[str, int]]:
    """Candidates ``first`` and ``second`` (ids in that order) of DOG, ``cat`` of CAT; all will fetch SHA."""
    catalog = Catalog(path)
    catalog.upsert_synsets([{"wnid": wnid, "name": f"{word}.n.01", "lemmas": word, "gloss": "", "depth": 1,
                             "hypernym_wnid": None, "lexname": "noun.animal"} for wnid, word in ((DOG, "dog"),
                                                                                                  (CAT, "cat"))])
    catalog.add_queries([{"wnid": DOG, "text": "dog", "lang": "en", "kind": "lemma"},
                         {"wnid": CAT, "text": "cat", "lang": "en", "kind": "lemma"}])
    query = {r["wnid"]: r["id"] for r in catalog.pending_searches("web")}
    for wnid, names in ((DOG, ["first", "second", "third"]), (CAT, ["cat"])):
        catalog.add_search_results(query[wnid], "web", [
            {"wnid": wnid, "source": "web", "query_id": query[wnid], "url": f"https://example.org/{name}.jpg",
             "page_url": None, "title": name, "license": f"licence of {name}", "creator": f"creator of {name}",
             "rank": rank, "true_wnids": None} for rank, name in enumerate(names)])
    ids = {r["title"]: r["id"] for r in catalog.pending_candidates()}
    assert ids["first"] < ids["second"] < ids["third"]
    return catalog, ids


def outcome(candidate_id: int, sha256: str) -> dict:
    image = {"sha256": sha256, "path": f"images/{sha256[:2]}/{sha256}.jpg", "width": 64, "height": 48,
             "nbytes": 900, "mime": "image/jpeg"}
    return {"id": candidate_id, "status": "downloaded", "error": None, "sha256": sha256, "image": image}


ORDERS = {  # batches of candidate names, in the order their downloads finished
    "in id order": [["first", "second", "third", "cat"]],
    "reversed": [["cat", "third", "second", "first"]],
    "later batch, lower id": [["third"], ["second", "cat"], ["first"]],
    "mixed": [["second"], ["cat", "third", "first"]],
}


@pytest.mark.parametrize("order", ORDERS)
def test_the_lowest_candidate_id_gives_the_provenance(tmp_path: Path, order: str):
    catalog, ids = catalog_with_candidates(tmp_path / "catalog.sqlite")
    sha_of = {"first": SHA, "second": SHA, "third": OTHER, "cat": SHA}
    written = sum((catalog.record_downloads([outcome(ids[name], sha_of[name]) for name in batch])
                   for batch in ORDERS[order]), start=Counter())
    rows = {(r["sha256"], r["wnid"]): dict(r) for r in catalog.provenance()}
    assert set(rows) == {(SHA, DOG), (OTHER, DOG), (SHA, CAT)}
    assert (rows[(SHA, DOG)]["license"], rows[(SHA, DOG)]["creator"]) == ("licence of first", "creator of first")
    assert rows[(SHA, DOG)]["url"] == "https://example.org/first.jpg"
    status = {r["title"]: r["status"] for r in catalog.all_candidates()}
    assert status == {"first": "downloaded", "second": "duplicate", "third": "downloaded", "cat": "downloaded"}
    assert catalog.collection_order() == {SHA: ids["first"], OTHER: ids["third"]}
    assert +written == {"downloaded": 3, "duplicate": 1}  # what the batches changed, net
    catalog.close()
