"""WSOLTransform: boxes and masks follow the image through resize, crop and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from csoa_nb.data import IMAGENET_MEAN, IMAGENET_STD, WSOLTransform, denormalize
from csoa_nb.data import transforms as T

BOX = torch.tensor([[4.0, 2.0, 12.0, 10.0]])  # on a 20 x 16 image


def noise_image(width: int = 20, height: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_constants_and_denormalize_roundtrip() -> None:
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    img = noise_image()
    tensor = T.normalize(img)
    back = denormalize(tensor)
    expected = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    assert torch.allclose(back, expected, atol=1e-6)
    assert denormalize(tensor[None]).shape == (1, 3, 16, 20)


def test_test_resize_scales_exactly() -> None:
    image, boxes, mask = WSOLTransform(False, 10, 10)(noise_image(), BOX)
    # x * 10/20, y * 10/16: (4, 2, 12, 10) -> (2, 1.25, 6, 6.25)
    assert image.shape == (3, 10, 10) and mask is None
    assert boxes.tolist() == [[2.0, 1.25, 6.0, 6.25]]


def test_center_crop_shifts_and_clips() -> None:
    _, boxes, _ = WSOLTransform(False, 10, 6)(noise_image(), BOX)
    # resized box (2, 1.25, 6, 6.25); centre offset round((10 - 6) / 2) = 2 on both axes
    # -> (0, -0.75, 4, 4.25) -> clipped to [0, 6]: (0, 0, 4, 4.25)
    assert boxes.tolist() == [[0.0, 0.0, 4.0, 4.25]]


def test_forced_flip() -> None:
    _, boxes, _ = WSOLTransform(True, 10, 10, flip_p=1.0)(noise_image(), BOX)
    # resized (2, 1.25, 6, 6.25); flip on W = 10: x0' = 10 - 6 = 4, x1' = 10 - 2 = 8
    assert boxes.tolist() == [[4.0, 1.25, 8.0, 6.25]]
    _, boxes, _ = WSOLTransform(True, 10, 10, flip_p=0.0)(noise_image(), BOX)
    assert boxes.tolist() == [[2.0, 1.25, 6.0, 6.25]]


def test_random_crop_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([3, 1])  # top = 3, left = 1

    def fake_randint(low: int, high: int, size: tuple, generator=None) -> torch.Tensor:
        assert (low, high) == (0, 10 - 6 + 1)
        return torch.tensor([next(draws)])

    monkeypatch.setattr(T.torch, "randint", fake_randint)
    _, boxes, _ = WSOLTransform(True, 10, 6, flip_p=0.0)(noise_image(), BOX)
    # resized (2, 1.25, 6, 6.25) - (left 1, top 3) = (1, -1.75, 5, 3.25) -> (1, 0, 5, 3.25)
    assert boxes.tolist() == [[1.0, 0.0, 5.0, 3.25]]


def test_generator_makes_it_deterministic() -> None:
    tf = WSOLTransform(True, 12, 8)
    outs = [tf(noise_image(), BOX, generator=torch.Generator().manual_seed(s)) for s in (5, 5)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    results = {
        tuple(tf(noise_image(), BOX, generator=torch.Generator().manual_seed(s))[1][0].tolist())
        for s in range(30)
    }
    assert len(results) > 5  # crops/flips really vary with the seed


def test_zero_area_boxes_dropped_unless_alone() -> None:
    tf = WSOLTransform(False, 20, 10)  # no scaling; centre crop offset 5
    both = torch.tensor([[0.0, 0.0, 4.0, 4.0], [8.0, 6.0, 12.0, 10.0]])
    _, boxes, _ = tf(noise_image(20, 20), both)
    # first box ends at x = 4 < offset 5 -> empty after clipping, dropped; second shifted by 5
    assert boxes.tolist() == [[3.0, 1.0, 7.0, 5.0]]
    _, boxes, _ = tf(noise_image(20, 20), both[:1])
    assert boxes.tolist() == [[0.0, 0.0, 0.0, 0.0]]  # kept (clipped) when nothing else remains


def test_mask_and_image_follow_flip() -> None:
    # 16x16 image, red rectangle = mask on columns 2..7, rows 2..9 (box (2, 2, 8, 10))
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[2:10, 2:8, 0] = 255
    mask = Image.fromarray(((pixels[..., 0] > 0) * 255).astype(np.uint8))
    box = torch.tensor([[2.0, 2.0, 8.0, 10.0]])
    image, boxes, mask_t = WSOLTransform(True, 8, 8, flip_p=1.0)(Image.fromarray(pixels), box, mask)
    # resize x0.5 -> (1, 1, 4, 5); flip on W = 8 -> (4, 1, 7, 5)
    assert boxes.tolist() == [[4.0, 1.0, 7.0, 5.0]]
    assert mask_t is not None and mask_t.shape == (1, 8, 8)
    rows = torch.nonzero(mask_t[0].any(dim=1)).flatten()
    cols = torch.nonzero(mask_t[0].any(dim=0)).flatten()
    assert [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1] == [
        4,
        1,
        7,
        5,
    ]
    red = denormalize(image)[0]
    assert red[1:5, 4:7].min() > 0.5 and red[:, :3].max() < 0.2  # the image flipped too


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        WSOLTransform(True, 8, 10)
    with pytest.raises(ValueError, match="flip_p"):
        WSOLTransform(True, 10, 8, flip_p=2.0)


def _pil_reference(transform: WSOLTransform, image: Image.Image, mask: Image.Image,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The transform done on the PIL images, as it was before `resize` / `place`: resize,
    crop and flip the PIL image and mask, then convert and normalise (and whether it
    flipped)."""
    size, crop = transform.resize_size, transform.crop_size
    image = image.resize((size, size), Image.BILINEAR)
    mask = mask.resize((size, size), Image.NEAREST)
    if transform.train:
        top = int(torch.randint(0, size - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, size - crop + 1, (1,), generator=generator))
    else:
        top = left = int(round((size - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    mask = mask.crop((left, top, left + crop, top + crop))
    flipped = transform.train and float(torch.rand(1, generator=generator)) < transform.flip_p
    if flipped:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
    return T.normalize(image), T.mask_to_tensor(mask), flipped


@pytest.mark.parametrize("train", [True, False])
def test_tensor_crop_and_flip_equal_pil_bit_for_bit(train: bool) -> None:
    """`resize` then `place` (crop and flip of the normalised tensors, what a cached reader
    does each epoch) gives the tensors of cropping and flipping the PIL image first."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    mask = Image.fromarray((rng.random((30, 40)) > 0.5).astype(np.uint8) * 255)
    transform = WSOLTransform(train, 24, 17)
    flips = set()
    for seed in range(24):
        got_image, _, got_mask = transform(image, BOX, mask, torch.Generator().manual_seed(seed))
        want_image, want_mask, flipped = _pil_reference(transform, image, mask,
                                                        torch.Generator().manual_seed(seed))
        assert torch.equal(got_image, want_image) and torch.equal(got_mask, want_mask)
        assert got_image.is_contiguous() and got_image.shape == (3, 17, 17)
        flips.add(flipped)
    assert flips == ({False, True} if train else {False})  # both branches were compared
    resized, resized_mask = transform.resize(image, mask)
    placed = transform.place(resized, BOX, resized_mask, image.size,
                             torch.Generator().manual_seed(5))
    direct = transform(image, BOX, mask, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(placed, direct, strict=True))
