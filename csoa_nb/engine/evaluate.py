"""Evaluation: from a trained network to the paper's numbers, and re-evaluation at other thetas.

One pass over the test set collects, for every image, the CAMs of its ground-truth class
(S_L^c and S_F^c), the class scores and the ground-truth boxes (`collect_maps`). Everything the
tables need is computed from those maps (`score_maps`): Eq. 13 boxes at each theta, top-1/top-5
loc. error, GT-known loc. error, classification errors, MaxBoxAccV2 and PxAP. Only the
ground-truth class's maps are needed: when the top-1 class is wrong the image is a localisation
error whatever its box, and when it is right its box is the ground-truth class's box.

The maps are saved with the run (`eval_maps.npz`), so another theta costs no retraining::

    python -m csoa_nb.engine.evaluate RUN_DIR --theta 0.2 0.3 0.4 [--json metrics.json]

The scores are a `csoa_nb.core.scores.Scores`; `--json` writes their flat form (`to_record`), in
which each key has one meaning, as in `results.json`: `top1_loc_err`, `gt_known_loc_err`,
... (no suffix) and `gt_known_loc_acc@iouN` are at the run's own theta (`config.theta`), and
`top1_loc_err@T` ... at theta T. PxAP needs the test masks, which a run does not save: they are
read from the run's dataset, a relative `data_root` meaning the checkout that holds the run
folder (see `reevaluate`).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from csoa_nb.base.checks import check_run_theta
from csoa_nb.base.paths import project_root
from csoa_nb.core.localize import REPORTED_THETAS, fuse_cams
from csoa_nb.core.maxboxacc import MaxBoxAccV2
from csoa_nb.core.metrics import LocalizationEvaluator
from csoa_nb.core.models import CSoAOutput
from csoa_nb.core.monitors import collapse_stats
from csoa_nb.core.scores import MapSet, SampleCams, Scores
from csoa_nb.core.ten_crop import ten_crop_logits
from csoa_nb.data import WSOLTransform, collate_wsol, denormalize
from csoa_nb.engine.arrays import FILES
from csoa_nb.engine.config import THETA_DECIMALS, RunConfig
from csoa_nb.engine.datasets import build_datasets
from csoa_nb.engine.runs import has_arrays, load_arrays, read_run_config, write_json
from csoa_nb.methods.confseg import class_map

#: Images kept in `cams.npz` for figures and widgets.
SAMPLE_COUNT = 16


def class_probabilities(out: CSoAOutput) -> torch.Tensor:
    """Softmax scores, averaged over the heads the network has (y_L, and y_F if present)."""
    probs = out.logits_last.softmax(1)
    if out.logits_feature is not None:
        probs = (probs + out.logits_feature.softmax(1)) / 2
    return probs


@torch.no_grad()
def collect_maps(
    model: nn.Module,
    dataset: Dataset,
    config: RunConfig,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
) -> MapSet:
    """Ground-truth-class CAMs (float16), class scores, labels, boxes and masks of `dataset`;
    the network's forward pass inside `autocast()` if given (the trainer's per-epoch monitor
    in its training precision).

    The network gets the ground-truth labels, as Choe et al.'s evaluation passes them: every
    map is of the ground-truth class, and ACoL's branch B is erased by branch A's map of that
    class (`csoa_nb.methods.acol`); the class scores never depend on them.

    Returns a dict: `cam_last` N x h x w, `cam_feature` N x h x w or None, `probs` N x C
    (averaged over the heads), `probs_last` N x C (y_L alone),
    `labels` N, `boxes` list of K_i x 4 (x0, y0, x1, y1, pixels, ends exclusive), `masks`
    N x H x W uint8 or None, `image_size` (H, W).
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_wsol)
    keys = ("cam_last", "cam_feature", "probs", "probs_last", "labels")
    parts: dict[str, list[Any]] = {k: [] for k in keys}
    boxes: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    image_size: tuple[int, int] = (config.crop_size, config.crop_size)
    for batch in loader:
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        with autocast() if autocast else nullcontext():
            out = model(images, labels)  # the class whose map is scored (ACoL erases by it)
        image_size = (int(images.shape[-2]), int(images.shape[-1]))
        parts["cam_last"].append(class_map(out.cam_last, labels).half().cpu())
        feature = None if out.cam_feature is None else class_map(out.cam_feature, labels)
        parts["cam_feature"].append(None if feature is None else feature.half().cpu())
        parts["probs"].append(class_probabilities(out).float().cpu())
        parts["probs_last"].append(out.logits_last.softmax(1).float().cpu())
        parts["labels"].append(labels.cpu())
        boxes.extend(b.float() for b in batch["boxes"])
        if batch.get("mask") is not None:
            masks.append(batch["mask"][:, 0].to(torch.uint8))
    has_feature = parts["cam_feature"] and parts["cam_feature"][0] is not None
    return {
        "cam_last": torch.cat(parts["cam_last"]),
        "cam_feature": torch.cat(parts["cam_feature"]) if has_feature else None,
        "probs": torch.cat(parts["probs"]),
        "probs_last": torch.cat(parts["probs_last"]),
        "labels": torch.cat(parts["labels"]),
        "boxes": boxes,
        "masks": torch.cat(masks) if masks else None,
        "image_size": list(image_size),
    }


