"""What a WSOL method is to the rest of the package: one `MethodSpec` per method, one `TableRow`
per row of the method tables.

A method module (`csoa_nb.methods.cam`, `csoa_nb.methods.csoa`, ...) defines its loss terms
and its `MethodSpec` (or several); `csoa_nb.methods` collects them in the registry. Nothing
else names a method's parts, label, colour or paper row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:
    from csoa_nb.models import CSoAOutput

#: `losses(config, out, images, labels, alpha, embed_net)`: every loss term of one batch, plus
#: their weighted sum under "total". `config` is the run's `RunConfig` (the method reads its
#: own settings from it: gamma, delta, coaug_background, coaug_weight, ...); `alpha` is the
#: ramp of Eq. 6 at this step; `embed_net` is W_E (None unless `parts.coaug`).
LossFn = Callable[[Any, "CSoAOutput", Tensor, Tensor, float, "nn.Module | None"],
                  dict[str, Tensor]]


@dataclass(frozen=True)
class Parts:
    """What a method trains: the second CAM head W_F (and the union of Eq. 13), the inner loss
    of Eq. 5, the CoAug loss of Eq. 12 (which needs the embedding network W_E)."""

    two_heads: bool = False
    inner_loss: bool = False
    coaug: bool = False


@dataclass(frozen=True)
class MethodSpec:
    """One trainable method (a value of `RunConfig.method`).

    Attributes:
        key: the `RunConfig.method` value.
        label: its row label in tables and figures.
        color: its colour in every figure.
        parts: the heads and losses it trains (`Parts`).
        losses: its loss terms (`LossFn`).
        paper_row: the paper's Table 1 row it stands for, or None.
        ours: True for an ablation or extension of ours, not a method of the paper.
        summary: one line on what it trains (docs, `--help`).
    """

    key: str
    label: str
    color: str
    parts: Parts
    losses: LossFn
    paper_row: str | None = None
    ours: bool = False
    summary: str = ""


@dataclass(frozen=True)
class TableRow:
    """A row of the method tables: a method, with the `RunConfig` fields that make the row.

    Most rows are a method as it is; a variant (e.g. "csoa_fix", CSoA with our reading of
    Eq. 10) adds fields and its own label and colour. `label`, `color` and `ours` default to
    the method's; `paper_row` too, except that a row of ours on a method of the paper stands
    for no row of the paper.
    """

    key: str
    method: MethodSpec
    fields: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    color: str = ""
    ours: bool | None = None
    paper_row: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", self.label or self.method.label)
        object.__setattr__(self, "color", self.color or self.method.color)
        if self.ours is None:
            object.__setattr__(self, "ours", self.method.ours)
        variant_of_ours = self.ours and not self.method.ours
        object.__setattr__(self, "paper_row", None if variant_of_ours else self.method.paper_row)

    @property
    def config_fields(self) -> dict[str, Any]:
        """The `RunConfig` fields of this row: its method and the row's own fields."""
        return {"method": self.method.key, **self.fields}
