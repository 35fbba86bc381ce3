"""The trainer shared by every chapter and the command line.

`train(config)` builds the data, the two-CAM network and (for CoAug) the embedding network W_E,
optimises the loss of `config.method`, checkpoints every epoch, evaluates on the test split and
writes the run folder described in `csoa_nb.runs`. A finished run with the same config hash is
loaded, not retrained; an interrupted one resumes from its last checkpoint.

Losses by method (`csoa_nb.config.METHOD_PARTS`):

- `cam`: cross-entropy on y_L (the paper's "VGGnet-base").
- `twohead`: cross-entropy on y_L and y_F, no inner loss (an ablation: the union of Eq. 13 alone).
- `confseg`: Eq. 6, L_C = L_cls + alpha * L_inner.
- `coaug`: cross-entropy on y_L + coaug_weight * alpha * L_D (Eq. 12), one head.
- `csoa`: Eq. 6 + coaug_weight * alpha * L_D.

Command line::

    python -m csoa_nb.train --preset cpu --method csoa [--set key=value ...]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from csoa_nb.coaug import ClassBalancedBatchSampler, coaug_loss, foreground_background
from csoa_nb.config import RunConfig
from csoa_nb.confseg import alpha as alpha_schedule
from csoa_nb.confseg import confseg_loss
from csoa_nb.data import (
    CUB200,
    ILSVRCLoc,
    WSOLMetadata,
    WSOLTransform,
    check_num_classes,
    collate_wsol,
    make_dataset,
)
from csoa_nb.evaluate import collect_maps, sample_cams, score_maps, ten_crop_probs
from csoa_nb.models import CSoANet, CSoAOutput, EmbeddingNet
from csoa_nb.paths import project_path
from csoa_nb.runs import (
    RunResult,
    append_jsonl,
    command_line,
    find_run,
    load_checkpoint,
    load_run,
    run_dir_for,
    save_torch,
    truncate_jsonl,
    write_json,
)

#: Thetas evaluated at the end of every run, so Table 3 needs no re-evaluation pass.
FINAL_THETAS = (0.2, 0.3, 0.4)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(RuntimeError):
    """`train(..., stop_after_epoch=k)` stopped after epoch k's checkpoint, as a kill would."""


# ----------------------------------------------------------------------------- building blocks
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def dataset_root(config: RunConfig) -> Path:
    """The folder the config's dataset is read from (generating the synthetic one if needed)."""
    root = project_path(config.data_root)
    if config.dataset == "synthetic":
        return make_dataset(root / "synthetic", **config.synthetic_kwargs())
    if config.dataset == "cub":
        nested = root / "CUB_200_2011"
        return nested if (nested / "images.txt").exists() else root
    if config.dataset == "ilsvrc":
        nested = root / "ILSVRC"
        return nested if nested.is_dir() else root
    return root


def build_datasets(config: RunConfig, *, test_crop_only: bool = True) -> tuple[Dataset, Dataset]:
    """Train and test datasets of `config` with the paper's transforms (Sec. 4.1)."""
    root = dataset_root(config)
    train_tf = WSOLTransform(True, config.resize_size, config.crop_size)
    test_tf = WSOLTransform(False, config.resize_size, config.crop_size)
    kw = {"num_classes": config.num_classes}
    if config.dataset in ("synthetic", "cub"):
        return CUB200(root, "train", train_tf, **kw), CUB200(root, "test", test_tf, **kw)
    if config.dataset == "ilsvrc":
        return ILSVRCLoc(root, "train", train_tf, **kw), ILSVRCLoc(root, "val", test_tf, **kw)
    meta = project_path(config.metadata_dir)
    return (
        WSOLMetadata(root, meta, "train", train_tf, **kw),
        WSOLMetadata(root, meta, "test", test_tf, **kw),
    )


def dataset_labels(dataset: Any) -> list[int]:
    """Class labels of every item, without loading images (every reader exposes `labels`)."""
    return [int(v) for v in dataset.labels]


def resolve_weights(config: RunConfig) -> tuple[str | None, str | None]:
    """Backbone and embedding weights: a path/name, our pretraining output, or None."""
    if config.pretrained == "pretrain":
        from csoa_nb.pretrain import pretrain

        path = str(pretrain(config))
        return path, (config.embedding_weights or path)
    return (config.pretrained or None), (config.embedding_weights or None)


def build_model(config: RunConfig, weights: str | None = None) -> CSoANet:
    return CSoANet(
        config.backbone,
        config.num_classes,
        feature_block=config.feature_block,
        weights=weights,
        baseline=not config.two_heads,
        head_width=config.head_width or None,
        slim_width=config.slim_width,
    )


