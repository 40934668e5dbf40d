from __future__ import annotations

from pathlib import Path

import pytest
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from curate.wordnet_data import DEBIAN_WORDNET_DIR, LEXNAMES, REQUIRED_FILES, install_from_debian, lexnames_text


def test_lexnames_follow_the_wordnet30_numbering():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not (DEBIAN_WORDNET_DIR / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_install_from_debian_makes_real_copies_nltk_reads(tmp_path: Path, monkeypatch):
    import nltk

    dest = install_from_debian(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])  # nltk reads only from its path
    for name in (*REQUIRED_FILES, "lexnames"):
        assert (dest / name).is_file() and not (dest / name).is_symlink()
    reader = WordNetCorpusReader(str(dest), None)
    assert reader.get_version() == "3.0"
    dog = reader.synset("dog.n.01")
    assert dog.offset() == 2084071 and dog.lexname() == "noun.animal"
