"""Every figure function returns a Figure with the expected panels on a tiny input."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from test_widgets import make_cams

from csoa_nb import plots
from csoa_nb.data.synthetic import Difficulty
from csoa_nb.results import METHOD_LABELS

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def n_axes(fig: Figure) -> int:
    assert isinstance(fig, Figure)
    return len(fig.axes)


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


@pytest.mark.parametrize("two_heads, panels", [(True, 6), (False, 4)])
def test_cam_panel(two_heads, panels):
    fig = plots.cam_panel(make_cams(two_heads), 0, 0.2)
    assert n_axes(fig) == panels
    assert fig.axes[-1].get_title() == "box: IoU 1.00"  # the ring's box is the GT box


@pytest.mark.parametrize("two_heads, cols", [(True, 4), (False, 3)])
def test_cam_grid(two_heads, cols):
    assert n_axes(plots.cam_grid(make_cams(two_heads), [0, 1], 0.3)) == 2 * cols


def test_theta_grid_one_or_more_images():
    cams = make_cams()
    assert n_axes(plots.theta_grid(cams, 0)) == 4  # fused map + 3 thetas
    fig = plots.theta_grid(cams, [0, 1], thetas=(0.2, 0.8))
    assert n_axes(fig) == 6
    assert fig.axes[1].get_title().endswith("IoU 1.00")  # theta 0.2: the ring's box
    assert fig.axes[2].get_title().endswith("IoU 0.25")  # theta 0.8: the core's box


@pytest.mark.parametrize("two_heads, count", [(True, 6 + 4), (False, 4 + 2)])
def test_confseg_steps(two_heads, count):
    # panels + one colour bar per continuous map (S_L, mask; S_F, inner term)
    assert n_axes(plots.confseg_steps(make_cams(two_heads), 0)) == count


def test_coaug_inputs():
    assert n_axes(plots.coaug_inputs(make_cams(), [0, 1])) == 10


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


def test_method_bars_orders_and_labels_methods():
    frame = pd.DataFrame({
        "method": ["csoa", "cam", "csoa", "cam"],
        "regime": ["pretrained"] * 4,
        "seed": [0, 0, 1, 1],
        "gt_known_loc_err": [30.0, 50.0, 34.0, 54.0],
    })
    fig = plots.method_bars(frame, "gt_known_loc_err")
    assert n_axes(fig) == 1
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == [METHOD_LABELS["cam"], METHOD_LABELS["csoa"]]
    with pytest.raises(ValueError, match="no column"):
        plots.method_bars(frame, "pxap")
