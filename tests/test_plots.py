"""Every figure function returns a Figure with the expected panels on a tiny input, in the
book's house style (column width, fonts >= 9 pt, colour bars on heat maps, <= 4 panels a row)."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from test_widgets import make_cams

from csoa_nb.data.synthetic import Difficulty
from csoa_nb.report import plots, style, views

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def n_axes(fig: Figure) -> int:
    assert isinstance(fig, Figure)
    return len(fig.axes)


def n_colorbars(fig: Figure) -> int:
    return sum(ax.get_label() == "<colorbar>" for ax in fig.axes)


def test_show_samples():
    assert n_axes(plots.show_samples(Difficulty(), 32, n=3)) == 6  # image and mask per class


def test_show_dataset_items_with_and_without_masks():
    item = {"image": torch.zeros(3, 16, 16), "label": 1,
            "boxes": torch.tensor([[2.0, 2.0, 9.0, 9.0]]), "mask": torch.zeros(1, 16, 16)}
    assert n_axes(plots.show_dataset_items([item] * 4, n=2)) == 4
    bare = {k: v for k, v in item.items() if k != "mask"}
    assert n_axes(plots.show_dataset_items([bare] * 4, n=2)) == 2


def test_part_ratio_histogram():
    assert n_axes(plots.part_ratio_histogram(np.array([0.0, 0.04, 0.05, 0.06]), 0.05)) == 1


@pytest.mark.parametrize("two_heads, panels, bars", [(True, 6, 2), (False, 4, 1)])
def test_cam_panel(two_heads, panels, bars):
    fig = plots.cam_panel(make_cams(two_heads), 0, 0.2)
    assert n_axes(fig) == panels + bars  # one colour bar for S_L (and S_F), one for S_F - S_L
    assert n_colorbars(fig) == bars
    assert fig.axes[panels - 1].get_title() == "box: IoU 1.00"  # the ring's box is the GT box
    if two_heads:  # the difference the text speaks of, in a panel of its own
        assert fig.axes[3].get_title().startswith("$S_F - S_L$")


@pytest.mark.parametrize("two_heads, cols, bars", [(True, 4, 2), (False, 3, 1)])
def test_cam_grid(two_heads, cols, bars):
    fig = plots.cam_grid(make_cams(two_heads), [0, 1], 0.3)
    assert n_axes(fig) == 2 * cols + bars  # the maps' colour bar (and S_F - S_L's)
    assert n_colorbars(fig) == bars


def test_cam_grid_shows_what_s_f_adds_to_s_l():
    cams = make_cams(True)
    cams["cam_feature"] = cams["cam_last"].clone()
    cams["cam_feature"][0, 1, 0:2, 0:2] = 1.0  # S_F also lights the top-left corner
    fig = plots.cam_grid(cams, [0], 0.3)
    difference = fig.axes[3].get_images()[0].get_array()
    r = views.localize_one(cams, 0, 0.3)
    np.testing.assert_allclose(difference, (r["map_feature"] - r["map_last"]).numpy())
    assert difference[0, 0] > 0.5 and difference[-1, -1] == 0  # red where S_F adds


@pytest.mark.parametrize("two_heads, name", [(True, "fused map"), (False, "$S_L$")])
def test_theta_grid_names_the_map_it_thresholds(two_heads, name):
    """A one-head model (plain CAM) has no fused map: Eq. 13 thresholds S_L alone."""
    fig = plots.theta_grid(make_cams(two_heads), [0, 1])
    assert [ax.get_title() for ax in fig.axes[:8:4]] == [f"#0: {name}", f"#1: {name}"]


def test_theta_grid_one_or_more_images():
    cams = make_cams()
    assert n_axes(plots.theta_grid(cams, 0)) == 4 + 1  # fused map + 3 thetas + colour bar
    fig = plots.theta_grid(cams, [0, 1], thetas=(0.2, 0.8))
    assert n_axes(fig) == 6 + 1
    assert fig.axes[1].get_title().endswith("IoU 1.00")  # theta 0.2: the ring's box
    assert fig.axes[2].get_title().endswith("IoU 0.25")  # theta 0.8: the core's box


def test_coaug_inputs():
    fig = plots.coaug_inputs(make_cams(), [0, 1])
    assert n_axes(fig) == 8 + 1  # four views of two images, one colour bar for S
    assert n_colorbars(fig) == 1
    with pytest.raises(ValueError, match="at most|1 to 4"):
        plots.coaug_inputs(make_cams(), [0, 1, 0, 1, 0])


def history(epochs: int = 3) -> list[dict]:
    return [
        {"epoch": e, "lr": 0.01 * 0.95**e, "alpha": min(e / 2, 1.0), "loss_total": 2.0 / e,
         "loss_cls_last": 1.0 / e, "loss_inner": 0.1, "val_top1_loc_err": 50.0 - e,
         "val_gt_known_loc_err": 40.0, "val_top1_cls_err": 20.0}
        for e in range(1, epochs + 1)
    ]


def test_training_curves():
    fig = plots.training_curves(history())
    assert n_axes(fig) == 4  # losses, schedule (alpha + lr twin), validation
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["total", "cls_last", "inner"]
    with pytest.raises(ValueError, match="coaug"):
        plots.training_curves(history(), terms=("coaug",))


# ---------------------------------------------------------------------------- house style
def _frame() -> pd.DataFrame:
    return pd.DataFrame({"method": ["csoa", "cam"] * 2, "regime": ["pretrained"] * 4,
                         "seed": [0, 0, 1, 1], "gt_known_loc_err": [30.0, 50.0, 34.0, 54.0]})


#: Every figure function of `plots`, on a tiny input, and whether it draws heat maps (CAMs).
FIGURES = {
    "show_samples": (lambda: plots.show_samples(Difficulty(), 32, n=8), False),
    "part_ratio_histogram": (lambda: plots.part_ratio_histogram(np.array([0.04, 0.05]), 0.05),
                             False),
    "cam_panel": (lambda: plots.cam_panel(make_cams(), 0, 0.2), True),
    "cam_grid": (lambda: plots.cam_grid(make_cams(), [0, 1], 0.3), True),
    "theta_grid": (lambda: plots.theta_grid(make_cams(), [0, 1]), True),
    "coaug_inputs": (lambda: plots.coaug_inputs(make_cams(), [0, 1, 0, 1]), True),
    "training_curves": (lambda: plots.training_curves(history()), False),
}


def test_every_figure_function_is_checked():
    assert set(FIGURES) | {"show_dataset_items"} == {
        name for name in plots.__all__ if name[0].islower()
    }


def small_texts(fig: Figure, minimum: float = style.MIN_FONT_PT) -> list[tuple[str, float]]:
    """Visible, non-empty texts of a drawn figure smaller than ``minimum`` points."""
    fig.canvas.draw()
    return [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < minimum]


def panels_per_row(fig: Figure) -> int:
    """The most panels (axes other than colour bars and twins) side by side in one row."""
    fig.canvas.draw()
    rows: dict[float, set[float]] = {}
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        box = ax.get_position()
        rows.setdefault(round(box.y0, 2), set()).add(round(box.x0, 2))
    return max(len(xs) for xs in rows.values())


@pytest.mark.parametrize("name", FIGURES)
def test_house_style(name):
    make, heat_maps = FIGURES[name]
    fig = make()
    width, _ = fig.get_size_inches()
    assert width <= style.COLUMN_WIDTH_IN + 1e-9, f"{name}: {width} in wide"
    assert fig.dpi >= 150
    assert small_texts(fig) == [], f"{name}: texts under {style.MIN_FONT_PT} pt"
    assert panels_per_row(fig) <= style.MAX_PANELS_PER_ROW
    if heat_maps:
        assert n_colorbars(fig) >= 1, f"{name} draws heat maps without a colour bar"


def test_fit_to_column_restyles_a_foreign_figure():
    fig = Figure(figsize=(11.0, 3.0), dpi=72)  # e.g. a two-panel figure of csoa_nb.report.tables
    ax = fig.subplots()
    ax.set_title("small", fontsize=6)
    ax.legend(handles=ax.plot([0, 1], label="line"), fontsize="small")  # 0.833 * 10 pt
    assert style.fit_to_column(fig) is fig
    assert tuple(fig.get_size_inches()) == (style.COLUMN_WIDTH_IN, 3.0)  # height kept
    assert fig.dpi == style.FIGURE_DPI
    assert ax.title.get_fontsize() == style.MIN_FONT_PT
    assert small_texts(fig) == []
    narrow = style.fit_to_column(Figure(figsize=(4.0, 2.0)))
    assert tuple(narrow.get_size_inches()) == (4.0, 2.0)  # never widened
    with pytest.raises(ValueError, match="must be > 0"):
        style.fit_to_column(fig, width=0)


def test_book_style_restores_its_own_keys_only():
    before = matplotlib.rcParams["interactive"], matplotlib.rcParams["font.size"]
    try:
        with style.book_style():
            assert matplotlib.rcParams["font.size"] == style.BOOK_RC["font.size"]
            matplotlib.interactive(True)  # what the inline backend does on the first figure
        assert matplotlib.rcParams["interactive"] is True  # kept: later figures still show
        assert matplotlib.rcParams["font.size"] == before[1]
    finally:
        matplotlib.interactive(before[0])


def test_a_candidate_map_has_one_colour_in_both_figures_and_the_zoom_holds_the_crowd():
    from matplotlib.colors import to_hex

    rows = [{"candidate": c, "background": b, "gamma": g, "loss": loss}
            for b in ("paper", "below_mean")
            for c, losses in (("S = 1 everywhere", (0.7, 0.7, 0.7)),
                              ("S = 0 (all negative)", (0.0, 1.2, 4.0)),
                              ("ground-truth mask", (0.5, 0.6, 0.8)),
                              ("dilated mask", (0.55, 0.65, 0.75)))
            for g, loss in zip((0.0, 0.3, 1.0), losses, strict=True)]
    scores = pd.DataFrame(rows)
    bars = plots.candidate_losses(scores, gamma=1.0)
    colours = {t.get_text(): to_hex(p.get_facecolor())
               for t, p in zip(bars.axes[0].get_yticklabels(), bars.axes[0].patches,
                               strict=True)}
    lines = {line.get_label(): to_hex(line.get_color())
             for line in plots.gamma_sweep(scores).axes[0].lines}
    assert colours["S = 1 everywhere"] == lines["S = 1 everywhere"] == to_hex("tab:red")
    assert colours == {k: lines[k] for k in colours}
    # the zoom row spans the 10-90 % band of the losses, not 0-4
    zoom = plots.gamma_sweep(scores).axes[2]
    low, high = zoom.get_ylim()
    assert 0.0 < low < 0.5 and 0.8 < high < 1.5
