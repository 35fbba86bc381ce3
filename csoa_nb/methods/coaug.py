"""CoAug: the co-supervised augmentation module of CSoA (paper Sec. 3.2, Eq. 8-12).

The CAM S_l^{c_m} of each image's class splits the image into a foreground ``S * I`` and a
background ``(1 - S) * I``; an embedding network W_E (:class:`csoa_nb.core.models.EmbeddingNet`)
maps both, plus the confidently-background part ``(1 - S) * Mask_hat * I``, to vectors
F_m, B_m, Mask_B^m (Eq. 8, 10). A metric loss over the pairs of a batch (Eq. 12) wants
foreground and background far apart (D_cam, Eq. 9), the background close to its confident
part (D_back, Eq. 10), same-class foregrounds close and different-class foregrounds far
apart (D_mn, Eq. 11); its batches are Sec. 4.1's class-balanced ones
(:class:`csoa_nb.data.sampler.ClassBalancedBatchSampler`). :class:`CoAugSettings` are the
settings of the methods that train it (CoAug, CSoA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from csoa_nb.base.checks import check_choice
from csoa_nb.methods.confseg import class_map, confidence_mask
from csoa_nb.methods.settings import setting

REDUCTIONS = ("mean", "sum")
#: Readings of Eq. 10's Mask_hat (`RunConfig.coaug_background`): "paper" is Eq. 3's binary
#: confidence mask, as written; "below_mean" (our extension) is ``[S_L^c < mu_1]``.
BACKGROUNDS = ("paper", "below_mean")

__all__ = [
    "BACKGROUNDS",
    "REDUCTIONS",
    "CoAugSettings",
    "background_mask",
    "class_map",
    "coaug_distances",
    "coaug_loss",
    "foreground_background",
    "foreground_map",
    "upsample_nearest",
]


@dataclass(frozen=True)
class CoAugSettings:
    """The settings of the methods that train CoAug (CoAug, CSoA; `RunConfig` fields of these
    names, in the hash of their runs only, so e.g. one CAM run serves both readings of Eq. 10).

    Attributes:
        coaug_background: the reading of Eq. 10's Mask_hat (:data:`BACKGROUNDS`): "paper"
            (Eq. 3, as written) or "below_mean" (our fix, chapter 04).
        gamma, delta: the weights of Eq. 12 (:func:`coaug_loss`).
        coaug_weight: the weight of L_D beside L_C (ramped with alpha, Eq. 6).
        embedding_weights: W_E's weights: "" = the backbone's source (the pretraining stage's
            W_E when ``pretrained="pretrain"``, else random: an ablation the paper never
            runs); "pretrain" = the pretraining stage's W_E whatever the backbone starts from;
            else a path / torchvision name.
    """

    coaug_background: str = setting("paper", label="Eq. 10's Mask_hat")
    gamma: float = setting(1.0, label="Eq. 12's γ")
    delta: float = setting(1.0, label="Eq. 12's δ")
    coaug_weight: float = setting(1.0, label="weight of L_D")
    embedding_weights: str = setting("", label="W_E's weights")

    def __post_init__(self) -> None:
        check_choice("coaug_background", self.coaug_background, BACKGROUNDS)
        for name in ("gamma", "delta", "coaug_weight"):
            value = getattr(self, name)
            if not value >= 0:  # also catches NaN
                raise ValueError(f"{name} must be >= 0, got {value!r}")


def foreground_map(
    cam_last: Tensor, labels: Tensor, size: tuple[int, int] | torch.Size, eps: float = 1e-6
) -> Tensor:
    """S_l^{c_m} of Eq. 8, ``B x 1 x H x W`` in [0, 1]: ``relu(S) / (max relu(S) + eps)``,
    upsampled bilinearly to ``size``, with gradient. ReLU-max, not min-max: Eq. 8-12 are
    symmetric in F and B, and zero kept as background stops an inverted map minimising Eq. 12."""
    cam = F.relu(class_map(cam_last, labels))
    cam = cam / (cam.amax(dim=(-2, -1), keepdim=True) + eps)
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)


def background_mask(cam: Tensor, background: str = "paper") -> Tensor:
    """Mask_hat of Eq. 10 for raw maps ``cam`` (``B x h x w``): float 0/1, no gradient.

    ``"paper"``: Eq. 3's ``|S - mu_1| > mu_2`` as written, which marks only the smaller side of a
    near-binary map, so an object under half the image has no confident background (chapter
    04). ``"below_mean"`` (ours): ``[S < mu_1]``, ``1 - S`` for a binary map, so D_back = 0.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose one of "
                         f"{', '.join(BACKGROUNDS)}")
    cam = cam.detach()
    if background == "paper":
        return confidence_mask(cam)[1]
    return (cam < cam.mean(dim=(-2, -1), keepdim=True)).to(cam.dtype)


