"""Find or install the WordNet 3.0 database that nltk reads.

Reads: nltk's data path (``NLTK_DATA``, ``~/nltk_data``, ``<venv>/nltk_data``, system folders).
Writes: ``<target>/corpora/wordnet/`` when WordNet is missing, either through nltk's downloader
(where the internet is reachable) or from Debian's ``wordnet-base`` + ``wordnet-sense-index``
packages (installed with apt-get when running as root). nltk needs real files, not symlinks,
plus a ``lexnames`` file that Debian does not ship; it is written from the WordNet 3.0 spec.
On failure: raises :class:`WordNetUnavailable` naming what is missing and how to get it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from curate.atomic import replace_dir
from curate.errors import CurateError

log = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
# The database files nltk's WordNetCorpusReader opens (index.sense for sense keys).
REQUIRED_FILES = (
    "data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj",
    "data.adv", "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc", "index.sense",
)
# WordNet 3.0 lexicographer files, in file-number order (wndb(5WN), lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
DOG_OFFSET_WN30 = 2084071  # n02084071, ImageNet's "dog, domestic dog, Canis familiaris"
_POS_NUMBER = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


class WordNetUnavailable(CurateError):
    exit_code = 2


@dataclass(frozen=True)
class WordNetInfo:
    version: str
    path: str


def default_target() -> Path:
    """``<sys.prefix>/nltk_data``: inside the virtual environment, on nltk's default search path."""
    return Path(sys.prefix) / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def probe() -> WordNetInfo | None:
    """Load WordNet through nltk; None when nltk cannot find it."""
    from nltk.corpus import wordnet as wn

    try:
        wn.ensure_loaded()
        version = wn.get_version()
        root = str(wn.root)
    except LookupError:
        return None
    # WordNet 3.0 offsets are what ImageNet wnids are made of: check one we know.
    offsets_match = wn.synset("dog.n.01").offset() == DOG_OFFSET_WN30
    return WordNetInfo(version=version if offsets_match else f"{version} (offsets differ)", path=root)


def install_from_debian(target: Path, source_dir: Path = DEBIAN_WORDNET_DIR) -> Path:
    """Copy Debian's WordNet 3.0 files into ``target/corpora/wordnet`` as real files, plus ``lexnames``."""
    missing = [name for name in REQUIRED_FILES if not (source_dir / name).is_file()]
    if missing:
        raise WordNetUnavailable(
            f"Debian WordNet files missing in {source_dir}: {', '.join(missing)} "
            f"(install the packages {' '.join(DEBIAN_PACKAGES)})"
        )
    dest = target / "corpora" / "wordnet"
    with replace_dir(dest) as staging:  # a kill mid-copy never leaves a half WordNet nltk would load
        for name in REQUIRED_FILES:
            shutil.copyfile(source_dir.joinpath(name).resolve(), staging / name)  # real copies, never links
        (staging / "lexnames").write_text(lexnames_text())
    return dest


def _apt_install() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    log.info("installing %s with apt-get", " ".join(DEBIAN_PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
            return False
    return True


def _nltk_download(target: Path) -> bool:
    import nltk

    try:
        return bool(nltk.download("wordnet", download_dir=str(target), quiet=True, raise_on_error=True))
    except Exception as exc:  # the downloader raises assorted network errors
        log.info("nltk downloader unavailable: %s", exc)
        return False


def ensure_wordnet(target: Path | None = None, use_downloader: bool = True) -> WordNetInfo:
    """Return WordNet 3.0 info, installing the data into ``target`` first when nltk cannot find it."""
    info = probe()
    if info is None:
        target = target or default_target()
        if not (use_downloader and _nltk_download(target)):
            if not all((DEBIAN_WORDNET_DIR / n).is_file() for n in REQUIRED_FILES):
                _apt_install()
            install_from_debian(target)
        import nltk

        if str(target) not in nltk.data.path:
            nltk.data.path.insert(0, str(target))
        info = probe()
    if info is None:
        raise WordNetUnavailable("WordNet could not be found or installed; run `curate setup` as root")
    if not info.version.startswith("3.0"):
        raise WordNetUnavailable(f"WordNet {info.version} found at {info.path}; curate needs WordNet 3.0")
    return info