def box_mass_ratio(loc_maps: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
    """Share of map mass inside the first ground-truth box over that box's share of the image.

    1 means a uniform map; > 1 the map favours the object; < 1 the map is brighter outside the
    object than inside, the signature of CoAug's inverted-map collapse. Shape N.
    """
    ratios = []
    height, width = loc_maps.shape[-2:]
    for loc_map, image_boxes in zip(loc_maps, boxes, strict=True):
        x0, y0, x1, y1 = (int(round(float(v))) for v in image_boxes[0])
        box_area = max((x1 - x0) * (y1 - y0), 1)
        total = float(loc_map.sum()) + 1e-8
        inside = float(loc_map[y0:y1, x0:x1].sum())
        ratios.append((inside / total) / (box_area / (height * width)))
    return torch.tensor(ratios)


def fused_chunks(maps: MapSet, chunk: int = 128) -> Iterator[tuple[int, int, torch.Tensor]]:
    """`(start, stop, loc_maps)` for images ``start:stop`` of collected maps (`collect_maps`'
    form), `chunk` at a time: Eq. 13's fused map (`fuse_cams` of S_L and S_F) at image size,
    the map every box and pixel metric scores."""
    size = tuple(maps["image_size"])
    count = len(maps["labels"])
    feature = maps["cam_feature"]
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        yield start, stop, fuse_cams(maps["cam_last"][start:stop].float(),
                                     None if feature is None else feature[start:stop].float(),
                                     size)


def score_maps(
    maps: MapSet,
    config: RunConfig,
    *,
    thetas: tuple[float, ...],
    full: bool = True,
    chunk: int = 128,
) -> Scores:
    """All metrics of collected maps (`csoa_nb.core.scores.Scores`): Eq. 13's errors at each of
    `thetas` (the first is the scores' own `theta`), the IoU-level accuracies, the collapse
    monitors of the raw maps (`csoa_nb.core.monitors.collapse_stats`) and `box_mass_ratio`.

    `full=False` (per-epoch validation) skips MaxBoxAccV2 and PxAP.
    """
    evaluator = LocalizationEvaluator(thetas, with_maxboxacc=full)
    ratios = []
    masks = maps.get("masks") if full else None
    for start, stop, loc_maps in fused_chunks(maps, chunk):
        boxes = maps["boxes"][start:stop]
        evaluator.accumulate(
            maps["probs"][start:stop],
            maps["labels"][start:stop],
            loc_maps,
            boxes,
            None if masks is None else masks[start:stop].float(),
        )
        ratios.append(box_mass_ratio(loc_maps, boxes))
    return evaluator.compute().with_values(
        box_mass_ratio=float(torch.cat(ratios).mean()), **collapse_stats(maps["cam_last"])
    )


def box_hits(maps: MapSet, chunk: int = 128) -> np.ndarray:
    """Per-image BoxAcc hits, bool ``N x 3 x 100`` (IoU 30/50/70 x thresholds 0.00-0.99), of
    Eq. 13's fused maps as `score_maps` scores them; their mean over images, maxed over
    thresholds and averaged over IoUs, is MaxBoxAccV2 (`MaxBoxAccV2.image_hits`)."""
    metric = MaxBoxAccV2()
    return np.concatenate([metric.image_hits(loc_maps, maps["boxes"][start:stop])
                           for start, stop, loc_maps in fused_chunks(maps, chunk)])


@torch.no_grad()
def sample_cams(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: torch.device | str = "cpu",
    count: int = SAMPLE_COUNT,
) -> SampleCams:
    """A few test images (uint8, H x W x 3) with all-class CAMs, for figures and widgets."""
    model.eval()
    step = max(len(dataset) // count, 1)
    items = [dataset[i] for i in range(0, len(dataset), step)][:count]
    batch = collate_wsol(items)
    out = model(batch["image"].to(device), batch["label"].to(device))
    images = (denormalize(batch["image"]).clamp(0, 1) * 255).round().to(torch.uint8)
    return {
        "images": images.permute(0, 2, 3, 1).contiguous(),
        "labels": batch["label"],
        "indices": batch["index"],
        "boxes": [b.float() for b in batch["boxes"]],
        "masks": None if batch.get("mask") is None else batch["mask"][:, 0].to(torch.uint8),
        "cam_last": out.cam_last.float().cpu(),
        "cam_feature": None if out.cam_feature is None else out.cam_feature.float().cpu(),
        "probs": class_probabilities(out).float().cpu(),
    }


@torch.no_grad()
def ten_crop_probs(
    model: nn.Module,
    test_set: Dataset,
    config: RunConfig,
    *,
    device: torch.device | str = "cpu",
    indices: Sequence[int] | None = None,
) -> torch.Tensor:
    """10-crop class scores of the reader `test_set` (Sec. 4.1, following Zhou et al. 2016):
    a copy of it reads the images resized, not cropped, and the ten crops come from those.
    `indices`: only those images, in that order (a rank's shard, `engine.distributed`)."""
    test_set = copy.copy(test_set)
    test_set.transform = WSOLTransform(False, config.resize_size, config.resize_size)
    if indices is not None:
        test_set = Subset(test_set, list(indices))
    loader = DataLoader(test_set, batch_size=32, shuffle=False, collate_fn=collate_wsol)
    model.eval()

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        return class_probabilities(model(x)).clamp_min(1e-12).log()

    scores = [
        ten_crop_logits(log_probs, b["image"].to(device), config.crop_size).cpu() for b in loader
    ]
    return torch.cat(scores)


def check_run_folder(run_dir: Path) -> None:
    """Raise `ValueError` naming what is missing unless `run_dir` is a finished run with maps.

    A finished run folder (`csoa_nb.engine.runs`) holds `config.json`, `results.json` and
    `eval_maps.npz`; the message tells a non-folder, a non-run folder, an unfinished run and a
    run without saved maps apart, and what to do about each.
    """
    if not run_dir.is_dir():
        raise ValueError(
            f"{run_dir} is not a folder: pass a run folder <output_dir>/<hash>/ written by "
            "`python -m csoa_nb.engine.train`, e.g. one under runs/ or results/runs/"
        )
    if not (run_dir / "config.json").is_file():
        raise ValueError(
            f"{run_dir} is not a run folder (it has no config.json): pass a folder "
            "<output_dir>/<hash>/ written by `python -m csoa_nb.engine.train`, e.g. one under "
            "runs/ or results/runs/"
        )
    if not (run_dir / "results.json").is_file():
        raise ValueError(
            f"{run_dir} is an unfinished run (config.json but no results.json): finish it by "
            "running the same training command or chapter again (it resumes from its "
            "checkpoint.pt), then evaluate it"
        )
    if not has_arrays(run_dir, "test"):
        raise ValueError(
            f"{run_dir / FILES['test']} does not exist: the finished run's saved maps are what "
            f"re-evaluation reads. Retrain the run: move {run_dir} away and train its "
            f"config.json again (the new run saves {FILES['test']})"
        )


def _checkout_of(path: Path) -> Path | None:
    """The csoa-book checkout (`_toc.yml` and `csoa_nb/`) at or above `path`, or None."""
    root = project_root(path)
    return root if (root / "_toc.yml").is_file() and (root / "csoa_nb").is_dir() else None


def _dataset_config(
    run_dir: Path, config: RunConfig, data_root: str | Path | None
) -> RunConfig | str:
    """`config` with absolute dataset paths, or the reason there are none.

    `data_root` (relative to the working directory) overrides the run's. The paths a run
    folder's `config.json` names are not trusted (the folder may have been copied from
    anywhere): a relative one means the checkout that holds `run_dir`, else the checkout that
    holds the working directory (`csoa_nb.base.paths`), and must stay inside it; an absolute one, or
    one whose `..` steps leave the checkout, is used only when the user names it with
    `data_root`. Otherwise the reason is returned, so that no dataset is read from, or
    generated into, a folder the user did not choose (a stray `./data`, `/`, `../../..`).
    """
    changes: dict[str, str] = {}
    if data_root is not None:
        changes["data_root"] = str(Path(data_root).expanduser().resolve())
    paths = {"data_root": config.data_root, "metadata_dir": config.metadata_dir}
    stored = {key: value for key, value in paths.items() if value and key not in changes}
    if stored:
        anchor = _checkout_of(run_dir.resolve()) or _checkout_of(Path.cwd())
        untrusted = [f"{key} {value!r}" for key, value in stored.items()
                     if Path(value).expanduser().is_absolute() or anchor is not None
                     and not (anchor / value).resolve().is_relative_to(anchor.resolve())]
        if untrusted:
            return (f"the run's config.json names {', '.join(untrusted)}, absolute or outside "
                    "the checkout; a run folder's paths are trusted only inside the checkout, "
                    "so nothing was read or written there: pass --data-root DIR, the dataset "
                    "folder the run was trained on, for PxAP")
        if anchor is None:
            names = ", ".join(f"{key} {value!r}" for key, value in stored.items())
            return (
                f"{run_dir} is not inside a csoa-book checkout, nor is the working directory, "
                f"so the run's relative {names} names no folder (nothing was read or written); "
                "pass --data-root DIR, the dataset folder the run was trained on, for PxAP"
            )
        changes.update({key: str(anchor / value) for key, value in stored.items()})
    return config.replace(**changes) if changes else config


def _warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def reevaluate(
    run_dir: str | Path,
    thetas: tuple[float, ...],
    *,
    data_root: str | Path | None = None,
    log: Callable[[str], None] = _warn,
) -> Scores:
    """Metrics of a finished run at other thetas, from its saved maps (no retraining).

    `errors` and `gt_known_loc_acc` of the scores are at the run's own theta `config.theta`,
    as in its `results.json`, whatever `thetas` holds; `by_theta` holds exactly `thetas`
    (`scores.at(T)`). The collapse monitors are those of the run's saved maps.

    PxAP needs the test masks, which the run folder lacks; they are read from the run's
    dataset (`data_root` overrides its folder; see `_dataset_config` for relative paths).
    When the dataset cannot be found or read, PxAP is left out and `log` says why; every other
    metric stands.

    Raises:
        ValueError: `run_dir` is not a finished run folder with `eval_maps.npz`.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    config = read_run_config(run_dir)
    maps = load_arrays(run_dir, "test")
    if maps.get("masks") is None:
        dataset_config = _dataset_config(run_dir, config, data_root)
        if isinstance(dataset_config, str):
            log(f"PxAP left out: {dataset_config}")
        else:
            try:
                _, test_set = build_datasets(dataset_config)
                if getattr(test_set, "has_masks", False):
                    maps["masks"] = collect_masks(test_set)
            except (OSError, ValueError) as error:
                log(f"PxAP left out: the test masks of {run_dir} could not be read ({error})")
    # the run's theta first: it is the scores' own theta (the unsuffixed keys of the record)
    own = config.theta
    scores = score_maps(
        maps, config, thetas=(own, *(t for t in thetas if f"{t:g}" != f"{own:g}")), full=True
    )
    return scores.only_thetas(tuple(thetas))


def collect_masks(dataset: Dataset) -> torch.Tensor:
    loader = DataLoader(dataset, batch_size=64, shuffle=False, collate_fn=collate_wsol)
    return torch.cat([b["mask"][:, 0].to(torch.uint8) for b in loader])


def check_json_destination(path: str | Path) -> Path:
    """`path` if a metrics file can be written there; else `SystemExit` naming the fix.

    Checked before anything is computed: the parent folder must exist and be writable, and
    `path` must not be a folder.
    """
    target = Path(path).expanduser()
    parent = target.parent
    if target.is_dir():
        raise SystemExit(
            f"error: --json {path} is a folder: name a file in it, e.g. "
            f"--json {target / 'metrics.json'}"
        )
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise SystemExit(
            f"error: --json {path}: its folder {parent} {what}: create that folder first or "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise SystemExit(
            f"error: --json {path} is not writable (no write permission on "
            f"{target if target.exists() else parent}): choose a path you can write"
        )
    return target


def theta_arguments(values: Sequence[float], note: Callable[[str], None] = _warn) -> tuple[
        float, ...]:
    """`--theta`'s values as a run rounds theta (`THETA_DECIMALS` decimals), each once, in the
    order given; `note` gets one line per value given twice (or per values that round alike).

    Raises:
        SystemExit: a value outside (0, 1), before or after rounding.
    """
    groups: dict[float, list[float]] = {}
    for theta in values:
        try:
            check_run_theta(theta)
            rounded = check_run_theta(round(theta, THETA_DECIMALS))
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        groups.setdefault(rounded, []).append(theta)
    for rounded, given in groups.items():
        distinct = list(dict.fromkeys(given))
        if len(distinct) > 1:
            note(f"--theta {' and '.join(map(str, distinct))} are one theta at "
                 f"{THETA_DECIMALS} decimals ({rounded:g}, as a run rounds it): scored once")
        elif len(given) > 1:
            times = "twice" if len(given) == 2 else f"{len(given)} times"
            note(f"--theta {given[0]} is given {times}: scored once")
    return tuple(groups)


def _theta_label(theta: float) -> str:
    """0.20 for 0.2 (two decimals, as the reported thetas), 0.125 where two would hide one."""
    return f"{theta:.2f}" if round(theta, 2) == theta else f"{theta:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csoa_nb.engine.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir")
    parser.add_argument("--theta", type=float, nargs="+", default=list(REPORTED_THETAS))
    parser.add_argument("--json", default=None, help="also write the metrics to this file")
    parser.add_argument(
        "--data-root",
        default=None,
        help="dataset folder for PxAP's test masks (default: the run's data_root; a relative "
        "one means the checkout that holds RUN_DIR)",
    )
    args = parser.parse_args(argv)
    thetas = theta_arguments(args.theta)
    json_path = check_json_destination(args.json) if args.json else None
    try:  # a folder that is no finished run, or whose arrays cannot be read (RunStoreError)
        check_run_folder(Path(args.run_dir))
        scores = reevaluate(args.run_dir, thetas, data_root=args.data_root)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    for theta in thetas:
        errors = scores.at(theta)
        print(
            f"theta {_theta_label(theta)}: top-1 loc err {errors.top1_loc_err:.2f}  "
            f"top-5 loc err {errors.top5_loc_err:.2f}  "
            f"GT-known loc err {errors.gt_known_loc_err:.2f}"
        )
    if json_path is not None:
        write_json(json_path, scores.to_record())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
