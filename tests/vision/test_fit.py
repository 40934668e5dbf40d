"""fit: the image-training loop behind finetune/scratch, on a tiny CNN and coloured images (seconds on CPU).

Covers learning, the LR schedule (head warm-up, cosine), the linear-probe warm-up of the head, frozen
BatchNorm, checkpoints (resume gives the same model as an uninterrupted run; other settings start afresh).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from curate.vision import fit as fit_module
from curate.vision.checkpoint import load_checkpoint, training_fingerprint
from curate.vision.data import ImageData, Split, load_image_data, per_class_subset
from curate.vision.fit import FitSettings, fit, lr_factor, warm_up_head
from curate.vision.presets import ClassificationPresetEval, ClassificationPresetTrain
from curate.vision.train import LinearHead, train_one_epoch

COLOURS = {"n00000001": (200, 30, 30), "n00000002": (30, 180, 30), "n00000003": (30, 30, 200)}
CPU = torch.device("cpu")


def write_split(root: Path, per_class: int, seed: int) -> Path:
    rng = random.Random(seed)
    for wnid, colour in COLOURS.items():
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
            Image.new("RGB", (rng.randint(30, 50), rng.randint(30, 50)), jitter).save(root / wnid / f"{i}.png")
    return root


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().to(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> ImageData:
    root = tmp_path_factory.mktemp("colours")
    return load_image_data(write_split(root / "train", 8, seed=1), write_split(root / "val", 4, seed=2))


SETTINGS = FitSettings(epochs=3, warmup_probe_epochs=0, warmup_epochs=1, lr=0.05, backbone_lr_scale=0.5,
                       batch_size=8, image_size_px=32, num_workers=0)


def test_fit_learns_colours_and_records_each_epoch(data: ImageData):
    result = fit(tiny_net(), data, SETTINGS, CPU, model_key="tiny", progress=False)
    assert result.top1 == 1.0 and result.k_top5 == 3 and (result.n_train, result.n_val) == (24, 12)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all({"train_loss", "train_top1", "val_top1", "val_top5", "lr"} <= set(row) for row in result.history)
    assert result.resumed_from_epoch is None and result.settings["warmup_epochs"] == 1


def test_schedule_warms_up_the_head_then_decays_by_cosine():
    head, backbone = lr_factor(100, 20, frozen=False), lr_factor(100, 20, frozen=True)
    assert [head(s) for s in (0, 19)] == [1.0, 1.0] and [backbone(s) for s in (0, 19)] == [0.0, 0.0]
    assert head(20) == backbone(20) == 1.0
    assert head(60) == pytest.approx(0.5) and head(100) == pytest.approx(0.0)


def test_backbone_is_frozen_during_warmup(data: ImageData, monkeypatch):
    """During the warm-up epoch only the head changes, and BatchNorm keeps its statistics."""
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = FitSettings(**{**vars(SETTINGS), "epochs": 3, "warmup_epochs": 2})
    calls = []
    real = fit_module.train_one_epoch

    def spy(m, *args, **kwargs):
        calls.append({k: v.clone() for k, v in m.state_dict().items()})
        return real(m, *args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", spy)
    fit(model, data, settings, CPU, model_key="tiny", progress=False)
    after_warmup = calls[1]  # the state entering epoch 2: one warm-up epoch done
    assert torch.equal(after_warmup["features.0.weight"], before["features.0.weight"])
    assert torch.equal(after_warmup["features.1.running_mean"], before["features.1.running_mean"])
    assert not torch.equal(after_warmup["fc.weight"], before["fc.weight"])
    assert not torch.equal(model.state_dict()["features.0.weight"], before["features.0.weight"])


def test_resume_continues_from_the_checkpoint_and_ends_as_an_uninterrupted_run(data: ImageData, tmp_path: Path,
                                                                                monkeypatch):
    whole = tiny_net()
    uninterrupted = fit(whole, data, SETTINGS, CPU, model_key="tiny", progress=False)

    checkpoint = tmp_path / "ckpt.pt"
    real_evaluate, calls = fit_module.evaluate, []

    def interrupted_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill after epoch 1's checkpoint
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(fit_module, "evaluate", interrupted_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_net(), data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    monkeypatch.setattr(fit_module, "evaluate", real_evaluate)
    fingerprint = training_fingerprint({"settings": vars(SETTINGS), "model": "tiny",
                                        "data": fit_module.data_identity(data)})
    assert load_checkpoint(checkpoint, fingerprint).epoch == 1

    resumed_model = tiny_net(seed=123)  # whatever it starts as, the checkpoint replaces it
    resumed = fit(resumed_model, data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    assert resumed.resumed_from_epoch == 1
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in uninterrupted.history]
    for key, value in whole.state_dict().items():
        assert torch.allclose(value.float(), resumed_model.state_dict()[key].float()), key
    assert load_checkpoint(checkpoint, fingerprint).states.keys() == {"model"}  # finished: the model only


def test_a_finished_checkpoint_is_only_evaluated(data: ImageData, tmp_path: Path, monkeypatch):
    checkpoint = tmp_path / "ckpt.pt"
    first = fit(tiny_net(), data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    monkeypatch.setattr(fit_module, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = fit(tiny_net(seed=5), data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    assert again.resumed_from_epoch == 3 and again.top1 == first.top1 and again.history == first.history


def test_checkpoint_of_other_settings_is_ignored(data: ImageData, tmp_path: Path):
    checkpoint = tmp_path / "ckpt.pt"
    fit(tiny_net(), data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    other = FitSettings(**{**vars(SETTINGS), "lr": 0.01})
    result = fit(tiny_net(), data, other, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    assert result.resumed_from_epoch is None and len(result.history) == 3


def test_damaged_checkpoint_is_ignored(data: ImageData, tmp_path: Path):
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    result = fit(tiny_net(), data, SETTINGS, CPU, model_key="tiny", checkpoint=checkpoint, progress=False)
    assert result.resumed_from_epoch is None and result.top1 == 1.0


def test_probe_warmup_initialises_the_head(data: ImageData):
    """Before any epoch, the head trained on frozen features already separates the colours."""
    from curate.vision.data import image_loader
    from curate.vision.train import evaluate

    model = tiny_net()
    warm_up_head(model, data, FitSettings(warmup_probe_epochs=50, lr=0.05, image_size_px=32), CPU, "test")
    loader = image_loader(data.val, ClassificationPresetEval(32), 8)
    assert evaluate(model, loader, 3, data.class_names)[0] == 1.0


def test_linear_head_folds_into_a_plain_linear():
    torch.manual_seed(0)
    x = torch.randn(20, 6) * 3 + 1
    head = LinearHead(x.mean(0), x.std(0), 4)
    plain = nn.Linear(6, 4)
    head.fold_into(plain)
    assert torch.allclose(head(x), plain(x), atol=1e-5)


def test_frozen_batchnorm_keeps_its_statistics(data: ImageData):
    from curate.vision.data import image_loader

    model = tiny_net()
    before = model.features[1].running_mean.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = image_loader(data.train, ClassificationPresetTrain(32), 8, shuffle_seed=0)
    train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, freeze_batchnorm=True)
    assert torch.equal(model.features[1].running_mean, before)
    assert not torch.equal(model.features[1].weight, torch.ones(8))  # its scale still trains
    train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer)
    assert not torch.equal(model.features[1].running_mean, before)


def test_presets_shape_and_unknown_augment():
    image = Image.new("RGB", (50, 40), (10, 20, 30))
    for augment in ("flip_crop", "trivial_augment", "randaugment"):
        assert ClassificationPresetTrain(24, augment, random_erase_prob=0.5)(image).shape == (3, 24, 24)
    assert ClassificationPresetEval(24)(image).shape == (3, 24, 24)
    with pytest.raises(ValueError, match="unknown augment 'mixup'"):
        ClassificationPresetTrain(24, "mixup")


def test_per_class_subset_is_seeded_nested_and_capped():
    split = Split([Path(f"{i}.png") for i in range(30)], [i % 3 for i in range(30)], [str(i) for i in range(30)])
    small, large = per_class_subset(split, 2, seed=0), per_class_subset(split, 5, seed=0)
    assert sorted(small.targets) == [0, 0, 1, 1, 2, 2] and len(large) == 15
    assert set(small.keys) <= set(large.keys)
    assert small.keys == per_class_subset(split, 2, seed=0).keys != per_class_subset(split, 2, seed=1).keys
    assert len(per_class_subset(split, 100, seed=0)) == 30