def foreground_background(
    images: Tensor,
    cam_last: Tensor,
    labels: Tensor,
    binary_mask: Tensor | None = None,
    background: str = "paper",
) -> tuple[Tensor, Tensor, Tensor]:
    """W_E's inputs in Eq. 8 and 10: ``S * I``, ``(1 - S) * I``, ``(1 - S) * Mask_hat * I``.

    Each ``B x 3 x H x W``. ``S`` is :func:`foreground_map`; ``Mask_hat`` is ``binary_mask``
    (``B x h x w``, 0/1) or else :func:`background_mask` of the raw class map in the reading
    ``background``, upsampled nearest, no gradient. Masked out is zero, the mean colour.
    """
    if images.dim() != 4 or images.shape[0] != cam_last.shape[0]:
        raise ValueError(
            f"images must be B x 3 x H x W with the batch size of cam_last "
            f"{tuple(cam_last.shape)}, got {tuple(images.shape)}"
        )
    size = images.shape[-2:]
    fg_map = foreground_map(cam_last, labels, size)
    if binary_mask is None:
        binary_mask = background_mask(class_map(cam_last, labels), background)
    if binary_mask.dim() != 3 or binary_mask.shape[0] != images.shape[0]:
        raise ValueError(f"binary_mask must be B x h x w, got {tuple(binary_mask.shape)}")
    mask_hat = upsample_nearest(binary_mask.detach()[:, None].to(images.dtype), size)
    background_part = (1 - fg_map) * images
    return fg_map * images, background_part, background_part * mask_hat


