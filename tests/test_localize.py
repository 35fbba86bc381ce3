"""Tests of csoa_nb.core.localize (Eq. 13 of CSoA). Expected values are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from csoa_nb.core.localize import (
    binarize,
    component_boxes,
    csoa_box,
    fuse_cams,
    largest_component_box,
    normalize_cam,
    slice_components,
    upsample_cam,
)


def gaussian_blob(h: int, w: int, cy: float, cx: float, sigma: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


# ----------------------------------------------------------------------------- normalize
def test_normalize_cam_hand_example():
    cam = torch.tensor([[1.0, 3.0], [5.0, 9.0]])
    # min 1, max 9, span 8: (x - 1) / 8
    expected = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    assert torch.allclose(normalize_cam(cam), expected)


def test_normalize_cam_per_map_and_constant():
    cam = torch.stack([torch.tensor([[2.0, 4.0], [6.0, 10.0]]), torch.full((2, 2), 7.0)])
    out = normalize_cam(cam[None])  # 1 x 2 x 2 x 2: leading dims allowed
    assert out.shape == (1, 2, 2, 2)
    # map 0: (x - 2) / 8 ; map 1 constant -> zeros
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[0, 1], torch.zeros(2, 2))


def test_normalize_cam_errors():
    with pytest.raises(ValueError, match="cam contains NaN"):
        normalize_cam(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="at least 2 dims"):
        normalize_cam(torch.ones(4))
    with pytest.raises(ValueError, match="torch.Tensor"):
        normalize_cam([[1.0, 2.0]])


# ----------------------------------------------------------------------------- upsample
def test_upsample_cam_bilinear_half_pixel():
    cam = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    out = upsample_cam(cam, (2, 4))
    # align_corners=False: source x = (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped to [0, 1] -> values 0, 0.25, 0.75, 1
    assert out.shape == (1, 2, 4)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_upsample_cam_errors():
    with pytest.raises(ValueError, match="3 dims"):
        upsample_cam(torch.ones(2, 2), (4, 4))
    with pytest.raises(ValueError, match="size"):
        upsample_cam(torch.ones(1, 2, 2), (4, 0))
    with pytest.raises(ValueError, match="NaN"):
        upsample_cam(torch.full((1, 2, 2), float("nan")), (4, 4))


# ----------------------------------------------------------------------------- binarize
def test_binarize_hand_example_theta_half():
    cam = torch.tensor([[0.0, 2.0, 4.0], [6.0, 8.0, 3.0], [1.0, 5.0, 4.0]])
    # max 8, theta 0.5 -> threshold 4, strict ">": 6, 8, 5 pass; the two 4s do not
    expected = torch.tensor([[False, False, False], [True, True, False], [False, True, False]])
    assert torch.equal(binarize(cam, 0.5), expected)


def test_binarize_is_per_map():
    cam = torch.stack([torch.tensor([[1.0, 2.0]]), torch.tensor([[10.0, 3.0]])])
    # map 0: 0.5 * 2 = 1 -> [F, T]; map 1: 0.5 * 10 = 5 -> [T, F]
    assert binarize(cam, 0.5).tolist() == [[[False, True]], [[True, False]]]


def test_binarize_theta_monotone_on_smooth_blob():
    cam = gaussian_blob(32, 40, 15.0, 22.0, 6.0)
    previous_mask, previous_area = None, float("inf")
    for theta in np.linspace(0.0, 1.0, 21):
        mask = binarize(cam, float(theta))
        box = largest_component_box(mask)
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        if previous_mask is not None:
            assert not (mask & ~previous_mask).any()  # higher theta -> subset
        assert area <= previous_area
        previous_mask, previous_area = mask, area
    assert previous_area == 0.0  # theta = 1: nothing is > max


@pytest.mark.parametrize("theta", [-0.1, 1.5, float("nan"), "0.2", True])
def test_binarize_bad_theta(theta):
    with pytest.raises(ValueError, match="theta"):
        binarize(torch.rand(3, 3), theta)


# ----------------------------------------------------------------------------- fuse
def test_fuse_cams_union_identity():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 7, 7, generator=gen) * 5 - 1
    b = torch.rand(4, 5, 5, generator=gen) * 3  # other resolution, like S_F
    size = (28, 28)
    fused = fuse_cams(a, b, size)
    na = normalize_cam(upsample_cam(a, size))
    nb = normalize_cam(upsample_cam(b, size))
    assert fused.shape == (4, 28, 28)
    assert torch.allclose(fused.amax(dim=(-2, -1)), torch.ones(4))
    for theta in (0.0, 0.1, 0.25, 0.5, 0.8, 1.0):
        union = binarize(na, theta) | binarize(nb, theta)  # Eq. 13 then union
        assert torch.equal(binarize(fused, theta), union)


def test_fuse_cams_single_and_constant():
    a = torch.rand(2, 4, 4)
    assert torch.allclose(fuse_cams(a, None, (8, 8)), normalize_cam(upsample_cam(a, (8, 8))))
    # a constant S_F normalises to 0 and adds nothing
    assert torch.allclose(fuse_cams(a, torch.ones(2, 4, 4), (8, 8)), fuse_cams(a, None, (8, 8)))


def test_fuse_cams_errors():
    with pytest.raises(ValueError, match="batch size"):
        fuse_cams(torch.rand(2, 4, 4), torch.rand(3, 4, 4), (8, 8))
    with pytest.raises(ValueError, match="cam_feature contains NaN"):
        fuse_cams(torch.rand(1, 4, 4), torch.full((1, 4, 4), float("nan")), (8, 8))


# ----------------------------------------------------------------------------- components
def two_blobs() -> torch.Tensor:
    m = torch.zeros(10, 10, dtype=torch.bool)
    m[1:3, 1:4] = True  # rows 1-2, cols 1-3: 2 * 3 = 6 px -> box (1, 1, 4, 3)
    m[5:9, 4:8] = True  # rows 5-8, cols 4-7: 4 * 4 = 16 px -> box (4, 5, 8, 9)
    return m


def test_largest_component_box_two_blobs():
    box = largest_component_box(two_blobs())
    assert box.dtype == torch.float32
    assert box.tolist() == [4.0, 5.0, 8.0, 9.0]  # exclusive ends: last col 7 -> x1 = 8


def test_largest_component_box_diagonal_is_8_connected():
    m = torch.zeros(10, 10, dtype=torch.bool)
    m[2, 2] = m[3, 3] = m[4, 4] = True  # diagonal chain, 3 px, one 8-connected component
    m[8, 0:2] = True  # 2 px
    # with 4-connectivity the biggest part would be the 2-px bar; with 8 it is the chain
    assert largest_component_box(m).tolist() == [2.0, 2.0, 5.0, 5.0]


def test_largest_component_box_tie_smallest_label():
    m = torch.zeros(6, 6, dtype=torch.bool)
    m[4, 0:3] = True  # 3 px, first pixel later in raster order
    m[0:3, 5] = True  # 3 px, first pixel (0, 5) comes first -> label 1
    assert largest_component_box(m).tolist() == [5.0, 0.0, 6.0, 3.0]


def test_largest_component_box_empty_and_batched():
    assert largest_component_box(torch.zeros(5, 5, dtype=torch.bool)).tolist() == [0, 0, 0, 0]
    full = torch.ones(10, 10, dtype=torch.bool)
    batch = torch.stack([two_blobs(), torch.zeros(10, 10, dtype=torch.bool), full])
    boxes = largest_component_box(batch)
    assert boxes.shape == (3, 4)
    expected = [[4, 5, 8, 9], [0, 0, 0, 0], [0, 0, 10, 10]]
    assert boxes.tolist() == expected
    for i in range(3):  # batched == per image
        assert torch.equal(boxes[i], largest_component_box(batch[i]))


def test_largest_component_box_errors():
    with pytest.raises(ValueError, match="bool"):
        largest_component_box(torch.ones(4, 4))
    with pytest.raises(ValueError, match="2 or 3 dims"):
        largest_component_box(torch.ones(1, 1, 4, 4, dtype=torch.bool))


def test_component_boxes():
    boxes = component_boxes(two_blobs())
    assert boxes.tolist() == [[1, 1, 4, 3], [4, 5, 8, 9]]  # label (raster) order
    empty = component_boxes(torch.zeros(3, 3, dtype=torch.bool))
    assert empty.shape == (0, 4)
    with pytest.raises(ValueError, match="2 dims"):
        component_boxes(torch.zeros(1, 3, 3, dtype=torch.bool))


def scipy_components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Reference: (x0, y0, x1, y1, pixel count) of every 8-connected component, label order."""
    lab, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    area = np.bincount(lab.ravel())
    return [
        (sx.start, sy.start, sx.stop, sy.stop, int(area[k + 1]))
        for k, (sy, sx) in enumerate(ndimage.find_objects(lab))
    ]


