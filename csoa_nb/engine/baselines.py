"""The trivial baselines of Choe et al. (CVPR 2020), scored on a run's test split.

Every WSOL table should carry two maps that look at no image: the full-image box and the
centred Gaussian (`csoa_nb.methods.trivial`); Choe et al. report that they beat several
published methods. `trivial_scores(config, kind)` scores one of them on the test set of
`config` exactly as a trained run is scored: the maps enter `csoa_nb.engine.evaluate.score_maps`
unchanged, in the shape a run's `collect_maps` gives (raw ``N x h x w`` maps of the
ground-truth class, at the map size of the run's network), so Eq. 13's boxes, GT-known
localisation, MaxBoxAccV2 and PxAP are computed by the same code.

What is scored and what is not. A trivial map is the same for every class and every image;
it has no classifier. Choe et al. score these baselines with class-agnostic (GT-known)
metrics only, and so does this module: GT-known loc. error at each theta, GT-known loc.
accuracy by IoU level, MaxBoxAccV2 (with MaxBoxAcc and its best threshold by IoU level), PxAP
(the synthetic benchmark has masks) and `box_mass_ratio`. The classification-dependent
metrics (top-1 / top-5 loc. error, top-1 / top-5 cls. error) are NaN: a number there would be
that of whatever classifier were paired with the map, not the baseline's. The collapse
monitors (`cam_nonpositive`, `fg_saturated`) watch a training run and are None.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from csoa_nb.base.checks import check_choice, check_run_theta
from csoa_nb.core.localize import REPORTED_THETAS
from csoa_nb.core.models import CSoANet
from csoa_nb.core.scores import MapSet, Scores, ThetaErrors
from csoa_nb.data import collate_wsol
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_datasets, build_val_set
from csoa_nb.engine.evaluate import score_maps
from csoa_nb.engine.protocol import ProtocolScores, choose_best, choose_theta, theta_curve
from csoa_nb.methods.trivial import center_gaussian_maps, full_image_maps

__all__ = ["TRIVIAL_KINDS", "SIGMA_GRID", "map_size", "default_sigma", "trivial_maps",
           "trivial_scores", "trivial_protocol"]

#: The trivial baselines, by name.
TRIVIAL_KINDS = ("full_image", "center_gaussian")
#: The centred Gaussian's sigma, as fractions of the map's shorter side, chosen on the
#: validation split under Choe et al.'s protocol (`trivial_protocol`).
SIGMA_GRID = (0.125, 0.25, 0.5, 1.0)
#: The errors a trivial map has no value for (it has no classifier): NaN in its scores.
CLASSIFICATION_METRICS = ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err")


def map_size(config: RunConfig) -> tuple[int, int]:
    """``(h, w)`` of the CAM ``S_L`` the run's network gives on a ``crop_size`` test image.

    Measured on the "meta" device (no memory, no compute), not computed from strides:
    inception_v3's unpadded convolutions shave pixels. Every method (ADL, ACoL) keeps the
    backbone's resolution, so this is the map size of every method of the config.
    """
    return _map_size(config.backbone, config.num_classes, config.head_width or None,
                     config.slim_width, config.crop_size)


@functools.cache
def _map_size(backbone: str, num_classes: int, head_width: int | None, slim_width: int,
              crop_size: int) -> tuple[int, int]:
    # building the network costs about 60 ms: once per architecture and size
    with torch.device("meta"), torch.no_grad():
        net = CSoANet(backbone, num_classes, baseline=True, head_width=head_width,
                      slim_width=slim_width)
        out = net.eval()(torch.empty(1, 3, crop_size, crop_size))
    return int(out.cam_last.shape[-2]), int(out.cam_last.shape[-1])


def default_sigma(size: tuple[int, int]) -> float:
    """The centred Gaussian's sigma when none is given: a quarter of the shorter side, in cells."""
    return min(size) / 4.0


def trivial_maps(
    config: RunConfig, kind: str, dataset: Any, *, sigma: float | None = None
) -> MapSet:
    """The maps of baseline `kind` for every image of `dataset`, in `collect_maps`' form.

    `cam_last` is ``N x h x w`` (float32, `map_size(config)`), the same map for every image
    (`full_image_maps` or `center_gaussian_maps` with `sigma`, default `default_sigma`);
    `cam_feature` None; `probs` the one-hot ground truth (GT-known: the class is given, so
    `score_maps`' top-1 loc. error equals the GT-known one before `trivial_scores` blanks it);
    `labels`, `boxes`, `masks` and `image_size` those of `dataset`.
    """
    _check_sigma(kind, sigma)
    return _maps_for(config, kind, _annotations(config, dataset), sigma)


def _check_sigma(kind: str, sigma: float | None) -> None:
    check_choice("kind", kind, TRIVIAL_KINDS)
    if sigma is not None and kind != "center_gaussian":
        raise ValueError(f"sigma is a parameter of 'center_gaussian', not of {kind!r}: drop it")


