"""CoAug: the co-supervised augmentation module of CSoA (paper Sec. 3.2, Eq. 8-12).

The CAM S_l^{c_m} of each image's class splits the image into a foreground ``S * I`` and a
background ``(1 - S) * I``; an embedding network W_E (:class:`csoa_nb.core.models.EmbeddingNet`)
maps both, plus the confidently-background part ``(1 - S) * Mask_hat * I``, to vectors
F_m, B_m, Mask_B^m (Eq. 8, 10). A metric loss over the pairs of a batch (Eq. 12) wants
foreground and background far apart (D_cam, Eq. 9), the background close to its confident
part (D_back, Eq. 10), same-class foregrounds close and different-class foregrounds far
apart (D_mn, Eq. 11). :class:`ClassBalancedBatchSampler` builds the batches of Sec. 4.1.
:class:`CoAugSettings` are the settings of the methods that train it (CoAug, CSoA).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Sampler

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
    "ClassBalancedBatchSampler",
    "CoAugSettings",
    "background_mask",
    "class_map",
    "coaug_distances",
    "coaug_loss",
    "foreground_background",
    "foreground_map",
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
    """S_l^{c_m} of Eq. 8 as a ``B x 1 x H x W`` map in [0, 1] at image size ``size``.

    The class map ``S = cam_last[m, labels[m]]`` is normalised per map as
    ``relu(S) / (max relu(S) + eps)`` (not min-max) and upsampled bilinearly
    (``align_corners=False``; a convex combination, so it stays in [0, 1]).

    Why ReLU-max and not min-max: Eq. 8-12 are symmetric in F and B, so with min-max
    normalisation a map that is dark on the object and bright elsewhere is just as good a
    minimum of Eq. 12 as the right one; a throwaway experiment (notes) collapsed to exactly
    such an inverted map. ReLU-max keeps zero as "background": negative evidence never counts
    as object, and only positive class evidence (which the GAP classifier of Eq. 1 must place
    on class-discriminative pixels) can make a pixel foreground. This anchors which side is
    the object. A map that is negative everywhere gives an all-zero foreground.

    Gradients flow through the map into ``cam_last``: that is how CoAug regulates the CAM.
    """
    cam = F.relu(class_map(cam_last, labels))
    cam = cam / (cam.amax(dim=(-2, -1), keepdim=True) + eps)
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)


def background_mask(cam: Tensor, background: str = "paper") -> Tensor:
    """Mask_hat of Eq. 10 for raw maps ``cam`` (``B x h x w``): float 0/1, no gradient.

    * ``"paper"``: Eq. 3's binary confidence mask, ``|S - mu_1| > mu_2``, as written. For a
      near-binary map with foreground fraction p it marks only the *smaller* side as
      confident (p < 1/2: the object; p > 1/2: the background), so a correct map of an object
      smaller than half the image has no confident background and the largest D_back; a
      constant map has an empty mask and D_back = 0 (chapter 04 proves where this leads).
    * ``"below_mean"`` (our extension, not the paper's): ``[S < mu_1]``, the pixels below the
      map's mean. For a binary map this is exactly ``1 - S``, so ``(1 - S) * Mask_hat * I``
      equals the background ``(1 - S) * I`` and D_back = 0 for every binary map, whatever its
      foreground fraction.
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
    """The three inputs of W_E in Eq. 8 and 10: ``S * I``, ``(1 - S) * I``,
    ``(1 - S) * Mask_hat * I``.

    ``S`` is :func:`foreground_map` at the image size; ``Mask_hat`` is
    :func:`background_mask` of the raw S_l^{c_m} in the reading ``background`` (``"paper"``:
    Eq. 3's binary confidence mask) unless ``binary_mask`` is given, upsampled with nearest
    neighbour to ``H x W``; it is a constant (no gradient). Images are the ImageNet-normalised
    inputs, so "masked out" means the mean colour (zero).

    Args:
        images: I, ``B x 3 x H x W``.
        cam_last: raw S_L, ``B x C x h x w``.
        labels: class indices c_m, shape ``B``.
        binary_mask: optional ``B x h x w`` 0/1 Mask_hat of S_l^{c_m}.
        background: the reading of Eq. 10's Mask_hat (:data:`BACKGROUNDS`).

    Returns ``(foreground, background, mask_background)``, each ``B x 3 x H x W``.
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
    mask_hat = F.interpolate(binary_mask.detach()[:, None].to(images.dtype), size=size,
                             mode="nearest")
    background_part = (1 - fg_map) * images
    return fg_map * images, background_part, background_part * mask_hat


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


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``classes_per_batch`` classes x ``batch_size // classes_per_batch`` images.

    Sec. 4.1: "The batch size is set to 48 with at most 12 categories for each batch": CoAug
    needs same-class pairs in every batch (Eq. 12). Each batch draws ``classes_per_batch``
    distinct classes and ``k = batch_size // classes_per_batch`` images of each.

    Within an epoch images are drawn without replacement: each class keeps a shuffled pool of
    its images; classes are chosen among those with at least k images left, with probability
    proportional to how many they have left (so pools drain evenly). Only when fewer than
    ``classes_per_batch`` classes have k images left are classes with too few left used (those
    with the most left first): such a class gives all it has left and is topped up with
    other images of that class drawn at random (already used this epoch, so they repeat
    within the epoch but not within the batch; only a class with fewer than k images in
    total repeats images within a batch).

    ``len(sampler) = len(labels) // batch_size``. The order is a deterministic function of
    ``(seed, epoch)``; call :meth:`set_epoch` at each epoch to get a different one.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int = 48,
        classes_per_batch: int = 12,
        seed: int = 0,
    ) -> None:
        super().__init__()
        labels_array = np.asarray(labels, dtype=np.int64)
        if labels_array.ndim != 1:
            raise ValueError(f"labels must be a flat sequence of ints, got shape "
                             f"{labels_array.shape}")
        if batch_size < 1 or classes_per_batch < 1 or batch_size % classes_per_batch != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of classes_per_batch "
                f"({classes_per_batch})"
            )
        classes = np.unique(labels_array)
        if classes_per_batch > len(classes):
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) exceeds the number of classes present "
                f"in labels ({len(classes)}): lower classes_per_batch"
            )
        if len(labels_array) < batch_size:
            raise ValueError(
                f"only {len(labels_array)} labels for batch_size {batch_size}: no full batch"
            )
        self.batch_size = batch_size
        self.classes_per_batch = classes_per_batch
        self.per_class = batch_size // classes_per_batch
        self.seed = seed
        self.epoch = 0
        self._by_class = [np.flatnonzero(labels_array == c) for c in classes]
        self._num_samples = len(labels_array)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (a deterministic function of ``(seed, epoch)``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_samples // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pools = [list(rng.permutation(idx)) for idx in self._by_class]
        k = self.per_class
        for _ in range(len(self)):
            left = np.array([len(p) for p in pools])
            full = np.flatnonzero(left >= k)
            if len(full) >= self.classes_per_batch:
                chosen = rng.choice(full, self.classes_per_batch, replace=False,
                                    p=left[full] / left[full].sum())
            else:
                # the classes with the most images left (random tie-break) fill the batch
                rest = np.flatnonzero(left < k)
                rest = rest[np.lexsort((rng.random(len(rest)), -left[rest]))]
                chosen = np.concatenate([full, rest[: self.classes_per_batch - len(full)]])
            batch: list[int] = []
            for c in chosen:
                take = pools[c][:k]
                del pools[c][:k]
                if len(take) < k:
                    take += self._top_up(rng, c, take, k - len(take))
                batch += [int(i) for i in take]
            yield batch

    def _top_up(self, rng: np.random.Generator, c: int, taken: list[int], need: int) -> list[int]:
        """``need`` more images of class ``c``: distinct from ``taken`` while the class has
        enough, repeated only for a class with fewer than k images in total."""
        others = np.setdiff1d(self._by_class[c], taken)
        if len(others) >= need:
            return list(rng.choice(others, need, replace=False))
        return list(others) + list(rng.choice(self._by_class[c], need - len(others)))