@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_slice_components_matches_per_slice_labelling(kind):
    rng = np.random.default_rng(3)
    if kind == "noise":
        stack = rng.random((6, 20, 24)) > 0.55
    else:
        blob = gaussian_blob(20, 24, 9.0, 11.0, 5.0).numpy()
        stack = blob[None] > np.linspace(0.05, 0.9, 6)[:, None, None]
    boxes, slice_index, area = slice_components(torch.from_numpy(stack))
    rows = [(s, *c) for s in range(stack.shape[0]) for c in scipy_components(stack[s])]
    ref = np.array(rows)
    assert np.array_equal(slice_index, ref[:, 0])
    assert np.array_equal(boxes, ref[:, 1:5])
    assert np.array_equal(area, ref[:, 5])


def test_pixel_counts_from_borders_match_labelling_on_random_masks():
    """Pick's-theorem counts (holes, nested components, one-pixel lines, diagonal pinches,
    image borders) equal scipy's pixel counts on 3,000 random masks; so does the order."""
    rng = np.random.default_rng(0)
    for trial in range(3000):
        h, w = (int(v) for v in rng.integers(1, 24, size=2))
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if trial % 3 == 0:  # blobs with holes and specks
            mask = ndimage.binary_dilation(mask) ^ (rng.random((h, w)) < 0.1)
        boxes, slice_index, area = slice_components(mask[None])
        got = [(*b, a) for b, a in zip(boxes.tolist(), area.tolist(), strict=True)]
        assert got == scipy_components(mask), mask.astype(int)
        assert not slice_index.any()