def build_embedding(config: RunConfig, weights: str | None = None) -> EmbeddingNet:
    """W_E of Eq. 8, frozen: CoAug shapes the CAM, not the embedding (see `train`)."""
    embed_net = EmbeddingNet(config.embedding, weights=weights, slim_width=config.slim_width)
    return embed_net.freeze()


def build_optimizer(
    config: RunConfig, model: CSoANet
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.ExponentialLR]:
    """SGD with momentum and weight decay, lr x lr_decay each epoch (Sec. 4.1)."""
    head_params = [p for n, p in model.named_parameters() if n.startswith(("head_", "w_"))]
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [
        {"params": body_params, "lr": config.lr},
        {"params": head_params, "lr": config.lr * config.head_lr_mult},
    ]
    optimizer = torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    return optimizer, scheduler


def method_losses(
    config: RunConfig,
    out: CSoAOutput,
    images: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    embed_net: nn.Module | None,
) -> dict[str, torch.Tensor]:
    """Every loss term of `config.method` for one batch, plus their weighted sum `total`."""
    if config.two_heads:
        total, terms = confseg_loss(out, labels, alpha if config.uses_inner_loss else 0.0)
        terms = dict(terms)
        if not config.uses_inner_loss:
            terms.pop("inner", None)
    else:
        total = F.cross_entropy(out.logits_last, labels)
        terms = {"cls_last": total}
    if config.uses_coaug:
        if embed_net is None:
            raise ValueError(f"method {config.method!r} needs the embedding network W_E")
        fg_in, bg_in, mask_bg_in = foreground_background(images, out.cam_last, labels)
        embedded = embed_net(torch.cat([fg_in, bg_in, mask_bg_in]))
        fg, bg, mask_bg = embedded.chunk(3)
        loss_d, d_terms = coaug_loss(
            fg, bg, mask_bg, labels, gamma=config.gamma, delta=config.delta
        )
        terms["coaug"] = loss_d
        terms["d_cam"] = d_terms["d_cam"]
        terms["d_back"] = d_terms["d_back"]
        total = total + config.coaug_weight * alpha * loss_d
    terms["total"] = total
    return terms


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))


