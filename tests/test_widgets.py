"""The book's widgets, driven without a browser, and the computations behind them.

The CAM samples are built by hand: 2 images of 32 x 32 pixels, 3 classes, 8 x 8 maps, so every
box, mask and loss below can be checked with pen and paper.
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from csoa_nb.core.models import EmbeddingNet
from csoa_nb.methods import confseg
from csoa_nb.report import plots, style, views, widgets
from csoa_nb.report.views import coaug_batch, coaug_views, confseg_one, localize_one
from csoa_nb.report.widgets import MaskInspector, ThetaExplorer, mask_inspector, theta_explorer

matplotlib.use("Agg")


def core_and_ring() -> torch.Tensor:
    """8 x 8 map: a core (1) on cells 3..4 in a ring (0.5) on cells 2..5, background 0."""
    # Upsampled x4 (bilinear, align_corners=False) and compared with theta * max (max = 1):
    # along a row through the centre, output pixel i reads the source at s = (i + 0.5) / 4 - 0.5.
    # theta 0.2: between cell 1 (0) and 2 (0.5) the value is 0.5 t > 0.2 for t = s - 1 > 0.4,
    #   i.e. i >= 8; symmetrically i <= 23 -> the ring's box (8, 8, 24, 24).
    # theta 0.8: between cell 2 (0.5) and 3 (1) the value is 0.5 + 0.5 t > 0.8 for t > 0.6,
    #   i.e. i >= 12; symmetrically i <= 19 -> the core's box (12, 12, 20, 20).
    cam = torch.zeros(8, 8)
    cam[2:6, 2:6] = 0.5
    cam[3:5, 3:5] = 1.0
    return cam


def corner_blob() -> torch.Tensor:
    """8 x 8 map: value 1 on cells 0..1 x 0..1, else 0. At theta 0.5 the upsampled map passes
    while 1 - t > 0.5 with t = s - 1, i.e. s < 1.5, i <= 7 -> box (0, 0, 8, 8)."""
    cam = torch.zeros(8, 8)
    cam[:2, :2] = 1.0
    return cam


def make_cams(two_heads: bool = True) -> dict:
    """A hand-made CAM sample in the format of `RunResult.cams()`.

    Image 0 has class 1 (its S_L^1 is `core_and_ring`, GT box = the ring's (8, 8, 24, 24));
    image 1 has class 2 (S_L^2 is `corner_blob`, GT box (0, 0, 8, 8)). S_F = S_L + 1 where
    it exists: S_F differs from S_L by exactly 1 on every pixel.
    """
    cam_last = torch.zeros(2, 3, 8, 8)
    cam_last[0, 1] = core_and_ring()
    cam_last[1, 2] = corner_blob()
    cam_last[0, 0] = 1.0 - core_and_ring()  # a wrong class that lights the background
    cam_last[1, 0] = torch.arange(64.0).reshape(8, 8) / 63
    images = torch.full((2, 32, 32, 3), 128, dtype=torch.uint8)
    images[0, 8:24, 8:24] = torch.tensor([200, 60, 40], dtype=torch.uint8)
    return {
        "images": images,
        "labels": torch.tensor([1, 2]),
        "indices": torch.tensor([0, 1]),
        "boxes": [torch.tensor([[8.0, 8.0, 24.0, 24.0]]), torch.tensor([[0.0, 0.0, 8.0, 8.0]])],
        "masks": None,
        "cam_last": cam_last,
        "cam_feature": cam_last + 1.0 if two_heads else None,
        "probs": torch.tensor([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]),
        "theta": 0.3,
    }


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- Eq. 13
def test_localize_one_core_and_ring_by_hand():
    cams = make_cams(two_heads=False)
    low = localize_one(cams, 0, 0.2)
    high = localize_one(cams, 0, 0.8)
    assert low["box"].tolist() == [8, 8, 24, 24]
    assert high["box"].tolist() == [12, 12, 20, 20]
    assert low["iou"] == pytest.approx(1.0)
    assert high["iou"] == pytest.approx(64 / 256)  # the 8 x 8 core inside the 16 x 16 box
    assert low["class_index"] == 1 and low["binary_feature"] is None
    assert torch.equal(low["union"], low["binary_last"])


def test_localize_one_union_is_or_of_binary_maps():
    cams = make_cams()
    cams["cam_feature"][0, 1] = corner_blob()  # S_F lights another place than S_L
    r = localize_one(cams, 0, 0.5)
    assert torch.equal(r["union"], r["binary_last"] | r["binary_feature"])
    assert r["binary_feature"][:7, :7].all() and not r["binary_last"][:8, :8].any()
    # S_L > 0.5 on pixels 10..21 (between cells 2 and 3 the value 0.5 + 0.5 t passes for
    # t > 0, i >= 10): its component (up to 12 x 12) beats S_F's corner blob (up to 8 x 8)
    assert r["box"].tolist() == [10, 10, 22, 22]


def test_localize_one_rejects_bad_index_and_class():
    cams = make_cams()
    with pytest.raises(ValueError, match="out of range"):
        localize_one(cams, 2, 0.3)
    with pytest.raises(ValueError, match="class_index"):
        localize_one(cams, 0, 0.3, class_index=3)


def test_theta_explorer_follows_the_slider_and_the_image_picker():
    explorer = theta_explorer(make_cams(two_heads=False), theta=0.2)
    assert isinstance(explorer, ThetaExplorer)
    assert explorer.box.tolist() == [8, 8, 24, 24] and explorer.iou == pytest.approx(1.0)
    assert explorer.view.value[:4] == b"\x89PNG"
    first_png = explorer.view.value
    explorer.theta_slider.value = 0.8
    assert explorer.theta == pytest.approx(0.8)
    assert explorer.box.tolist() == [12, 12, 20, 20]
    assert explorer.iou == pytest.approx(0.25)
    assert int(explorer.union.sum()) < int(explorer.binary_last.numel())
    assert explorer.view.value != first_png
    assert "0.25" in explorer.summary.value
    explorer.theta_slider.value = 0.5
    explorer.image_picker.value = 1
    assert explorer.index == 1
    assert explorer.box.tolist() == [0, 0, 8, 8] and explorer.iou == pytest.approx(1.0)


def test_theta_explorer_two_heads_state():
    explorer = ThetaExplorer(make_cams(), theta=0.3)
    assert explorer.binary_feature is not None
    assert torch.equal(explorer.union, explorer.binary_last | explorer.binary_feature)
    assert explorer.widget.children[-1] is explorer.view


# ---------------------------------------------------------------------------- Eq. 2-5, 7
def test_confseg_one_by_hand():
    """S_L^1 of image 0: 4 core cells of 1, 12 ring cells of 0.5, 48 cells of 0.
    mu1 = (4 + 6) / 64 = 10/64; Mask = 54/64 (core), 22/64 (ring), 10/64 (background);
    mu2 = (4 * 54 + 12 * 22 + 48 * 10) / 64^2 = 960 / 4096 = 15/64; Mask > mu2 on core and
    ring: 16 of 64 pixels. xi1 = 25/64, xi2 = -5/64 (Eq. 7). S_F = S_L + 1, so Eq. 5's term is
    1 on the 16 confident pixels: L_inner (pixel mean) = 16/64 = 0.25."""
    r = confseg_one(make_cams(), 0)
    assert r["mu1"] == pytest.approx(10 / 64)
    assert r["mu2"] == pytest.approx(15 / 64)
    assert (r["xi1"], r["xi2"]) == (pytest.approx(25 / 64), pytest.approx(-5 / 64))
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1.0
    assert torch.equal(r["binary"], expected)
    assert torch.equal(r["inner_map"], expected)
    assert r["inner"] == pytest.approx(0.25)
    assert confseg_one(make_cams(two_heads=False), 0)["inner"] is None


def test_mask_inspector_follows_the_pickers():
    cams = make_cams()
    inspector = mask_inspector(cams)
    assert isinstance(inspector, MaskInspector)
    assert inspector.class_index == 1  # ground truth of image 0
    assert inspector.inner_term == pytest.approx(0.25)
    inspector.class_picker.value = 0
    mask, binary = confseg.confidence_mask(cams["cam_last"][0, 0])
    assert torch.allclose(inspector.mask, mask) and torch.equal(inspector.binary, binary)
    # S_F = S_L + 1 for every class: the inner term is the share of confident pixels
    assert inspector.inner_term == pytest.approx(float(binary.mean()))
    inspector.image_picker.value = 1  # resets the class to image 1's ground truth, 2
    assert inspector.class_index == 2
    mask, binary = confseg.confidence_mask(cams["cam_last"][1, 2])
    assert torch.allclose(inspector.mask, mask) and torch.equal(inspector.binary, binary)
    value = confseg.inner_loss(cams["cam_feature"][1:], cams["cam_last"][1:], torch.tensor([2]))
    assert inspector.inner_term == pytest.approx(float(value))
    assert "L_inner" in inspector.summary.value
    assert inspector.view.value[:4] == b"\x89PNG"


def test_mask_inspector_one_head():
    inspector = MaskInspector(make_cams(two_heads=False))
    assert inspector.inner_term is None and inspector.inner_map is None
    assert "L_inner" not in inspector.summary.value


# ---------------------------------------------------------------------------- Eq. 8-12
def test_coaug_views_split_the_image():
    views = coaug_views(make_cams())
    # S * I + (1 - S) * I = I, and the confident background is part of the background
    assert torch.allclose(views["foreground"] + views["background"], views["images"], atol=1e-6)
    assert views["foreground_map"].shape == (2, 1, 32, 32)
    assert float(views["foreground_map"].max()) == pytest.approx(1.0, abs=1e-5)


def test_coaug_batch_distances():
    torch.manual_seed(0)
    out = coaug_batch(make_cams(), EmbeddingNet("slim", slim_width=2))
    assert out["d_cam"].shape == (2,) and out["d_back"].shape == (2,)
    assert out["d_pair"].shape == (2, 2)
    assert torch.allclose(out["d_pair"], out["d_pair"].T)
    assert not out["same_class"][0, 1]  # classes 1 and 2: one different-class pair
    assert out["same"] == 0.0 and out["loss"] == pytest.approx(out["diff"])


@pytest.mark.parametrize("name", ["localize_one", "confseg_one"])
def test_widgets_compute_each_image_once_per_change(monkeypatch, name):
    """A slider move or a new image computes Eq. 13 (or Eq. 2-5) once: the widget hands its
    result to the figure instead of the figure computing it again."""
    calls = []
    original = getattr(views, name)

    def counted(*args, **kwargs):
        calls.append(args[1:3])
        return original(*args, **kwargs)

    for module in (widgets, plots):  # every module that holds the name
        if hasattr(module, name):
            monkeypatch.setattr(module, name, counted)
    if name == "localize_one":
        explorer = ThetaExplorer(make_cams(), theta=0.3)
        calls.clear()
        explorer.theta_slider.value = 0.5
        assert calls == [(0, 0.5)]
    else:
        inspector = MaskInspector(make_cams())
        calls.clear()
        inspector.image_picker.value = 1
        assert len(calls) == 1


# ---------------------------------------------------------------------------- static pictures
def drawn(fig) -> list[tuple]:
    """What a figure (or one subfigure of a grid) draws, panel by panel: the title, every image
    array, every box (corner, size, colour, line style) and the number of outlines; plus the
    figure's own title."""
    panels = []
    for ax in fig.axes:
        images = [np.asarray(im.get_array()).tolist() for im in ax.get_images()]
        boxes = [(p.get_xy(), p.get_width(), p.get_height(), p.get_edgecolor(),
                  p.get_linestyle()) for p in ax.patches]
        panels.append((ax.get_title(), images, boxes, len(ax.collections)))
    return [fig.get_suptitle(), *panels]


def box_drawn(ax) -> list[float]:
    """The dashed (predicted) box of a panel, as (x0, y0, x1, y1) with x1/y1 exclusive."""
    (rect,) = [p for p in ax.patches if p.get_linestyle() == "--"]
    x, y = rect.get_xy()
    return [x + 0.5, y + 0.5, x + 0.5 + rect.get_width(), y + 0.5 + rect.get_height()]


@pytest.mark.parametrize("two_heads, panels", [(True, 4), (False, 3)])
def test_theta_states_draw_the_explorers_state(two_heads, panels):
    """The static picture's row for theta 0.3 is what the explorer shows at theta 0.3: the same
    maps, region, boxes and titles, and the box of its summary. At 0.4 the region shrinks to
    pixels 9..22 (0.5 t > 0.4 between cells 1 and 2 for t > 0.8), box (9, 9, 23, 23)."""
    cams = make_cams(two_heads)
    explorer = ThetaExplorer(cams, theta=0.2)
    explorer.theta_slider.value = 0.3
    grid = widgets.theta_states(cams, explorer.index, thetas=(0.2, 0.3, 0.4))
    rows = grid.subfigs
    assert len(rows) == 3 and len(grid.axes) == 3 * (panels + 1)  # + one colour bar a row
    state = widgets.theta_state(cams, explorer.index, explorer.theta)
    assert drawn(rows[1]) == drawn(state)
    assert explorer.view.value == widgets._png(state)  # the explorer shows this very figure
    assert box_drawn(rows[1].axes[panels - 1]) == explorer.box.tolist() == [8, 8, 24, 24]
    assert rows[1].get_suptitle().endswith("box (8, 8, 24, 24)")
    assert "box (8, 8, 24, 24)" in explorer.summary.value
    assert box_drawn(rows[2].axes[panels - 1]) == [9, 9, 23, 23]
    assert rows[2].axes[panels - 1].get_title() == "box: IoU 0.77"  # 14^2 / 16^2
    assert drawn(rows[0]) != drawn(rows[1])  # theta 0.2 draws another region
    assert grid.get_size_inches()[0] <= style.COLUMN_WIDTH_IN


@pytest.mark.parametrize("two_heads, panels", [(True, 6), (False, 4)])
def test_mask_states_draw_the_inspectors_state(two_heads, panels):
    """The static picture's second block is what the inspector shows after picking image 1:
    its binary mask (Eq. 3) is the inspector's, gold (2) on the confident object."""
    cams = make_cams(two_heads)
    inspector = MaskInspector(cams)
    inspector.image_picker.value = 1
    grid = widgets.mask_states(cams, [0, 1])
    blocks = grid.subfigs
    assert len(blocks) == 2
    state = widgets.mask_state(cams, 1, inspector.class_index)
    assert drawn(blocks[1]) == drawn(state)
    assert inspector.view.value == widgets._png(state)
    assert blocks[1].get_suptitle() == "image 1, class 2 (ground truth)"
    (binary_panel,) = [ax for ax in blocks[1].axes if ax.get_title().startswith("binary mask")]
    assert np.asarray(binary_panel.get_images()[0].get_array()).tolist() == (
        2 * inspector.binary).tolist()  # the corner blob: confident object, nothing else
    assert binary_panel.get_title() == "binary mask: 6% confident"  # 4 of 64 cells
    assert len([ax for ax in blocks[0].axes if ax.get_label() != "<colorbar>"]) == panels
    assert grid.get_size_inches()[0] <= style.COLUMN_WIDTH_IN


def test_static_pictures_reject_a_bad_image():
    with pytest.raises(ValueError, match="out of range"):
        widgets.theta_states(make_cams(), 2)
    with pytest.raises(ValueError, match="out of range"):
        widgets.mask_states(make_cams(), [0, 5])


def test_most_changed_picks_the_images_whose_box_moves_most():
    before = make_cams(two_heads=False)
    after = make_cams(two_heads=False)
    # image 0's map of its class moves to the far corner, off its object (GT box 8-24 px):
    # its box goes from the ring to (24, 24, 32, 32), IoU 0; image 1 keeps its map
    after["cam_last"] = after["cam_last"].clone()
    after["cam_last"][0, 1] = 0.0
    after["cam_last"][0, 1, 6:8, 6:8] = 1.0
    iou = [views.localize_one(after, i, 0.3)["iou"] - views.localize_one(before, i, 0.3)["iou"]
           for i in (0, 1)]
    assert iou[0] < 0 and iou[1] == 0.0
    assert views.most_changed(before, after, 0.3, k=1) == [0]
    assert views.most_changed(before, after, 0.3, k=2) == [0, 1]
    other = make_cams(two_heads=False)
    other["images"] = other["images"].flip(0)
    with pytest.raises(ValueError, match="not the same images"):
        views.most_changed(before, other, 0.3)
