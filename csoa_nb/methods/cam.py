"""CAM (Zhou et al., CVPR 2016), the paper's "VGGnet-base": the backbone and one classifier
W_L, trained with cross-entropy on the globally pooled class maps (Eq. 1)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.core.models import CSoAOutput
from csoa_nb.methods.spec import MethodSpec, Parts


def cam_losses(
    settings: Any,
    out: CSoAOutput,
    images: Tensor,
    labels: Tensor,
    alpha: float,
    embed_net: nn.Module | None,
) -> dict[str, Tensor]:
    """Cross-entropy on y_L; `total` is that same term (CAM has no settings: `settings` is
    unused, whatever a method sharing this loss passes)."""
    total = F.cross_entropy(out.logits_last, labels)
    return {"cls_last": total, "total": total}


CAM = MethodSpec(
    key="cam",
    label="CAM (base)",
    color="#7f7f7f",
    parts=Parts(),
    losses=cam_losses,
    paper_row="VGGnet-base",
    summary="cross-entropy on y_L (the paper's VGGnet-base)",
)
