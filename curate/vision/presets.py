"""Transform presets for training and evaluating classifiers, after torchvision's
``references/classification/presets.py``.

Reads and writes nothing: each preset is a callable PIL image -> normalised float tensor.
``ClassificationPresetTrain``: random resized crop (of at least ``min_crop_area`` of the image; 0.08 is
ImageNet's Inception-style default) and horizontal flip (``augment: flip_crop``), plus
TrivialAugmentWide (``trivial_augment``) or RandAugment (``randaugment``) and optional random erasing.
``ClassificationPresetEval``: resize to ``crop_px / 0.875`` and centre crop, as ImageNet evaluation does.
On failure: an unknown ``augment`` name raises ``ValueError`` listing the known ones.
"""

from __future__ import annotations

import torch
from torchvision import transforms as T

from curate.vision.backbones import IMAGENET_MEAN, IMAGENET_STD

# augment name -> the extra policy applied after crop and flip (None: crop and flip only)
AUGMENT_POLICIES = {
    "flip_crop": None,
    "trivial_augment": lambda: T.TrivialAugmentWide(interpolation=T.InterpolationMode.BILINEAR),
    "randaugment": lambda: T.RandAugment(interpolation=T.InterpolationMode.BILINEAR),
}
EVAL_CROP_RATIO = 0.875  # ImageNet's 224 / 256


class ClassificationPresetTrain:
    def __init__(self, crop_px: int, augment: str = "flip_crop", hflip_prob: float = 0.5,
                 random_erase_prob: float = 0.0, min_crop_area: float = 0.08, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if augment not in AUGMENT_POLICIES:
            raise ValueError(f"unknown augment '{augment}'; known: {', '.join(AUGMENT_POLICIES)}")
        steps = [T.RandomResizedCrop(crop_px, scale=(min_crop_area, 1.0), interpolation=T.InterpolationMode.BILINEAR,
                                     antialias=True)]
        if hflip_prob > 0:
            steps.append(T.RandomHorizontalFlip(hflip_prob))
        policy = AUGMENT_POLICIES[augment]
        if policy is not None:
            steps.append(policy())
        steps += [T.PILToTensor(), T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)]
        if random_erase_prob > 0:
            steps.append(T.RandomErasing(p=random_erase_prob))
        self.transforms = T.Compose(steps)

    def __call__(self, image):
        return self.transforms(image)


class ClassificationPresetEval:
    def __init__(self, crop_px: int, resize_px: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        resize_px = resize_px or round(crop_px / EVAL_CROP_RATIO)
        self.transforms = T.Compose([
            T.Resize(resize_px, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.CenterCrop(crop_px),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float32),
            T.Normalize(mean, std),
        ])

    def __call__(self, image):
        return self.transforms(image)

