"""10-crop classification scores of the paper's protocol (Kou et al., WACV 2021, Sec. 4.1,
after Zhou et al., CVPR 2016): softmax scores averaged over ten crops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import Tensor

from csoa_nb.base.checks import check_map

__all__ = ["ten_crop_logits"]


def ten_crop_logits(model: Callable[[Tensor], Tensor], images: Tensor, crop_size: int) -> Tensor:
    """10-crop classification scores of Sec. 4.1 (following Zhou et al., CVPR 2016).

    The four corner crops and the centre crop of ``crop_size x crop_size`` and the same five
    crops of the horizontally flipped image (``torchvision.transforms.functional.ten_crop``)
    are classified; the **softmax probabilities** of the 10 crops are averaged. Despite the
    name the result is therefore averaged softmax scores, not logits, because the paper
    "averages the scores from the softmax layer with 10 crops". Ranking-based metrics
    (``localization_errors``) accept them like logits.

    Call under ``torch.no_grad()`` in evaluation; the model is applied to one crop batch at a
    time (memory of one ``B``-image forward pass).

    Args:
        model: callable mapping a float tensor ``B x 3 x crop x crop`` to logits ``B x C``
            (for ``CSoANet`` wrap it, e.g. ``lambda x: net(x).<logits field>``).
        images: float tensor ``B x 3 x H x W`` (normalised images), ``H, W >= crop_size``.
        crop_size: side of the square crops in pixels.

    Returns:
        float tensor ``B x C`` of averaged probabilities; every row sums to 1.

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