def upsample_nearest(maps: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``F.interpolate(maps, size, mode="nearest")`` for ``B x C x h x w`` maps: each cell
    repeated into a block where ``size`` is a whole multiple of ``(h, w)``, the same values as
    the library's kernel (tested) and several times faster on 1-channel maps on a CPU."""
    height, width = maps.shape[-2:]
    if size[0] % height or size[1] % width:
        return F.interpolate(maps, size=tuple(size), mode="nearest")
    rows, cols = size[0] // height, size[1] // width
    batch, channels = maps.shape[:2]
    blocks = maps[:, :, :, None, :, None].expand(batch, channels, height, rows, width, cols)
    return blocks.reshape(batch, channels, size[0], size[1])


def _safe_norm(x: Tensor, eps: float) -> Tensor:
    """``sqrt(sum x^2 + eps)`` along the last dim: finite gradient even where x == 0."""
    return torch.sqrt(x.pow(2).sum(dim=-1) + eps)


def coaug_distances(
    fg: Tensor, bg: Tensor, mask_bg: Tensor, eps: float = 1e-12
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 9-11 from the embeddings F, B, Mask_B (each ``B x D``).

    * ``D_cam[m] = ||F_m - B_m||_2`` (Eq. 9), shape ``B``;
    * ``D_back[m] = ||B_m - Mask_B^m||_2`` (Eq. 10), shape ``B``;
    * ``D_pair[m, n] = ||F_m - F_n||_2`` (Eq. 11), ``B x B``.

    Norms are ``sqrt(sum of squares + eps)``: the gradient of sqrt at 0 is infinite (the
    diagonal of D_pair, or a collapsed map with F == B), and ``eps = 1e-12`` shifts a norm by
    at most 1e-6. The diagonal of D_pair is ~sqrt(eps) and never used by :func:`coaug_loss`.
    """
    if fg.dim() != 2 or fg.shape != bg.shape or fg.shape != mask_bg.shape:
        raise ValueError(
            f"fg, bg and mask_bg must be B x D embeddings of one shape, got "
            f"{tuple(fg.shape)}, {tuple(bg.shape)}, {tuple(mask_bg.shape)}"
        )
    d_cam = _safe_norm(fg - bg, eps)
    d_back = _safe_norm(bg - mask_bg, eps)
    d_pair = _safe_norm(fg[:, None, :] - fg[None, :, :], eps)
    return d_cam, d_back, d_pair


def coaug_loss(
    fg: Tensor,
    bg: Tensor,
    mask_bg: Tensor,
    labels: Tensor,
    gamma: float = 1.0,
    delta: float = 1.0,
    reduction: str = "mean",
    eps: float = 1e-6,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 12: the CoAug metric loss over the unordered pairs ``m < n`` of a batch.

    With D_cam, D_back, D_mn from :func:`coaug_distances` (on the embeddings F, B, Mask_B):

    * different-class pairs: ``gamma (D_back_m + D_back_n) / (delta D_mn + (D_cam_m +
      D_cam_n) / 2)``: minimising it pushes D_mn up (different classes apart), D_cam up and
      D_back down;
    * same-class pairs: ``(gamma (D_back_m + D_back_n) + D_mn) / ((D_cam_m + D_cam_n) / 2)``:
      pulls same-class foregrounds together.

    Naming: the paper's Eq. 12 swaps the superscripts relative to the sums (its L_D^same sums
    over cls(m) != cls(n) with D^diff, its L_D^diff over cls(m) == cls(n) with D^same). We
    implement the meaning given in the text (same class: small D_mn; different: large) and
    name each term by the pairs it sums over: ``same`` = the sum over same-class pairs,
    ``diff`` = over different-class pairs. ``L_D = same + diff``.

    ``reduction="sum"`` is the paper's plain sum over pairs. ``"mean"`` (default) divides each
    of the two sums by its own number of pairs, so the scale does not depend on the batch
    composition (gamma / delta absorb the rest). A batch without same-class (or without
    different-class) pairs contributes 0 for that term. ``eps`` is added to the
    denominators.

    Returns ``(loss, {"same", "diff", "d_cam" (batch mean), "d_back" (batch mean)})``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}: choose one of {', '.join(REDUCTIONS)}")
    if labels.dim() != 1 or labels.shape[0] != fg.shape[0]:
        raise ValueError(
            f"labels must be a vector of {fg.shape[0]} class indices, got {tuple(labels.shape)}"
        )
    d_cam, d_back, d_pair = coaug_distances(fg, bg, mask_bg)
    labels = labels.to(fg.device)
    upper = torch.ones_like(d_pair, dtype=torch.bool).triu(diagonal=1)
    same_class = labels[:, None] == labels[None, :]
    same_pairs = upper & same_class
    diff_pairs = upper & ~same_class

    back_sum = gamma * (d_back[:, None] + d_back[None, :])
    cam_mean = 0.5 * (d_cam[:, None] + d_cam[None, :])
    diff_terms = back_sum / (delta * d_pair + cam_mean + eps)
    same_terms = (back_sum + d_pair) / (cam_mean + eps)

    zero = fg.new_zeros(())
    same = same_terms[same_pairs].sum() if same_pairs.any() else zero
    diff = diff_terms[diff_pairs].sum() if diff_pairs.any() else zero
    if reduction == "mean":
        same = same / same_pairs.sum().clamp(min=1)
        diff = diff / diff_pairs.sum().clamp(min=1)
    loss = same + diff
    return loss, {"same": same, "diff": diff, "d_cam": d_cam.mean(), "d_back": d_back.mean()}