def test_pixel_count_of_a_ring_with_a_nested_blob():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1:8, 1:8] = True
    mask[2:7, 2:7] = False  # ring: 49 - 25 = 24 px, one hole
    mask[4, 4] = True  # one pixel inside the hole: its own component
    boxes, _, area = slice_components(mask[None])
    assert boxes.tolist() == [[1, 1, 8, 8], [4, 4, 5, 5]]
    assert area.tolist() == [24, 1]


# ----------------------------------------------------------------------------- csoa_box
def test_csoa_box_union_joins_two_cams():
    cam_last = torch.zeros(1, 8, 8)
    cam_last[0, 2:6, 1:4] = 1.0  # rows 2-5, cols 1-3 -> box (1, 2, 4, 6)
    cam_feature = torch.zeros(1, 8, 8)
    cam_feature[0, 3:7, 4:7] = 0.3  # rows 3-6, cols 4-6 -> box (4, 3, 7, 7), other scale
    size = (8, 8)  # same size: upsampling is the identity
    assert csoa_box(cam_last, None, 0.5, size).tolist() == [[1, 2, 4, 6]]
    assert csoa_box(cam_feature, None, 0.5, size).tolist() == [[4, 3, 7, 7]]
    # columns 3 and 4 touch on rows 3-5: one component spanning cols 1-6, rows 2-6
    assert csoa_box(cam_last, cam_feature, 0.5, size).tolist() == [[1, 2, 7, 7]]


def test_csoa_box_upsamples_to_image_size():
    cam = gaussian_blob(7, 7, 3.0, 3.0, 1.5)[None].repeat(2, 1, 1)
    boxes = csoa_box(cam, cam * 2, 0.2, (56, 56))
    assert boxes.shape == (2, 4)
    x0, y0, x1, y1 = boxes[0].tolist()
    assert 0 <= x0 < 28 < x1 <= 56 and 0 <= y0 < 28 < y1 <= 56  # centred blob
    assert abs((x0 + x1) / 2 - 28) <= 1 and abs((y0 + y1) / 2 - 28) <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csoa_box_equals_threshold_of_fused_map(dtype):
    """The fast path (threshold of the raw upsampled maps) gives exactly the boxes of
    binarize(fuse_cams(...)) + largest_component_box, also where values sit on the threshold."""
    gen = torch.Generator().manual_seed(1)
    last = (torch.rand(40, 7, 7, generator=gen, dtype=dtype) * 4 - 1).round(decimals=1)
    feature = torch.rand(40, 5, 6, generator=gen, dtype=dtype) * 3
    feature[3] = 2.0  # constant S_F: adds nothing
    last[4] = 0.5  # constant S_L
    size = (33, 29)
    for theta in (0.0, 0.1, 0.3, 0.5, 0.7, 1.0):
        expected = largest_component_box(binarize(fuse_cams(last, feature, size), theta))
        assert torch.equal(csoa_box(last, feature, theta, size), expected), theta
        expected = largest_component_box(binarize(fuse_cams(last, None, (7, 7)), theta))
        assert torch.equal(csoa_box(last, None, theta, (7, 7)), expected), theta


def test_csoa_box_errors():
    with pytest.raises(ValueError, match="theta"):
        csoa_box(torch.rand(1, 4, 4), None, 2.0, (8, 8))
    with pytest.raises(ValueError, match="cam_last contains NaN"):
        csoa_box(torch.full((1, 4, 4), float("nan")), None, 0.2, (8, 8))
    with pytest.raises(ValueError, match="image_size"):
        csoa_box(torch.rand(1, 4, 4), None, 0.2, (8,))
