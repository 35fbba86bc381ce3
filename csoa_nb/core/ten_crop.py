"""10-crop classification scores of the paper's protocol (Kou et al., WACV 2021, Sec. 4.1,
after Zhou et al., CVPR 2016): softmax scores averaged over ten crops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import check_map

__all__ = ["ten_crop_logits"]


def ten_crop_logits(model: Callable[[Tensor], Tensor], images: Tensor, crop_size: int) -> Tensor:
    """10-crop classification scores of Sec. 4.1 (after Zhou et al., CVPR 2016): ``B x C`` softmax
    probabilities averaged over the four corner and centre ``crop_size`` crops of ``images``
    (``B x 3 x H x W``) and of their flips. Probabilities despite the name: the paper "averages the
    scores from the softmax layer with 10 crops"; ranking metrics take them like logits.
    ``model`` maps ``B x 3 x crop x crop`` to logits ``B x C`` (wrap ``CSoANet``), one crop batch
    at a time; call it under ``torch.no_grad()``.

    Raises:
        ValueError: bad image shape, NaN, crop larger than the image, or a model output that
            is not a ``B x C`` tensor.
    """
    images = check_map(images, "images", ndim=4)
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)):
        raise ValueError(f"crop_size must be a positive int; got {crop_size!r}")
    h, w = images.shape[-2:]
    if not 0 < crop_size <= min(h, w):
        raise ValueError(
            f"crop_size must be in [1, {min(h, w)}] for {h}x{w} images; got {crop_size}"
        )
    # torchvision on first use: its import costs about 2 s
    import torchvision.transforms.functional as TF

    total: Tensor | None = None
    for i, crop in enumerate(TF.ten_crop(images, [int(crop_size), int(crop_size)])):
        out = model(crop)
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"model must return logits of shape ({images.shape[0]}, C); crop {i} gave {shape}"
            )
        probs = torch.softmax(out.float(), dim=1)
        if total is not None and probs.shape != total.shape:
            raise ValueError("model returned a different number of classes for different crops")
        total = probs if total is None else total + probs
    assert total is not None
    return total / 10.0