# ----------------------------------------------------------------------------------- training
def train(
    config: RunConfig,
    *,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train `config` (or load it if already finished) and return its `RunResult`.

    `stop_after_epoch` ends the call after that epoch's checkpoint, as a kill would (the next
    call resumes). `log` receives one line per epoch (default: print).
    """
    say = log or print
    finished = find_run(config)
    if finished is not None:
        return load_run(finished)

    device = torch.device(config.device)
    seed_everything(config.seed)
    started = time.perf_counter()

    train_set, test_set = build_datasets(config)  # first: bad data leaves no empty run folder
    check_num_classes(train_set.num_classes, config.num_classes, f"{config.dataset} dataset")
    run_dir = run_dir_for(config)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the run folder {run_dir} ({error}); pass a writable output_dir"
        ) from error
    backbone_weights, embedding_weights = resolve_weights(config)
    model = build_model(config, backbone_weights).to(device)
    embed_net = build_embedding(config, embedding_weights).to(device) if config.uses_coaug else None
    optimizer, scheduler = build_optimizer(config, model)
    sampler = ClassBalancedBatchSampler(
        dataset_labels(train_set), config.batch_size, config.classes_per_batch, seed=config.seed
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        collate_fn=collate_wsol,
        num_workers=config.num_workers,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_count = min(config.val_images, len(test_set))
    val_set = Subset(test_set, range(val_count)) if val_count else None

    checkpoint_path = run_dir / "checkpoint.pt"
    metrics_path = run_dir / "metrics.jsonl"
    start_epoch = 0
    elapsed_before = 0.0
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        truncate_jsonl(metrics_path, start_epoch)
        say(f"[{config.hash}] resuming after epoch {start_epoch} from {checkpoint_path}")
    else:
        metrics_path.unlink(missing_ok=True)
        write_json(run_dir / "config.json", config.to_dict())

    use_amp = config.amp and device.type == "cuda"
    steps = len(sampler)
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        bar = tqdm(
            loader,
            total=steps,
            desc=f"{config.method} epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for step, batch in enumerate(bar):
            images = batch["image"].to(device)
            labels = batch["label"].to(device)
            alpha = alpha_schedule(epoch + step / steps, config.epochs, config.alpha_ramp)
            with torch.autocast(device.type, enabled=use_amp):
                out = model(images)
                terms = method_losses(config, out, images, labels, alpha, embed_net)
            for name, value in terms.items():
                if not torch.isfinite(value).all():
                    raise NonFiniteLossError(
                        f"epoch {epoch + 1}, batch {step + 1}: loss term {name!r} is "
                        f"{value.item()}; training stopped, the last good checkpoint "
                        f"({checkpoint_path if checkpoint_path.exists() else 'none yet'}) is "
                        "kept. Lower lr or check the data."
                    )
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            correct += int((out.logits_last.argmax(1) == labels).sum())
            seen += len(labels)
            bar.set_postfix(loss=f"{terms['total'].item():.3f}", alpha=f"{alpha:.2f}")
        lr_now = optimizer.param_groups[0]["lr"]
        scheduler.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr_now,
            "alpha": alpha_schedule(epoch + 1, config.epochs, config.alpha_ramp),
            "train_acc": 100.0 * correct / max(seen, 1),
            **{f"loss_{k}": v / steps for k, v in sums.items()},
        }
        if val_set is not None:
            val_maps = collect_maps(model, val_set, config, device=device)
            val = score_maps(val_maps, config, thetas=(config.theta,), full=False)
            record.update({f"val_{k}": v for k, v in val.items()})
        record["epoch_time_s"] = time.perf_counter() - epoch_started
        append_jsonl(metrics_path, record)
        save_torch(
            checkpoint_path,
            {
                "config_hash": config.hash,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "elapsed_s": elapsed_before + time.perf_counter() - started,
            },
        )
        say(_epoch_line(config, record))
        _warn_if_inverted(config, record)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch < config.epochs:
            raise RunInterrupted(f"stopped after epoch {epoch + 1}; call train() again to resume")

    maps = collect_maps(model, test_set, config, device=device)
    if config.ten_crop:  # class scores averaged over 10 crops (Sec. 4.1)
        maps["probs"] = ten_crop_probs(model, config, device=device)
    thetas = (config.theta, *(t for t in FINAL_THETAS if t != config.theta))
    metrics = score_maps(maps, config, thetas=thetas, full=True)
    save_torch(run_dir / "eval_maps.pt", {k: v for k, v in maps.items() if k != "masks"})
    save_torch(run_dir / "cams.pt", sample_cams(model, test_set, config, device=device))
    wall = elapsed_before + time.perf_counter() - started
    write_json(
        run_dir / "results.json",
        {
            "config_hash": config.hash,
            "metrics": metrics,
            "wall_time_s": wall,
            "command": command_line(),
            "torch": torch.__version__,
        },
    )
    say(f"[{config.hash}] finished in {wall:.0f} s: {_summary(metrics)}")
    result = load_run(run_dir, cached=False)
    result.wall_time_s = wall
    return result


def _epoch_line(config: RunConfig, record: dict[str, Any]) -> str:
    parts = [f"[{config.hash}] {config.method} epoch {record['epoch']}/{config.epochs}"]
    parts.append(f"loss {record.get('loss_total', math.nan):.4f}")
    parts.append(f"alpha {record['alpha']:.2f} lr {record['lr']:.2e}")
    parts.append(f"train acc {record['train_acc']:.1f}%")
    if "val_top1_loc_err" in record:
        parts.append(
            f"val top-1 loc err {record['val_top1_loc_err']:.1f}% "
            f"GT-known {record['val_gt_known_loc_err']:.1f}% "
            f"cls err {record['val_top1_cls_err']:.1f}%"
        )
    parts.append(f"{record['epoch_time_s']:.1f} s")
    return " | ".join(parts)


def _summary(metrics: dict[str, Any]) -> str:
    keys = ("top1_loc_err", "gt_known_loc_err", "top1_cls_err", "max_box_acc_v2")
    return ", ".join(f"{k} {metrics[k]:.2f}" for k in keys if k in metrics)


def _warn_if_inverted(config: RunConfig, record: dict[str, Any]) -> None:
    """Warn on CoAug's inverted-map collapse: the map is brighter outside the object."""
    ratio = record.get("val_box_mass_ratio")
    if config.uses_coaug and ratio is not None and ratio < 1.0:
        warnings.warn(
            f"[{config.hash}] epoch {record['epoch']}: the CAM puts less mass inside the "
            f"ground-truth boxes than a uniform map would (ratio {ratio:.2f} < 1): the map may "
            "have inverted (object dark, background bright); look at the maps",
            RuntimeWarning,
            stacklevel=2,
        )


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.train", description=__doc__)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--method", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any RunConfig field, e.g. --set epochs=3 --set theta=0.2",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bars (the default when stderr is not a terminal: one line per epoch)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides: dict[str, Any] = {}
    if args.method is not None:
        overrides["method"] = args.method
    if args.seed is not None:
        overrides["seed"] = args.seed
    for item in args.assignments:  # the dataset chooses preset defaults (paper: CUB or ILSVRC)
        key, _, value = item.partition("=")
        if key == "dataset":
            overrides["dataset"] = value
    return RunConfig.preset(args.preset, **overrides).with_overrides(args.assignments)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    result = train(config, progress=not args.no_progress and sys.stderr.isatty())
    print(f"run folder: {result.run_dir}{' (cached)' if result.cached else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
