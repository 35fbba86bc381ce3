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

from csoa_nb.methods.settings import settings_fields

if TYPE_CHECKING:
    import torch

    from csoa_nb.core.models import CSoANet, CSoAOutput

#: `losses(settings, out, images, labels, alpha, embed_net)`: every loss term of one batch,
#: plus their weighted sum under "total". `settings` is the method's settings (an instance of
#: its spec's `settings` class, built from the run's `RunConfig`: CoAug's gamma, delta,
#: coaug_background, coaug_weight; None for a method without settings); `images` are what
#: the network saw (after the method's `augment`); `labels` are the batch's targets: class
#: indices (``B``), or class probabilities (``B x C``) when `augment` mixes labels (CutMix);
#: `alpha` is the ramp of Eq. 6 at this step; `embed_net` is W_E (None unless `parts.coaug`).
LossFn = Callable[[Any, "CSoAOutput", Tensor, Tensor, float, "nn.Module | None"],
                  dict[str, Tensor]]
#: `augment(images, labels, generator, settings, num_classes) -> (images, targets)`: a
#: method's transform of a training batch (HaS hides patches, CutMix pastes boxes and mixes
#: labels over `num_classes`), drawn from the CPU `generator` alone, with the method's
#: `settings`. The trainer seeds `generator` per step from the run's seed, the epoch and the
#: step (`csoa_nb.engine.datasets.step_seed`), so a resumed run draws the same. `targets` are
#: what `losses` receives as `labels`. Never applied at test time.
AugmentFn = Callable[[Tensor, Tensor, "torch.Generator", Any, int], tuple[Tensor, Tensor]]
#: `model(settings, net) -> network`: a method's network, made with its `settings` from the
#: plain network `net` (`csoa_nb.core.models.CSoANet` of the run's backbone, weights, heads and
#: `num_classes`, as `Parts` asks): ADL inserts its layers into `net`'s backbone, ACoL puts its
#: two branches on `net`'s backbone. The network's `forward(images, labels=None)` returns a
#: `CSoAOutput`; the trainer passes the ground-truth labels, the evaluator none.
ModelFn = Callable[[Any, "CSoANet"], nn.Module]


@dataclass(frozen=True)
class Parts:
    """What a method trains: a second CAM head (W_F, or ACoL's branch B) whose map joins the
    first by the union of Eq. 13, the inner loss of Eq. 5, the CoAug loss of Eq. 12 (which
    needs the embedding network W_E)."""

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
        settings: its hyperparameters, a frozen dataclass (`csoa_nb.methods.settings`: names,
            defaults, checks, labels, search grid) whose fields are `RunConfig` fields of the
            same names, hashed for the runs of the methods with this class only; an instance
            goes to `losses`, `augment` and `model`. None: the method has none.
        augment: its transform of a training batch (`AugmentFn`), or None.
        model: its network made from the plain one (`ModelFn`), or None (the plain one).
        version: what its code computes, raised by one whenever a change makes its runs
            compute something else; any version but 1 enters its runs' config hash, so a
            committed result never silently belongs to older code.
    """

    key: str
    label: str
    color: str
    parts: Parts
    losses: LossFn
    paper_row: str | None = None
    ours: bool = False
    summary: str = ""
    settings: type | None = None
    augment: AugmentFn | None = None
    model: ModelFn | None = None
    version: int = 1

    @property
    def setting_names(self) -> tuple[str, ...]:
        """The `RunConfig` fields of its settings, in their class's order."""
        return tuple(item.name for item in settings_fields(self.settings))

    @property
    def search(self) -> dict[str, tuple[Any, ...]]:
        """`RunConfig` field -> the values Choe et al.'s protocol chooses it from (`setting`'s
        `search`); empty for Table 1's methods, whose settings are the paper's."""
        return {item.name: item.search for item in settings_fields(self.settings)
                if item.search}


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
