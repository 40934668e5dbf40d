"""Storing a high-bit-depth or transparent image costs memory near what an 8-bit image of the same size does.

Measured as the growth of the peak resident set (``VmHWM``) of a fresh interpreter while ``ImageStore.put``
runs: it counts Pillow's and numpy's C allocations, which ``tracemalloc`` does not. (``ru_maxrss`` would not
do: a child started by a large parent inherits the parent's peak.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")

SIDE_PX = 3000  # 9 megapixels: big enough that a copy per pixel dwarfs the interpreter's own noise
SLACK_KB = 40 * 1024  # allocator and interpreter noise on top of the ratio

PUT = """
import re, sys
from pathlib import Path
from curate.store import ImageStore

def peak_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

data = Path(sys.argv[1]).read_bytes()
store = ImageStore(Path(sys.argv[2]))
before = peak_kb()
stored = store.put(data, max_side_px=512, min_side_px=32)
assert (stored.width, stored.height) == (512, 512), stored
print(peak_kb() - before)
"""


def ramp(dtype: type, top: int) -> np.ndarray:
    """A diagonal ramp 0..top: smooth, so the PNGs stay small, and spanning the type's range."""
    steps = np.add.outer(np.arange(SIDE_PX), np.arange(SIDE_PX)) % 4096
    return (steps * (top / 4095)).astype(dtype)


def peak_growth_kb(tmp_path: Path, name: str, img: Image.Image, fmt: str) -> int:
    path = tmp_path / f"{name}.{fmt.lower()}"
    img.save(path, format=fmt)
    del img
    done = subprocess.run([sys.executable, "-c", PUT, str(path), str(tmp_path / f"store-{name}")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def eight_bit_kb(tmp_path_factory) -> int:
    """The cost of an 8-bit greyscale PNG of the same size."""
    tmp = tmp_path_factory.mktemp("eight-bit")
    return peak_growth_kb(tmp, "L", Image.fromarray(ramp(np.uint8, 255)), "PNG")


@pytest.mark.parametrize("name, make, fmt", [
    ("I16-png", lambda: Image.fromarray(ramp(np.uint16, 65535)), "PNG"),
    ("I16B-tiff", lambda: Image.fromarray(ramp(np.uint16, 65535).astype(">u2")), "TIFF"),
    ("I32-tiff", lambda: Image.fromarray(ramp(np.int32, 65535) * 4 - 9000), "TIFF"),
    ("F-tiff", lambda: Image.fromarray(ramp(np.float32, 1)), "TIFF"),
    ("RGBA-png", lambda: Image.fromarray(np.stack([ramp(np.uint8, 255)] * 4, axis=-1)), "PNG"),
])
def test_high_bit_depth_decodes_near_the_cost_of_eight_bits(tmp_path: Path, eight_bit_kb: int, name, make, fmt):
    # Before strip-wise conversion a 16-bit PNG took ~33 bytes per pixel (float64 copies of the whole
    # image), six times the 8-bit cost; the bound is the decoded source plus the 8-bit path.
    grown = peak_growth_kb(tmp_path, name, make(), fmt)
    assert grown < 2.5 * eight_bit_kb + SLACK_KB, f"{name}: {grown / 1024:.0f} MB vs {eight_bit_kb / 1024:.0f} MB"
