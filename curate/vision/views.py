"""Region views: more than one embedding per image from a single forward pass.

A CNN classifier ends in a spatial feature map (7 x 7 cells for 224 px input) that global average
pooling turns into the embedding. Pooling windows of that map instead gives embeddings of regions of
the image at no extra network cost, like the corner crops of multi-crop evaluation (Krizhevsky et al.
2012; Simonyan & Zisserman 2015) without running the network once per crop. :func:`region_model`
rewrites a torchvision classifier so that its last global pooling emits, for every image, the whole map
followed by its four corner windows (each ``WINDOW_FRACTION`` of the map's side, 5 x 5 of 7 x 7); what
follows the pooling (flatten, a norm, the head's Identity) then runs on ``1 + 4`` rows per image.

View 0 is the ordinary embedding (the same numbers the unmodified model gives), so a caller that
wants one vector per image takes ``[:, 0]``.

On failure: a model without a final global average pooling over a spatial map (ViT; VGG, which pools
to 7 x 7; anything torch.fx cannot trace) raises :class:`RegionViewsUnsupported` naming the model;
:func:`supports_region_views` turns that into a warning, and the noise stage then uses one view.
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.fx
from torch import nn

from curate.errors import ConfigError

log = logging.getLogger(__name__)

WINDOW_FRACTION = 5 / 7  # of the map's side: 5 x 5 windows of MobileNetV2's or ResNet's 7 x 7 map at 224 px
CORNERS = ("top left", "top right", "bottom left", "bottom right")
NUM_VIEWS = 1 + len(CORNERS)
# view order after mirroring the image: its top-left window is the original's top-right, and so on
MIRRORED = (0, 2, 1, 4, 3)


class RegionViewsUnsupported(ConfigError):
    """The backbone has no final global average pooling over a spatial map to take windows of."""


class WindowPool(nn.Module):
    """(N, C, H, W) -> (N * 5, C, 1, 1): the whole map's mean, then each corner window's, per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        wh, ww = max(1, math.ceil(h * WINDOW_FRACTION - 1e-6)), max(1, math.ceil(w * WINDOW_FRACTION - 1e-6))
        views = [x.mean(dim=(2, 3))]
        for top in (0, h - wh):
            for left in (0, w - ww):
                views.append(x[:, :, top : top + wh, left : left + ww].mean(dim=(2, 3)))
        return torch.stack(views, dim=1).reshape(n * NUM_VIEWS, c, 1, 1)


@functools.lru_cache(maxsize=4)  # traced once per backbone, not per batch of images
def region_model(model: nn.Module, name: str = "model") -> torch.fx.GraphModule:
    """``model`` with its last global average pooling replaced by :class:`WindowPool`: its output is
    ``(N * NUM_VIEWS, D)``, image-major (reshape to ``(N, NUM_VIEWS, D)``). Parameters are shared."""
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds for untraceable control flow
        raise RegionViewsUnsupported(f"region views need a traceable model; {name} is not ({exc})") from exc
    pools = [node for node in traced.graph.nodes if _is_global_pool(traced, node)]
    if not pools:
        raise RegionViewsUnsupported(
            f"region views need a final global average pooling over a spatial map; {name} has none")
    last = pools[-1]  # squeeze-and-excitation blocks pool too; the embedding's pooling comes last
    traced.add_submodule("curate_window_pool", WindowPool())
    with traced.graph.inserting_after(last):
        windows = traced.graph.call_module("curate_window_pool", args=(last.args[0],))
    last.replace_all_uses_with(windows)
    traced.graph.erase_node(last)
    traced.recompile()
    return traced


def supports_region_views(backbone) -> bool:
    """Whether :func:`region_model` can rewrite ``backbone.model``; where not, warns (once per backbone)
    that each image gets one view."""
    try:
        region_model(backbone.model, backbone.name)
    except RegionViewsUnsupported as exc:
        if backbone.name not in _WARNED:
            _WARNED.add(backbone.name)
            log.warning("%s: using one view per image", exc.problems[0])
        return False
    return True


_WARNED: set[str] = set()


def _is_global_pool(traced: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        module = traced.get_submodule(node.target)
        return isinstance(module, nn.AdaptiveAvgPool2d) and _is_one(module.output_size)
    if node.op == "call_function" and node.target is nn.functional.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return _is_one(size)
    return False


def _is_one(size: object) -> bool:
    return size == 1 or (isinstance(size, tuple | list) and all(s == 1 for s in size))
