"""The building blocks of a training run, each made from its `RunConfig`.

Checks made before any work (`check_device`, `check_weight_files`, `read_splits`), the data
(`build_sampler`: Sec. 4.1's class-balanced batches; `build_loader`; `eval_sets`), the weights
(`resolve_weights`: a file, our pretraining stage, or none), the networks (`build_model`, W_E:
`build_embedding`), the optimizer (`build_optimizer`), one batch as the method trains on it
(`augment_batch`) and its loss terms (`method_losses`), and a finished run's final network
(`load_final_model`); `RunState`, what they make of a run being trained. `csoa_nb.engine.train`
runs them in a run's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from csoa_nb.base.precision import Amp
from csoa_nb.core.backbones import is_weights_name, weights_file
from csoa_nb.core.models import CSoANet, CSoAOutput, EmbeddingNet
from csoa_nb.data import collate_wsol
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import (
    EpochBatches,
    SeededItems,
    build_datasets,
    build_val_set,
    has_val_split,
    step_seed,
    worker_init,
)
from csoa_nb.engine.distributed import DistEnv, DistributedClassBalancedBatchSampler
from csoa_nb.engine.runs import MODEL_FILE, RunStoreError, load_checkpoint, read_run_config


def check_device(config: RunConfig) -> torch.device:
    """`config.device` as a torch device, refused up front when this machine lacks it."""
    try:
        device = torch.device(config.device)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {config.device!r} ({error}); use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {config.device!r}: this PyTorch sees no CUDA device; use --set device=cpu "
            "(papermill: -p device cpu) or install a CUDA build of PyTorch"
        )
    return device


def check_weight_files(config: RunConfig) -> None:
    """The files that `pretrained` and (for CoAug) `embedding_weights` name exist: a local
    file, or a torchvision weights name whose file is in the torch hub cache ("" and
    "pretrain" name none). Checked before any work; a ValueError names the setting and its
    fix."""
    settings = {"pretrained": config.backbone}
    if config.uses_coaug:
        settings["embedding_weights"] = (
            "slim embedding" if config.embedding == "slim" else config.embedding)
    for name, net in settings.items():
        value = getattr(config, name)
        if value in ("", "pretrain") or Path(value).expanduser().is_file():
            continue
        if is_weights_name(value):
            try:
                weights_file(value, net)
            except (OSError, ValueError) as error:
                raise ValueError(f"{name}={value!r}: {error}") from None
            continue
        otherwise = "random weights" if name == "pretrained" else "the backbone's source"
        raise ValueError(
            f"{name}={value!r}: no weights file at {Path(value).expanduser().resolve()}: name "
            f"an existing file (--set {name}=PATH; papermill: -p {name} PATH), 'pretrain' for "
            f"our pretraining stage, or '' for {otherwise}"
        )


def read_splits(config: RunConfig) -> tuple[Dataset, Dataset]:
    """The train and test readers (`build_datasets`), after reading the lists of every split
    the run reads: the validation split too where `finalize_run` scores it (Choe et al.'s
    protocol), so that a missing one fails before any work, not after the last epoch. A
    data_root that cannot be read (or written, for generated data) is a ValueError naming it."""
    try:
        splits = build_datasets(config)
        if has_val_split(config):
            build_val_set(config)
    except OSError as error:
        raise config.data_root_error(error) from error
    return splits


def dataset_labels(dataset: Any) -> list[int]:
    """Class labels of every item, without loading images (every reader exposes `labels`)."""
    return [int(v) for v in dataset.labels]


def build_sampler(
    config: RunConfig, train_set: Any, env: DistEnv | None = None
) -> ClassBalancedBatchSampler:
    """Sec. 4.1's class-balanced batches, after checking that the split can fill them: every
    class has training images and one batch fits in the split. Under torchrun, this rank's
    whole groups of the epoch (`DistributedClassBalancedBatchSampler`)."""
    labels = dataset_labels(train_set)
    missing = sorted(set(range(config.num_classes)) - set(labels))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} of {config.num_classes} classes have no training image in the "
            f"{config.dataset} train split (class indices {shown}): fix the split file or the "
            "class list"
        )
    if config.batch_size > len(labels):
        raise ValueError(
            f"batch_size ({config.batch_size}) exceeds the {len(labels)} training images of "
            f"the {config.dataset} dataset: lower batch_size (--set batch_size=N)"
        )
    if env is not None and env.distributed:
        return DistributedClassBalancedBatchSampler.for_env(
            labels, config.batch_size, config.classes_per_batch, config.seed, env
        )
    return ClassBalancedBatchSampler(
        labels, config.batch_size, config.classes_per_batch, seed=config.seed
    )


def build_loader(
    config: RunConfig, train_set: Dataset, sampler: ClassBalancedBatchSampler
) -> DataLoader:
    """The training batches: `sampler`'s class-balanced index batches of the epoch
    (`EpochBatches`), each item drawn by `SeededItems` (its augmentation's own generator; the
    synthetic images cached)."""
    return DataLoader(
        SeededItems(train_set, config.seed, cache=config.dataset == "synthetic"),
        batch_sampler=EpochBatches(sampler),
        collate_fn=collate_wsol,
        num_workers=config.num_workers,
        worker_init_fn=worker_init,
    )


def eval_sets(config: RunConfig, test_set: Dataset) -> tuple[Dataset, Dataset | None]:
    """What the test maps are collected from (the test reader, cached for the synthetic
    benchmark) and the per-epoch validation set: its first `val_images` images, or None."""
    if config.dataset == "synthetic":
        test_set = SeededItems(test_set, config.seed, cache=True)
    val_count = min(config.val_images, len(test_set))
    return test_set, (Subset(test_set, range(val_count)) if val_count else None)


def resolve_weights(
    config: RunConfig, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> tuple[str | None, str | None]:
    """Backbone and W_E weights: a path/name, our pretraining stage's file, or None (random).

    `embedding_weights=""` follows the backbone (the pretraining stage's W_E when
    `pretrained="pretrain"`); `embedding_weights="pretrain"` takes the pretraining stage's W_E
    for a backbone trained from scratch too (the paper's W_E is always pretrained).
    """
    from csoa_nb.engine.pretrain import STAGE_EMBEDDING, pretrain

    embedding = config.embedding_weights if config.uses_coaug else ""
    stage_embedding = embedding == "pretrain" or (not embedding and config.pretrained == "pretrain")
    if config.uses_coaug and stage_embedding and config.embedding != STAGE_EMBEDDING:
        raise ValueError(
            f"the pretraining stage's W_E is the slim one, not {config.embedding!r}: name W_E's "
            "weights in embedding_weights (a file, a torchvision name, or 'efficientnet_lite0' "
            "for the installed ImageNet weights of EfficientNet-Lite0)")
    stage = None
    if "pretrain" in (config.pretrained, embedding):
        stage = str(pretrain(config, progress=progress, log=log))
    backbone = stage if config.pretrained == "pretrain" else (config.pretrained or None)
    if stage_embedding:
        return backbone, stage
    return backbone, (embedding or None)


def build_model(config: RunConfig, weights: str | None = None) -> nn.Module:
    """The network of `config.method`: the plain `CSoANet`, or what the method's `model` hook
    makes of it with the method's settings (ADL's layers, ACoL's branches)."""
    net = CSoANet(
        config.backbone,
        config.num_classes,
        feature_block=config.feature_block,
        weights=weights,
        baseline=not config.two_heads,
        head_width=config.head_width or None,
        slim_width=config.slim_width,
    )
    hook = config.method_spec.model
    return net if hook is None else hook(config.method_settings, net)


def augment_batch(
    config: RunConfig, images: torch.Tensor, labels: torch.Tensor, epoch: int, index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `index` of `epoch` (its place in the epoch's global order: under torchrun, rank r's
    step i is batch i * W + r) as the method trains on it: its `augment` hook (HaS, CutMix) with
    a generator seeded by `step_seed` and the method's settings, or the batch as it is. Returns
    the images and the targets its `losses` receive."""
    hook = config.method_spec.augment
    if hook is None:
        return images, labels
    generator = torch.Generator().manual_seed(step_seed(config.seed, epoch, index))
    return hook(images, labels, generator, config.method_settings, config.num_classes)


def build_embedding(config: RunConfig, weights: str | None = None) -> EmbeddingNet:
    """W_E of Eq. 8, frozen: CoAug shapes the CAM, not the embedding (see `train`)."""
    embed_net = EmbeddingNet(config.embedding, weights=weights, slim_width=config.slim_width)
    return embed_net.freeze()


def build_optimizer(
    config: RunConfig, model: nn.Module
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.ExponentialLR]:
    """SGD with momentum and weight decay, lr x lr_decay each epoch (Sec. 4.1)."""
    head_params = [p for n, p in model.named_parameters() if n.startswith("head_")]
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
    """Every loss term of `config.method` for one batch, plus their weighted sum `total` (the
    method's `losses` in the registry, `csoa_nb.methods`, with the method's settings)."""
    return config.method_spec.losses(config.method_settings, out, images, labels, alpha,
                                     embed_net)


def load_final_model(run_dir: str | Path) -> tuple[RunConfig, nn.Module]:
    """The config and the trained network of a finished run, on the CPU in eval mode: its
    `model.pt`, or the last epoch's `checkpoint.pt` of a run finished before `model.pt` was
    written.

    Raises:
        ValueError: neither file holds the final weights (the message says what to do).
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    # in the layout it trained in, so its maps round as the trainer's final evaluation did
    model = build_model(config).to(memory_format=config.memory_format)
    if (run_dir / MODEL_FILE).is_file():
        try:
            state = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing
            raise RunStoreError(
                f"{run_dir / MODEL_FILE} is not readable final weights ({type(error).__name__}: "
                f"{error}); it may be truncated: delete it, and the run's checkpoint.pt (or a "
                "new training of its config) gives them again") from None
    elif (run_dir / "checkpoint.pt").is_file():
        saved = load_checkpoint(run_dir / "checkpoint.pt", config)
        if int(saved["epoch"]) != config.epochs:
            raise ValueError(f"{run_dir / 'checkpoint.pt'} holds epoch {saved['epoch']} of "
                             f"{config.epochs}: finish the run (train its config again) first")
        state = saved["model"]
    else:
        raise ValueError(
            f"{run_dir} has neither {MODEL_FILE} nor checkpoint.pt (git keeps neither): its "
            "final weights are gone. Train its config.json again into another output_dir "
            "(python -m csoa_nb.engine.train ... --set output_dir=runs); the run is "
            "bit-identical and writes model.pt"
        )
    model.load_state_dict(state)
    return config, model.eval()


@dataclass
class RunState:
    """A run being trained: what `setup_run` builds and the later steps use and update."""

    config: RunConfig
    device: torch.device
    run_dir: Path
    model: nn.Module  # `build_model`: a CSoANet, or a method's network made from one
    embed_net: EmbeddingNet | None
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.ExponentialLR
    sampler: ClassBalancedBatchSampler
    loader: DataLoader
    test_reader: Dataset  # the test split's reader, as `build_datasets` made it
    test_set: Dataset  # what the maps are collected from (the reader, cached for synthetic)
    val_set: Dataset | None  # the first `val_images` test images, or None
    started: float  # time.perf_counter() when `train` began
    start_epoch: int = 0
    elapsed_before: float = 0.0  # seconds spent before the last resume
    env: DistEnv = field(default_factory=DistEnv)  # this process in a torchrun job
    control: Any = None  # the gloo group of hand-offs to rank 0 (`control_group`), or None
    amp: Amp = field(default_factory=lambda: Amp("cpu"))  # the mixed-precision policy
    net: nn.Module | None = None  # what training calls: `model`, DDP-wrapped under torchrun

    @property
    def main(self) -> bool:
        """True on the process that writes the run folder."""
        return self.env.is_main

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"