def _annotations(config: RunConfig, dataset: Any) -> dict[str, Any]:
    """`dataset`'s labels, boxes, masks and image size, in `collect_maps`' form (one pass of
    its loader: the images are decoded, so a caller scoring several maps reads them once)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False,
                                         collate_fn=collate_wsol)
    labels: list[torch.Tensor] = []
    boxes: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    image_size = (config.crop_size, config.crop_size)
    for batch in loader:
        labels.append(batch["label"])
        boxes.extend(b.float() for b in batch["boxes"])
        image_size = (int(batch["image"].shape[-2]), int(batch["image"].shape[-1]))
        if batch.get("mask") is not None:
            masks.append(batch["mask"][:, 0].to(torch.uint8))
    return {"labels": torch.cat(labels), "boxes": boxes,
            "masks": torch.cat(masks) if masks else None, "image_size": list(image_size)}


def _maps_for(config: RunConfig, kind: str, annotations: dict[str, Any],
              sigma: float | None) -> MapSet:
    _check_sigma(kind, sigma)
    labels = annotations["labels"]
    count = len(labels)
    h, w = map_size(config)
    if kind == "full_image":
        cam = full_image_maps(count, h, w)
    else:
        cam = center_gaussian_maps(count, h, w, default_sigma((h, w)) if sigma is None else sigma)
    return {
        "cam_last": cam,
        "cam_feature": None,
        "probs": torch.nn.functional.one_hot(labels, config.num_classes).float(),
        **annotations,
    }


def trivial_scores(
    config: RunConfig,
    kind: str,
    *,
    sigma: float | None = None,
    thetas: tuple[float, ...] | None = None,
) -> Scores:
    """Scores of the trivial baseline `kind` (one of `TRIVIAL_KINDS`) on `config`'s test split.

    The maps (`trivial_maps`) are scored by `csoa_nb.engine.evaluate.score_maps` at `thetas`
    (default: the run's `config.theta`, then `localize.REPORTED_THETAS`), the first being the
    scores' own theta. Class-agnostic metrics only (module docstring): the four
    classification-dependent errors are NaN at every theta, the collapse monitors None.

    Raises:
        ValueError: an unknown `kind`, a `sigma` for the full-image map or one <= 0, a theta
            outside (0, 1).
    """
    check_choice("kind", kind, TRIVIAL_KINDS)
    if thetas is None:
        thetas = (config.theta, *(t for t in REPORTED_THETAS if f"{t:g}" != f"{config.theta:g}"))
    thetas = tuple(check_run_theta(t) for t in thetas)
    _, test_set = build_datasets(config)
    maps = trivial_maps(config, kind, test_set, sigma=sigma)
    scores = score_maps(maps, config, thetas=thetas, full=True)
    by_theta = {theta: _gt_known_only(errors) for theta, errors in scores.by_theta.items()}
    return scores.with_values(errors=_gt_known_only(scores.errors), by_theta=by_theta,
                              cam_nonpositive=None, fg_saturated=None)


def _gt_known_only(errors: ThetaErrors) -> ThetaErrors:
    values = errors.to_dict()
    values.update({name: math.nan for name in CLASSIFICATION_METRICS})
    return ThetaErrors(**values)


def trivial_protocol(config: RunConfig, kind: str) -> tuple[ProtocolScores, float | None]:
    """Baseline `kind` under Choe et al.'s protocol (`csoa_nb.engine.protocol`): the centred
    Gaussian's sigma (`SIGMA_GRID` x the map's shorter side) and then theta chosen on the
    validation split (highest MaxBoxAccV2, then `protocol.choose_theta`), the test split
    scored once there. Returns the scores and the chosen sigma (None for the
    full-image box). Class-agnostic metrics only, as `trivial_scores`."""
    check_choice("kind", kind, TRIVIAL_KINDS)
    val = _annotations(config, build_val_set(config))
    test = _annotations(config, build_datasets(config)[1])
    sigma = None
    if kind == "center_gaussian":
        side = min(map_size(config))
        sigma = choose_best([
            (fraction * side, _scored(config, kind, val, fraction * side,
                                      config.theta).max_box_acc_v2)
            for fraction in SIGMA_GRID
        ])
    theta = choose_theta(theta_curve(_maps_for(config, kind, val, sigma), config))
    return (ProtocolScores(theta, _scored(config, kind, val, sigma, theta),
                           _scored(config, kind, test, sigma, theta)), sigma)


def _scored(config: RunConfig, kind: str, annotations: dict[str, Any], sigma: float | None,
            theta: float) -> Scores:
    maps = _maps_for(config, kind, annotations, sigma)
    scores = score_maps(maps, config, thetas=(theta,), full=True)
    return scores.with_values(errors=_gt_known_only(scores.errors),
                              by_theta={t: _gt_known_only(e) for t, e in scores.by_theta.items()},
                              cam_nonpositive=None, fg_saturated=None)
