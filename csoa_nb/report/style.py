"""The book's house style, shared by every figure of the report layer (`csoa_nb.report.plots`,
`csoa_nb.report.charts`, the figures of chapter 14 in `csoa_nb.report.wsol`).

Every figure function draws inside `book_style()` (the rc parameters of `BOOK_RC`: fonts of at
least `MIN_FONT_PT` points) and returns its figure through `fit_to_column`: at most
`COLUMN_WIDTH_IN` inches wide, the width of the book's text column, so that a point is a point
as displayed, and `FIGURE_DPI` dots per inch for the PNG the notebook shows. `house_style` is
the decorator that does both. Multi-panel figures put at most `MAX_PANELS_PER_ROW` panels in a
row (`panel_grid`, `wrap_panels`). `fit_to_column` also applies to figures made elsewhere.

Colours: ground-truth boxes green (`GT_COLOR`), predicted boxes red and dashed (`PRED_COLOR`),
the class part red in the data figures (`PART_COLOR`); maps are drawn with the "jet" colour
map (`CAM_CMAP`) over the image, on [0, 1] (the maps Eq. 13 thresholds), with a colour bar
(`heat_bar`) on every figure that has one. `show_image`, `show_heat`, `draw_box` and
`draw_gt_boxes` draw those pieces the same way in every figure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

__all__ = [
    "BOOK_RC",
    "CAM_CMAP",
    "COLUMN_WIDTH_IN",
    "FIGURE_DPI",
    "GT_COLOR",
    "MAX_PANELS_PER_ROW",
    "MIN_FONT_PT",
    "PANEL_IN",
    "PART_COLOR",
    "PRED_COLOR",
    "book_style",
    "draw_box",
    "draw_gt_boxes",
    "fit_to_column",
    "heat_bar",
    "hide_ticks",
    "house_style",
    "panel_grid",
    "show_heat",
    "show_image",
    "wrap_panels",
]

GT_COLOR = "lime"
PRED_COLOR = "red"
PART_COLOR = "red"
CAM_CMAP = "jet"

#: Width of the book's text column in inches: the HTML theme's column is about 690 px wide,
#: and a figure this wide is shown at 100 px per inch, so its font sizes read as printed.
COLUMN_WIDTH_IN = 6.9
#: Resolution of the figures' PNGs (the inline backend renders at the figure's dpi); the
#: browser scales them down to the column, so they stay sharp on high-density screens.
FIGURE_DPI = 150
#: No text of a book figure is smaller than this, in points at the figure's own size.
MIN_FONT_PT = 9.0
#: Multi-panel figures wrap after this many panels.
MAX_PANELS_PER_ROW = 4
#: Side of an image panel in a grid of `MAX_PANELS_PER_ROW` columns (inches).
PANEL_IN = COLUMN_WIDTH_IN / MAX_PANELS_PER_ROW
#: The rc parameters every figure of the book is drawn with (`book_style`).
BOOK_RC: dict[str, Any] = {
    "figure.figsize": (COLUMN_WIDTH_IN, 3.2),
    "figure.dpi": FIGURE_DPI,
    "savefig.dpi": FIGURE_DPI,
    "font.size": 10.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 10.0,
    "xtick.labelsize": 9.0,
    "ytick.labelsize": 9.0,
    "legend.fontsize": 9.0,
    "legend.title_fontsize": 9.0,
    "figure.titlesize": 11.0,
    "image.interpolation": "nearest",
}

_F = TypeVar("_F", bound=Callable[..., Figure])


@contextmanager
def book_style() -> Iterator[None]:
    """Matplotlib's rc parameters of the book (`BOOK_RC`) for the duration of a block.

    Only the keys of `BOOK_RC` are restored afterwards, unlike `plt.rc_context`, which restores
    every parameter: a kernel whose first figure is drawn in the block switches on the inline
    backend's interactive mode there, and must keep it, or no later figure is shown.
    """
    saved = {key: plt.rcParams[key] for key in BOOK_RC}
    plt.rcParams.update(BOOK_RC)
    try:
        yield
    finally:
        plt.rcParams.update(saved)


def fit_to_column(
    fig: Figure,
    width: float = COLUMN_WIDTH_IN,
    min_font: float = MIN_FONT_PT,
    dpi: float = FIGURE_DPI,
) -> Figure:
    """Make any figure follow the house style, in place, and return it.

    A figure wider than ``width`` inches is narrowed to it (its height is kept, so rows of
    labels keep their room; a constrained layout re-flows the panels); every text smaller
    than ``min_font`` points is raised to it; the figure renders at ``dpi``.
    """
    if width <= 0 or min_font <= 0 or dpi <= 0:
        raise ValueError(f"width, min_font and dpi must be > 0, got {width}, {min_font}, {dpi}")
    fig_width, fig_height = fig.get_size_inches()
    if fig_width > width:
        fig.set_size_inches(width, fig_height)
    for text in fig.findobj(Text):
        if text.get_fontsize() < min_font:
            text.set_fontsize(min_font)
    fig.set_dpi(dpi)
    return fig


def house_style(func: _F) -> _F:
    """Decorator of every figure function of the book: draw in `book_style`, return through
    `fit_to_column`."""

    @functools.wraps(func)
    def styled(*args: Any, **kwargs: Any) -> Figure:
        with book_style():
            return fit_to_column(func(*args, **kwargs))

    return styled  # type: ignore[return-value]


# ---------------------------------------------------------------------------- layout
def panel_grid(
    rows: int, cols: int, panel: float = PANEL_IN, height: float | None = None,
    extra: float = 0.0,
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid of ``rows x cols`` panels of ``panel`` inches (``height``
    tall if given), plus ``extra`` inches of width (row labels), never wider than the text
    column (always a 2-D array of axes)."""
    width = min(COLUMN_WIDTH_IN, cols * panel + extra)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, (height or panel) * rows), squeeze=False,
        layout="constrained",
    )
    return fig, axes


