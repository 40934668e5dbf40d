"""``file://`` reads of special files: a FIFO in a source folder and a link to ``/dev/zero`` fail at once
with a clear error instead of hanging or reading without end; a regular file is read up to the byte cap.

Each fetch runs on a thread that the test waits for with a generous bound (the /dev/zero one in a child with
little address space), so a regression fails the test
instead of hanging the suite (the FIFO is then opened for writing, which lets the stuck reader go)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from http_fixtures import PNG_BYTES

from curate.http import Fetcher, FetchError
from curate.sources import Query, create_source
from curate.sources.local import LocalSourceConfig

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")


def outcome_within(seconds: float, fetch, unblock: Path | None = None) -> str:
    """``fetch()``'s bytes' length or FetchError message, from a thread given ``seconds`` to finish."""
    result: list[str] = []

    def run() -> None:
        try:
            result.append(f"{len(fetch())} bytes")
        except FetchError as exc:
            result.append(str(exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:  # a reader blocked in open() goes on once a writer opens and closes
            os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"the fetch did not finish within {seconds} s")
    return result[0]


def test_a_fifo_in_a_local_source_folder_fails_at_once(tmp_path: Path):
    (tmp_path / "cat_photo.png").write_bytes(PNG_BYTES)
    os.mkfifo(tmp_path / "cat_pipe.png")
    source = create_source(LocalSourceConfig(root=tmp_path))
    hits = {Path(h.url).name: h.url for h in source.search(Query("cat"), 10)}  # listing never opens the FIFO
    fetcher = Fetcher(deadline_s=5)
    assert outcome_within(15, lambda: fetcher.fetch(hits["cat_photo.png"], file_root=tmp_path)) == \
        f"{len(PNG_BYTES)} bytes"
    pipe = tmp_path / "cat_pipe.png"  # listed, or made after the listing, or named by an index: never read
    message = outcome_within(15, lambda: fetcher.fetch(pipe.as_uri(), file_root=tmp_path), unblock=pipe)
    assert message == f"cannot read {tmp_path / 'cat_pipe.png'}: not a regular file (a FIFO)"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_dev_zero_in_a_tree_of_links_is_refused(tmp_path: Path):
    """With ``links_out`` a link may lead anywhere; a device behind it is still not read (it has no size
    to check and no end). The fetch runs in a child limited to 1 GiB of address space, so a regression that
    reads on fails there (MemoryError) instead of taking the machine's memory."""
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "zero.png").symlink_to("/dev/zero")
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from curate.http import Fetcher, FetchError, FileRoot\n"
        "root = Path(sys.argv[1])\n"
        "import curate.netguard, curate.hostgate, curate.netclock, curate.machine\n"  # loaded before the limit
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
        "try:\n"
        "    Fetcher(max_bytes=1000).fetch((root / 'dog' / 'zero.png').as_uri(), file_root=FileRoot(root, True))\n"
        "except FetchError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"cannot read {tmp_path / 'dog' / 'zero.png'}: not a regular file (a character " \
        "device)", done.stdout + done.stderr[-2000:]


def test_a_folder_is_not_a_file(tmp_path: Path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(FetchError, match=r"not a regular file \(a folder\)$"):
        Fetcher().fetch((tmp_path / "dir.png").as_uri(), file_root=tmp_path)


def test_a_regular_file_over_the_byte_cap_is_refused(tmp_path: Path):
    (tmp_path / "big.png").write_bytes(PNG_BYTES + b"x" * 2000)
    (tmp_path / "small.png").write_bytes(PNG_BYTES)
    fetcher = Fetcher(max_bytes=len(PNG_BYTES))
    assert fetcher.fetch((tmp_path / "small.png").as_uri(), file_root=tmp_path) == PNG_BYTES
    with pytest.raises(FetchError, match=f"file too large: {len(PNG_BYTES) + 2000} bytes"):
        fetcher.fetch((tmp_path / "big.png").as_uri(), file_root=tmp_path)
