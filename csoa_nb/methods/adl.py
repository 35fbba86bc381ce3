"""ADL: the attention-based dropout layer.

Choe and Shim, "Attention-based Dropout Layer for Weakly Supervised Object Localization",
CVPR 2019, Sec. 3 (Fig. 2). Inserted between convolutional blocks, in training ADL

1. averages the feature map over channels: the self-attention map ``A`` (``B x 1 x h x w``);
2. thresholds it at ``gamma`` times its maximum, per image: the drop mask
   ``M_drop = [A < gamma * max A]``, which hides the most discriminative region;
3. squashes it: the importance map ``M_imp = sigmoid(A)``, which highlights it;
4. picks one of the two at random, the drop mask with probability ``drop_rate``, and
   multiplies the features by it (broadcast over channels).

At test time ADL is the identity. The choice in step 4 is made once per forward pass, i.e.
per mini-batch (the paper: "stochastically selected at each iteration"; the reference code of
clovaai/wsolevaluation, ``wsol/method/adl.py``, draws one scalar per call); we do the same.
The maximum in step 2 is taken over each image's own map, as in that code.

As a method of the registry (`ADL`, ``RunConfig.method = "adl"``): CAM's network with an
:class:`AttentionDropout` appended to backbone blocks 3, 4 and 5 (`ADL_BLOCKS`; see
:func:`adl_model`), CAM's loss, CAM's inference (the layers are the identity in eval mode).
The per-pass choice draws from torch's global generator, which the run seeds and each
checkpoint saves, so a resumed run draws the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from csoa_nb.core.models import CSoANet
from csoa_nb.methods.cam import cam_losses
from csoa_nb.methods.settings import setting
from csoa_nb.methods.spec import MethodSpec, Parts

__all__ = ["ADL", "ADLSettings", "ADL_BLOCKS", "AttentionDropout", "adl_model", "self_attention",
           "drop_mask", "importance_map"]

#: The backbone blocks an ADL layer follows. clovaai/wsolevaluation's VGG16 with 28 x 28 maps
#: (``wsol/vgg.py``, config "adl"): after pool3 (the end of our block 3), after conv4_3 (block
#: 4, whose pool our vgg16 drops too) and after conv5_3 (block 5, the input of the CAM head).
ADL_BLOCKS = (3, 4, 5)


@dataclass(frozen=True)
class ADLSettings:
    """Hyperparameters of ADL (`RunConfig` fields of these names).

    Attributes:
        adl_drop_rate: probability of applying the drop mask rather than the importance map
            in a training step; 0.75 in the paper and in clovaai/wsolevaluation.
        adl_gamma: drop threshold as a fraction of the attention map's maximum.
            wsolevaluation's command line defaults to 0.9 (its layer's own default is 0.8);
            the paper tunes it per backbone.
    """

    adl_drop_rate: float = setting(0.75, label="drop-mask probability")
    adl_gamma: float = setting(0.9, label="drop threshold γ", search=(0.6, 0.7, 0.8, 0.9))

    def __post_init__(self) -> None:
        _check_unit(self.adl_drop_rate, "drop_rate")
        _check_unit(self.adl_gamma, "gamma")


def _check_unit(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"ADL {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def self_attention(features: Tensor) -> Tensor:
    """Step 1: channel-wise mean of ``features`` (``B x K x h x w``) -> ``B x 1 x h x w``."""
    if features.ndim != 4:
        raise ValueError(f"features must be B x K x h x w, got shape {tuple(features.shape)}")
    return features.mean(dim=1, keepdim=True)


def drop_mask(attention: Tensor, gamma: float) -> Tensor:
    """Step 2: ``1.0`` where ``attention < gamma * max(attention)`` (max per image), else 0.

    ``attention`` is ``B x 1 x h x w``; the result has its shape and dtype.
    """
    gamma = _check_unit(gamma, "gamma")
    peak = attention.amax(dim=(1, 2, 3), keepdim=True)
    return (attention < gamma * peak).to(attention.dtype)


def importance_map(attention: Tensor) -> Tensor:
    """Step 3: ``sigmoid(attention)``."""
    return torch.sigmoid(attention)


class AttentionDropout(nn.Module):
    """The attention-based dropout layer (identity in ``eval()`` mode).

    Args:
        drop_rate: probability, per training forward pass, of multiplying by the drop mask
            (otherwise by the importance map).
        gamma: drop threshold ratio.
        generator: optional CPU ``torch.Generator`` for the per-pass choice (``None``: the
            global generator). The choice is ``torch.rand((), generator=generator) <
            drop_rate``, so ``drop_rate = 1`` always drops and ``0`` never does.

    After a training forward pass, ``last_choice`` is ``"drop"`` or ``"importance"``.
    """

    def __init__(self, drop_rate: float = ADLSettings.adl_drop_rate,
                 gamma: float = ADLSettings.adl_gamma,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.drop_rate = _check_unit(drop_rate, "drop_rate")
        self.gamma = _check_unit(gamma, "gamma")
        self.generator = generator
        self.last_choice: str | None = None

    def forward(self, features: Tensor) -> Tensor:
        if not self.training:
            return features
        attention = self_attention(features)
        use_drop = bool(torch.rand((), generator=self.generator) < self.drop_rate)
        self.last_choice = "drop" if use_drop else "importance"
        selected = drop_mask(attention, self.gamma) if use_drop else importance_map(attention)
        return features * selected

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, gamma={self.gamma}"


def adl_model(settings: ADLSettings, net: CSoANet) -> CSoANet:
    """ADL's `model` hook: an :class:`AttentionDropout` (``settings.adl_drop_rate``,
    ``settings.adl_gamma``) appended to each of `ADL_BLOCKS` of ``net``'s backbone, in place.

    The layer has no parameters, so ``net``'s state dict (and the weights it loaded) is that
    of the plain network.
    """
    for block in ADL_BLOCKS:
        net.backbone.stages[block - 1].append(
            AttentionDropout(settings.adl_drop_rate, settings.adl_gamma)
        )
    return net


ADL = MethodSpec(
    key="adl",
    label="ADL",
    color="#17becf",
    parts=Parts(),
    losses=cam_losses,
    summary="CAM with attention-based dropout after blocks 3-5 (Choe and Shim, CVPR 2019)",
    settings=ADLSettings,
    model=adl_model,
)
