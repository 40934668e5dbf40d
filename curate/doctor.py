"""``curate doctor``: what this machine offers curate, one line per check.

Reads: nltk's WordNet, torch/torchvision, the torch hub cache (ImageNet weights), the Label Studio
server at ``LABEL_STUDIO_URL`` (default ``http://localhost:8080``). Writes: stdout only.
Exit 0 when what the offline demo needs is present (WordNet 3.0, torch); 1 otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import requests

DEFAULT_LABEL_STUDIO_URL = "http://localhost:8080"
Check = tuple[str, bool, str]  # name, ok, detail


def check_wordnet() -> Check:
    from curate.wordnet_data import probe

    info = probe()
    if info is None:
        return "wordnet", False, "not found: run `curate setup` (or `make demo`)"
    return "wordnet", info.version == "3.0", f"WordNet {info.version} at {info.path}"


def check_torch() -> Check:
    import torch
    import torchvision

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    return "torch", True, f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {device}"


def check_weights(name: str = "resnet50") -> Check:
    from curate.vision.backbones import WeightsUnavailable, load_backbone

    try:
        backbone = load_backbone(name, "imagenet", "cpu")
    except WeightsUnavailable as exc:
        return "imagenet weights", False, str(exc).splitlines()[0]
    return "imagenet weights", True, f"{backbone.key} loads ({backbone.feature_dim}-d features)"


def check_label_studio() -> Check:
    url = os.environ.get("LABEL_STUDIO_URL", DEFAULT_LABEL_STUDIO_URL).rstrip("/")
    try:
        resp = requests.get(f"{url}/health", timeout=3)
    except requests.RequestException as exc:
        return "label studio", False, f"unreachable at {url} ({type(exc).__name__}); the simulated crowd needs none"
    token = "set" if os.environ.get("LABEL_STUDIO_API_KEY") else "not set (LABEL_STUDIO_API_KEY)"
    return "label studio", resp.ok, f"{url} answered HTTP {resp.status_code}; API token {token}"


CHECKS: list[tuple[Callable[[], Check], bool]] = [  # (check, required for the offline demo)
    (check_wordnet, True), (check_torch, True), (check_weights, False), (check_label_studio, False),
]


def run_doctor() -> int:
    failed_required = False
    for check, required in CHECKS:
        try:
            name, ok, detail = check()
        except Exception as exc:  # a doctor reports, it does not crash
            name, ok, detail = check.__name__.removeprefix("check_"), False, f"{type(exc).__name__}: {exc}"
        mark = "ok  " if ok else ("FAIL" if required else "warn")
        print(f"[{mark}] {name:<17} {detail}")
        failed_required |= required and not ok
    return 1 if failed_required else 0
