"""A schematic of CSoA, drawn by code: the two heads on the backbone, ConfSeg's masks, CoAug's
masked views through the frozen W_E, and Eq. 13's box at inference.

Boxes and arrows on a unit grid (`BOXES`, `ARROWS`), each labelled with the paper's symbol and
equation number, in the book's column width (`csoa_nb.report.style.house_style`). What is ours
(the reading of Eq. 10) is named in the caption of the chapter that shows it, not here: the
figure is the method as the paper describes it.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from csoa_nb.report.style import COLUMN_WIDTH_IN, house_style

#: The colour of each part: the network, ConfSeg, CoAug, inference.
PART_COLORS = {"net": "#c6dbef", "confseg": "#c7e9c0", "coaug": "#fdd0a2", "infer": "#dadaeb"}

#: name -> (x, y, width, height, text, part); x and y of the lower-left corner, in grid units
#: of a 12 x 7 canvas.
BOXES: dict[str, tuple[float, float, float, float, str, str]] = {
    "image": (0.1, 3.1, 1.2, 0.9, "image $I$", "net"),
    "blocks": (1.7, 3.1, 1.9, 0.9, "backbone $\\mathcal{F}$\nblocks 1-5", "net"),
    "head_f": (4.1, 4.9, 1.9, 0.9, "$\\mathcal{W}_F$ after block 4\nmap $S_F$", "net"),
    "head_l": (4.1, 2.6, 1.9, 0.9, "$\\mathcal{W}_L$ after block 5\nmap $S_L$", "net"),
    "mask": (6.7, 3.75, 2.2, 0.9, "confident cells\nof $S_L$ (Eq. 2-4)", "confseg"),
    "inner": (9.4, 4.9, 2.4, 0.9, "$\\mathcal{L}_{inner}$: $S_F$ pulled\nto $S_L$ (Eq. 5)",
              "confseg"),
    "views": (6.7, 1.4, 2.2, 1.2, "masked views\n$S \\odot I$, $(1-S) \\odot I$\n(Eq. 8, 10)",
              "coaug"),
    "embed": (9.4, 1.4, 2.4, 1.2,
              "frozen $\\mathcal{W}_E$\n$\\mathcal{L}_D$ over the\nbatch (Eq. 9-12)", "coaug"),
    "box": (0.1, 0.2, 3.6, 0.9,
            "at test: $S_L \\cup S_F$ above $\\theta$,\nthe largest region's box (Eq. 13)",
            "infer"),
}
#: (from, to, label, curvature): arrows between the boxes' nearest sides.
ARROWS: tuple[tuple[str, str, str, float], ...] = (
    ("image", "blocks", "", 0.0),
    ("blocks", "head_f", "$M_F$", 0.0),
    ("blocks", "head_l", "$M_L$", 0.0),
    ("head_l", "mask", "", 0.0),
    ("mask", "inner", "", 0.0),
    ("head_f", "inner", "", 0.0),
    ("head_l", "views", "", 0.0),
    ("views", "embed", "", 0.0),
)
#: The two arrows into Eq. 13's box, routed through the gap between the backbone and the
#: heads: (start, end, connection style).
TO_BOX = (((4.1, 5.35), (3.85, 1.1), "angle,angleA=180,angleB=90,rad=4"),
          ((5.05, 2.6), (3.7, 0.65), "angle,angleA=-90,angleB=0,rad=4"))


def _anchor(box: tuple[float, float, float, float, str, str], towards: tuple[float, float]
            ) -> tuple[float, float]:
    """The middle of `box`'s side that faces the point `towards`."""
    x, y, w, h = box[:4]
    cx, cy = x + w / 2, y + h / 2
    dx, dy = towards[0] - cx, towards[1] - cy
    if abs(dx) * h >= abs(dy) * w:
        return (x + w, cy) if dx > 0 else (x, cy)
    return (cx, y + h) if dy > 0 else (cx, y)


def _centre(box: tuple[float, float, float, float, str, str]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


@house_style
def csoa_schematic() -> Figure:
    """CSoA on one figure: the backbone with the heads W_L (after block 5) and W_F (after
    block 4), ConfSeg (green: S_L's confident cells supervise S_F), CoAug (orange: S_L masks
    the image, W_E embeds the views, Eq. 12 compares them across the batch) and inference
    (purple: Eq. 13)."""
    fig = Figure(figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 7 / 12))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 7)
    ax.axis("off")
    for x, y, w, h, text, part in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05",
                                    facecolor=PART_COLORS[part], edgecolor="#333333", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)
    for start, end, style in TO_BOX:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                     color="#333333", lw=1, connectionstyle=style))
    for source, target, label, bend in ARROWS:
        start = _anchor(BOXES[source], _centre(BOXES[target]))
        end = _anchor(BOXES[target], _centre(BOXES[source]))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10,
                                     color="#333333", lw=1,
                                     connectionstyle=f"arc3,rad={bend}"))
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, label,
                    ha="center", va="bottom", fontsize=9)
    titles = (("ConfSeg", "confseg", 10.6, 6.35), ("CoAug", "coaug", 10.6, 3.15),
              ("the CAM network", "net", 2.6, 6.35), ("inference", "infer", 1.2, 1.45))
    for text, part, x, y in titles:
        ax.text(x, y, text, ha="center", va="center", fontsize=10, fontweight="bold",
                bbox={"facecolor": PART_COLORS[part], "edgecolor": "none", "pad": 2})
    return fig
