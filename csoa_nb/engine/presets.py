"""The presets of `RunConfig` (`csoa_nb.engine.config`): named starting points for runs.

The `paper` preset is Section 4.1 of the paper: SGD, lr 0.001, momentum 0.9, weight decay 5e-4,
lr x 0.95 each epoch, batch 48 with at most 12 classes, ImageNet-pretrained VGG16 (or
InceptionV3), AlexNet embedding network W_E, 10-crop classification. The `cpu` preset runs the
same recipe on the offline synthetic benchmark with the slim backbone, fine-tuned from our own
pretraining stage (`csoa_nb.engine.pretrain`), standing in for ImageNet weights; it trains in
bfloat16 autocast on channels-last tensors (the losses of Eq. 5 and Eq. 12 and all evaluation
in float32), which halves the time of a step on a CPU with bf16 instructions. The `smoke`
preset exercises every code path in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "PRESET_SPECS", "Preset"]

_SETTINGS: dict[str, dict[str, Any]] = {
    # seconds: exercises every code path (pretraining too) on a tiny benchmark
    "smoke": dict(
        num_classes=4,
        images_per_class=8,
        test_per_class=4,
        synthetic_size=40,
        resize_size=36,
        crop_size=32,
        slim_width=4,
        pretrained="pretrain",
        pretrain_classes=4,
        pretrain_images_per_class=6,
        pretrain_epochs=1,
        epochs=2,
        batch_size=8,
        classes_per_batch=4,
        val_images=8,
    ),
    # minutes on a 2-core CPU: the offline analogue of the paper's protocol
    "cpu": dict(pretrained="pretrain", slim_width=8, lr=0.005, head_lr_mult=10.0, amp=True,
                channels_last=True, val_per_class=10),
    # Sec. 4.1 on real CUB-200-2011 with a GPU
    "paper": dict(
        dataset="cub",
        num_classes=200,
        resize_size=256,
        crop_size=224,
        backbone="vgg16",
        head_width=1024,
        pretrained="VGG16_Weights.IMAGENET1K_V1",
        embedding="alexnet",
        embedding_weights="AlexNet_Weights.IMAGENET1K_V1",
        epochs=100,  # not stated in the paper; common for CUB fine-tuning in WSOL code
        batch_size=48,
        classes_per_batch=12,
        lr=0.001,
        momentum=0.9,
        weight_decay=5e-4,
        lr_decay=0.95,
        ten_crop=True,
        val_images=1000,
        device="cuda",
        num_workers=8,
    ),
}

_PAPER_ILSVRC: dict[str, Any] = dict(
    num_classes=1000,
    backbone="inception_v3",
    head_width=1024,
    pretrained="Inception_V3_Weights.IMAGENET1K_V1",
    epochs=20,  # not stated in the paper
)


@dataclass(frozen=True)
class Preset:
    """A named starting point for runs: its `RunConfig` settings, the seeds its sweeps use
    (`csoa_nb.engine.sweeps`), and its variants by data set (fields that replace the
    settings when a run overrides `dataset` with that key)."""

    settings: dict[str, Any]
    seeds: tuple[int, ...]
    headline_seeds: tuple[int, ...]  # the headline rows of Table 1 (narrower paired CIs)
    by_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the seeds each grid point of the WSOL methods' search is trained with; a point's score is
    # its mean validation MaxBoxAccV2 over them (`csoa_nb.engine.sweeps.chosen_settings`)
    search_seeds: tuple[int, ...] = (0,)


#: The presets (README, "Presets"): five seeds for every compared row of the cpu preset, in
#: every sweep and both regimes (one seed set, so that one comparison has one number on every
#: page), one for the smoke test and (a GPU's budget) the paper preset.
PRESET_SPECS: dict[str, Preset] = {
    "smoke": Preset(_SETTINGS["smoke"], seeds=(0,), headline_seeds=(0,)),
    "cpu": Preset(_SETTINGS["cpu"], seeds=(0, 1, 2, 3, 4), headline_seeds=(0, 1, 2, 3, 4),
                  search_seeds=(0, 1, 2)),
    "paper": Preset(_SETTINGS["paper"], seeds=(0,), headline_seeds=(0,),
                    by_dataset={"ilsvrc": _PAPER_ILSVRC}),
}
#: The preset names.
PRESETS = tuple(PRESET_SPECS)
