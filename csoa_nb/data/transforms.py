"""Joint image / box / mask transforms for WSOL (the wsolevaluation / ACoL protocol).

Train: resize to `resize_size x resize_size` (square, aspect ratio not kept), random
`crop_size` crop, horizontal flip with probability `flip_p`. Test: the same resize, then a
centre crop. Boxes (x0, y0, x1, y1; x1/y1 exclusive) and masks follow the same geometry, so the
ground truth always refers to the pixels of the returned tensor.

Randomness comes from torch (`torch.randint` / `torch.rand` with an optional
`torch.Generator`), so a DataLoader's per-worker seeding makes training reproducible.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(image: Image.Image) -> torch.Tensor:
    """RGB `PIL.Image` -> float tensor 3xHxW normalised with the ImageNet mean/std."""
    # torchvision on first use: its import costs about 2 s
    from torchvision.transforms import functional as TF

    return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


def denormalize(image_tensor: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of a `3xHxW` or `Bx3xHxW` tensor; values in [0, 1]."""
    shape = (3, 1, 1) if image_tensor.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=image_tensor.dtype, device=image_tensor.device)
    std = torch.tensor(IMAGENET_STD, dtype=image_tensor.dtype, device=image_tensor.device)
    return (image_tensor * std.view(shape) + mean.view(shape)).clamp(0.0, 1.0)


def mask_to_tensor(mask: Image.Image) -> torch.Tensor:
    """Binary mask image (0/255 or 0/1) -> float tensor 1xHxW with values in {0, 1}."""
    # torchvision on first use: its import costs about 2 s
    from torchvision.transforms import functional as TF

    return (TF.pil_to_tensor(mask.convert("L")) > 0).float()


def _drop_empty(boxes: torch.Tensor) -> torch.Tensor:
    """Drop boxes with zero area after clipping, unless that would leave none."""
    if boxes.numel() == 0:
        return boxes
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep] if bool(keep.any()) else boxes


class WSOLTransform:
    """Resize / crop / flip an image with its boxes and optional mask.

    Args:
        train: random crop + horizontal flip (True) or centre crop (False).
        resize_size: side of the square the image is first resized to.
        crop_size: side of the square crop (`<= resize_size`).
        flip_p: probability of the horizontal flip in training (0.5 as in the paper's code;
            1.0 or 0.0 force it, e.g. in tests).
    """

    def __init__(self, train: bool, resize_size: int, crop_size: int, flip_p: float = 0.5):
        if int(resize_size) < 1 or int(crop_size) < 1:
            raise ValueError(
                f"resize_size ({resize_size}) and crop_size ({crop_size}) must be positive"
            )
        if crop_size > resize_size:
            raise ValueError(
                f"crop_size ({crop_size}) must not exceed resize_size ({resize_size}): "
                "lower crop_size or raise resize_size"
            )
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.train = bool(train)
        self.resize_size = int(resize_size)
        self.crop_size = int(crop_size)
        self.flip_p = float(flip_p)

    def __repr__(self) -> str:
        return (
            f"WSOLTransform(train={self.train}, resize_size={self.resize_size}, "
            f"crop_size={self.crop_size}, flip_p={self.flip_p})"
        )

    def __call__(
        self,
        image: Image.Image,
        boxes: torch.Tensor,
        mask: Image.Image | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Transform PIL `image`, `boxes` (Kx4, original pixels) and `mask` (PIL or None) to
        `(image 3xCxC normalised, boxes Kx4 in crop pixels, mask 1xCxC or None)`."""
        image_t, mask_t = self.resize(image, mask)
        return self.place(image_t, boxes, mask_t, image.size, generator)

    def resize(
        self, image: Image.Image, mask: Image.Image | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step 1, the deterministic part: `image` and `mask` resized to `resize_size` square,
        as the normalised image tensor and the {0, 1} mask tensor. A reader that keeps these
        (`csoa_nb.engine.datasets.SeededItems`) only pays `place` per item."""
        size = (self.resize_size, self.resize_size)
        image_t = normalize(image.resize(size, Image.BILINEAR))
        mask_t = None if mask is None else mask_to_tensor(mask.resize(size, Image.NEAREST))
        return image_t, mask_t

    def place(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        mask: torch.Tensor | None,
        original_size: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Steps 2-3 on the output of `resize`: the crop (random in training, else centred) and
        the training flip, with `boxes` (Kx4, pixels of the `original_size` = (width, height)
        image) moved along. Crop and flip only move pixels, and the normalisation is per pixel,
        so this equals cropping and flipping the PIL image first, bit for bit."""
        width, height = original_size
        size, crop = self.resize_size, self.crop_size
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).clone()
        boxes[:, 0::2] *= size / width  # pixel edges map linearly
        boxes[:, 1::2] *= size / height

        # 2. crop: random in training, centred (torchvision's rounding) at test time
        if self.train:
            top = int(torch.randint(0, size - crop + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - crop + 1, (1,), generator=generator))
        else:
            top = int(round((size - crop) / 2.0))
            left = int(round((size - crop) / 2.0))
        image = image[:, top:top + crop, left:left + crop]
        if mask is not None:
            mask = mask[:, top:top + crop, left:left + crop]
        boxes[:, 0::2] = (boxes[:, 0::2] - left).clamp(0, crop)
        boxes[:, 1::2] = (boxes[:, 1::2] - top).clamp(0, crop)

        # 3. horizontal flip (training only): x0' = W - x1, x1' = W - x0
        if self.train and float(torch.rand(1, generator=generator)) < self.flip_p:
            image = image.flip(-1)
            if mask is not None:
                mask = mask.flip(-1)
            boxes = torch.stack(
                [crop - boxes[:, 2], boxes[:, 1], crop - boxes[:, 0], boxes[:, 3]], dim=1
            )
        mask = None if mask is None else mask.contiguous()
        return image.contiguous(), _drop_empty(boxes), mask


def apply_transform(
    transform: WSOLTransform | None,
    image: Image.Image,
    boxes: torch.Tensor,
    mask: Image.Image | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The step every reader ends with: `transform` or, when None, original size + normalise.

    With `transform=None` the image keeps its size, the boxes stay in original pixels and the
    mask is converted to a 1xHxW {0, 1} tensor.
    """
    if transform is None:
        mask_tensor = mask_to_tensor(mask) if mask is not None else None
        return normalize(image), torch.as_tensor(boxes, dtype=torch.float32), mask_tensor
    return transform(image, boxes, mask)


def make_sample(
    transform: WSOLTransform | None,
    image: Image.Image,
    boxes: torch.Tensor,
    mask: Image.Image | None,
    label: int,
    index: int,
) -> dict[str, Any]:
    """A reader's item (DESIGN.md): `apply_transform`, then `sample_dict` (`mask` if any)."""
    return sample_dict(*apply_transform(transform, image, boxes, mask), label, index)


def sample_dict(
    image: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor | None, label: int, index: int
) -> dict[str, Any]:
    """The sample dict of transformed tensors (`mask` only when the dataset has one)."""
    sample: dict[str, Any] = {"image": image, "label": label, "boxes": boxes, "index": index}
    if mask is not None:
        sample["mask"] = mask
    return sample
