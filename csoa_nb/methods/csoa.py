"""CSoA and its parts: the methods built from ConfSeg (Eq. 2-7) and CoAug (Eq. 8-12).

Each is a choice of `Parts` (Table 1 of the paper, plus the "twohead" ablation); one loss
function serves them all:

- `twohead`: cross-entropy on y_L and y_F, no inner loss (an ablation of ours: the union of
  Eq. 13 alone).
- `confseg`: Eq. 6, L_C = L_cls + alpha * L_inner.
- `coaug`: cross-entropy on y_L + coaug_weight * alpha * L_D (Eq. 12), one head ("no
  modification inside the model").
- `csoa`: Eq. 6 + coaug_weight * alpha * L_D.

Eq. 5/6 and Eq. 12 run in float32 under the trainer's mixed precision (`amp=true`):
`csoa_nb.base.precision.fp32_region` turns autocast off around them and casts their inputs
(ratios of distances and a threshold on |S - mu1| that half precision gets wrong; see its
docstring). W_E's forward stays under autocast. Without autocast the wrappers change nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.base.precision import fp32_region
from csoa_nb.core.models import CSoAOutput
from csoa_nb.methods.coaug import CoAugSettings, foreground_background
from csoa_nb.methods.coaug import coaug_loss as _coaug_loss
from csoa_nb.methods.confseg import confseg_loss as _confseg_loss
from csoa_nb.methods.spec import LossFn, MethodSpec, Parts

#: Eq. 6 (with Eq. 5) and Eq. 12 in float32 whatever the autocast around them.
confseg_loss = fp32_region(_confseg_loss)
coaug_loss = fp32_region(_coaug_loss)


def csoa_losses(parts: Parts, name: str) -> LossFn:
    """The loss function of the method `name` made of `parts`; with `parts.coaug` it reads its
    `CoAugSettings`."""

    def losses(
        settings: CoAugSettings | None,
        out: CSoAOutput,
        images: Tensor,
        labels: Tensor,
        alpha: float,
        embed_net: nn.Module | None,
    ) -> dict[str, Tensor]:
        if parts.two_heads:
            total, terms = confseg_loss(out, labels, alpha if parts.inner_loss else 0.0)
            terms = dict(terms)
            if not parts.inner_loss:
                terms.pop("inner", None)
        else:
            total = F.cross_entropy(out.logits_last, labels)
            terms = {"cls_last": total}
        if parts.coaug:
            if embed_net is None or settings is None:
                raise ValueError(f"method {name!r} needs the embedding network W_E and its "
                                 "CoAugSettings")
            fg_in, bg_in, mask_bg_in = foreground_background(
                images, out.cam_last, labels, background=settings.coaug_background
            )
            embedded = embed_net(torch.cat([fg_in, bg_in, mask_bg_in]))
            fg, bg, mask_bg = embedded.chunk(3)
            loss_d, d_terms = coaug_loss(
                fg, bg, mask_bg, labels, gamma=settings.gamma, delta=settings.delta
            )
            terms["coaug"] = loss_d
            terms["d_cam"] = d_terms["d_cam"]
            terms["d_back"] = d_terms["d_back"]
            total = total + settings.coaug_weight * alpha * loss_d
        terms["total"] = total
        return terms

    losses.__name__ = losses.__qualname__ = f"{name}_losses"
    return losses


def _spec(key: str, parts: Parts, **kwargs: Any) -> MethodSpec:
    settings = CoAugSettings if parts.coaug else None
    return MethodSpec(key=key, parts=parts, losses=csoa_losses(parts, key), settings=settings,
                      **kwargs)


TWOHEAD = _spec(
    "twohead",
    Parts(two_heads=True),
    label="two heads + union, no inner loss",
    color="#bcbd22",
    ours=True,
    summary="W_F and W_L and the union of Eq. 13, cross-entropy on both, no inner loss",
)
CONFSEG = _spec(
    "confseg",
    Parts(two_heads=True, inner_loss=True),
    label="ConfSeg",
    color="#1f77b4",
    paper_row="VGGnet-ConfSeg",
    summary="Eq. 6: cross-entropy on both heads + alpha * L_inner (Eq. 5)",
)
COAUG = _spec(
    "coaug",
    Parts(coaug=True),
    label="CoAug (as written)",
    color="#ff7f0e",
    paper_row="VGGnet-CoAug",
    summary="cross-entropy on y_L + coaug_weight * alpha * L_D (Eq. 12), one head",
)
CSOA = _spec(
    "csoa",
    Parts(two_heads=True, inner_loss=True, coaug=True),
    label="CSoA (as written)",
    color="#d62728",
    paper_row="VGGnet-CSoA",
    summary="Eq. 6 + coaug_weight * alpha * L_D (Eq. 12)",
)