def wrap_panels(n: int, cols: int = MAX_PANELS_PER_ROW) -> tuple[int, int]:
    """(groups, columns) to lay ``n`` panels out at most ``cols`` to a row."""
    cols = max(1, min(n, cols))
    return math.ceil(n / cols), cols


# ---------------------------------------------------------------------------- pieces
def heat_bar(fig: Figure, image: Any, axes: Any, label: str = "normalised map",
             location: str = "right") -> None:
    """One colour bar for the heat maps drawn with `show_heat` on ``axes`` (all on [0, 1]),
    about a third of an inch thick whatever the figure's size."""
    width, height = fig.get_size_inches()
    fraction = min(0.08, 0.35 / (width if location == "right" else height))
    fig.colorbar(image, ax=axes, location=location, shrink=0.8, label=label,
                 fraction=fraction, pad=0.02)


def hide_ticks(ax: plt.Axes) -> None:
    """No ticks on an image panel."""
    ax.set_xticks([])
    ax.set_yticks([])


def show_image(ax: plt.Axes, image: np.ndarray, title: str | None = None) -> None:
    """An image panel without ticks, its title (if any) at `MIN_FONT_PT`."""
    ax.imshow(image, interpolation="nearest")
    hide_ticks(ax)
    if title:
        ax.set_title(title, fontsize=MIN_FONT_PT)


def show_heat(ax: plt.Axes, image: np.ndarray, heat: Any, title: str | None = None) -> Any:
    """The image with a normalised map in [0, 1] drawn over it; returns the map's image (for
    the colour bar)."""
    show_image(ax, image, title)
    return ax.imshow(np.asarray(heat), cmap=CAM_CMAP, alpha=0.5, vmin=0.0, vmax=1.0,
                     interpolation="nearest")


def draw_box(ax: plt.Axes, box: Any, color: str, dashed: bool = False) -> None:
    """A box (x0, y0, x1, y1), x1/y1 exclusive, on an `imshow` (pixel i spans i-0.5..i+0.5)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        return
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.8,
                           ec=color, ls="--" if dashed else "-"))


def draw_gt_boxes(ax: plt.Axes, boxes: Any) -> None:
    """The ground-truth boxes (``K x 4``) of an image, in `GT_COLOR`."""
    for box in np.asarray(boxes, dtype=float).reshape(-1, 4):
        draw_box(ax, box, GT_COLOR)
