"""The trainer shared by every chapter and the command line.

(Over 700 lines: the run's building blocks, the steps of a run as separate functions (setup,
resume, epoch, checkpoint, finalize) around the shared loop of `csoa_nb.engine.loop`, each with
its torchrun side (rank 0 decides and writes, the others wait; sharded evaluation), the epoch
log and the CLI. Splitting the torchrun side out would put each step's two halves in two files.)

`train(config)` builds the data, the two-CAM network and (for CoAug) the embedding network W_E,
optimises the loss of `config.method`, checkpoints every epoch, evaluates on the test split and
writes the run folder described in `csoa_nb.engine.runs`. A finished run with the same config
hash is loaded, not retrained; an interrupted one resumes from its last checkpoint.

The loss of each method is its `losses` in the registry (`csoa_nb.methods`).

Command line::

    python -m csoa_nb.engine.train --preset cpu --method csoa [--set key=value ...]
    torchrun --nproc_per_node=N -m csoa_nb.engine.train --preset paper ...   # N processes

Under torchrun (README, "The paper preset on one GPU, several GPUs, several machines") every
process trains with DistributedDataParallel (NCCL on CUDA, one GPU each; gloo on the CPU):

* batches: each rank takes whole class-balanced groups of `batch_size` images
  (`DistributedClassBalancedBatchSampler`): the global batch is world_size x batch_size, and
  CoAug's pairs (Eq. 11-12) are formed within each rank's batch, as in one process. DDP
  averages the ranks' gradients: one step on the mean of W batches' losses.
* BatchNorm: per rank, on the rank's own batch (no SyncBatchNorm): a rank's batch is a whole
  group, so its statistics are those of single-process training. DDP broadcasts rank 0's
  running statistics before every training forward; evaluation and checkpoints use rank 0's
  (`sync_buffers`).
* W_E: built on every rank from the same weights, frozen, not wrapped (nothing to average).
* RNG: every rank seeds with `config.seed` and draws the same stream (augmentation has its
  own per-item generators), so rank 0's RNG state in the checkpoint serves every rank.
* files: rank 0 alone generates the data, pretrains, holds the run lock for the whole run and
  writes the run folder; the other ranks wait for its decisions (finished, resume from epoch
  e, fresh) on a gloo group with a long timeout. A kill of any rank stops the job (torchrun);
  the same command (or torchrun's --max-restarts) resumes every rank from the checkpoint.
* evaluation: each rank collects the maps of its shard of the images, gathered on every rank
  in dataset order (`gather_eval`: each test image counts once); rank 0 scores and writes.

With world_size 1 (plain `python -m`, or torchrun with one process) none of this runs: the
run is exactly the single-process one.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from csoa_nb.core.localize import REPORTED_THETAS
from csoa_nb.core.models import CSoANet, CSoAOutput, EmbeddingNet, is_weights_name, weights_file
from csoa_nb.core.monitors import diagnose_collapse
from csoa_nb.core.scores import Scores
from csoa_nb.data import check_num_classes, collate_wsol
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
from csoa_nb.engine.distributed import (
    Amp,
    DistEnv,
    DistributedClassBalancedBatchSampler,
    all_reduce_sum,
    any_rank,
    broadcast_from_main,
    control_group,
    gather_eval,
    init_distributed,
    make_amp,
    read_env,
    shard_indices,
    sync_buffers,
    wait_for_main,
)
from csoa_nb.engine.evaluate import collect_maps, sample_cams, score_maps, ten_crop_probs
from csoa_nb.engine.loop import (
    NonFiniteLossError,
    rng_state,
    run_epoch,
    seed_everything,
    set_rng_state,
)
from csoa_nb.engine.protocol import write_protocol
from csoa_nb.engine.runs import (
    MODEL_FILE,
    RunResult,
    RunStoreError,
    append_jsonl,
    command_line,
    find_run,
    load_checkpoint,
    load_run,
    read_run_config,
    remove_stale_tmp,
    run_dir_for,
    run_lock,
    save_arrays,
    save_torch,
    truncate_jsonl,
    write_json,
)
from csoa_nb.methods.coaug import ClassBalancedBatchSampler
from csoa_nb.methods.confseg import alpha as alpha_schedule


class RunInterrupted(RuntimeError):
    """`train(..., stop_after_epoch=k)` stopped after epoch k's checkpoint, as a kill would."""


# ----------------------------------------------------------------------------- building blocks
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
            "alexnet" if config.embedding == "alexnet" else "slim embedding")
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


def resolve_weights(
    config: RunConfig, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> tuple[str | None, str | None]:
    """Backbone and W_E weights: a path/name, our pretraining stage's file, or None (random).

    `embedding_weights=""` follows the backbone (the pretraining stage's W_E when
    `pretrained="pretrain"`); `embedding_weights="pretrain"` takes the pretraining stage's W_E
    for a backbone trained from scratch too (the paper's W_E is always pretrained).
    """
    embedding = config.embedding_weights if config.uses_coaug else ""
    stage = None
    if "pretrain" in (config.pretrained, embedding):
        from csoa_nb.engine.pretrain import pretrain

        stage = str(pretrain(config, progress=progress, log=log))
    backbone = stage if config.pretrained == "pretrain" else (config.pretrained or None)
    if embedding == "pretrain" or (not embedding and config.pretrained == "pretrain"):
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


# ----------------------------------------------------------------------------------- training
def train(
    config: RunConfig,
    *,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train `config` (or load it if already finished) and return its `RunResult`.

    Everything that can be checked is checked before any work (output folder, device, weights
    files, every data split, classes, batch size), and pretraining (cached) runs before the run
    folder exists, so bad settings leave no run folder. The run folder is locked
    (`csoa_nb.engine.runs.run_lock`): a twin command waits, then loads the finished run.
    `stop_after_epoch` ends the call after that epoch's checkpoint, as a kill would (the next
    call resumes). `log` receives one line per epoch (default: print).
    """
    say = log or print
    env_now = read_env()
    if config.world_size != env_now.world_size:
        raise ValueError(
            f"config world_size={config.world_size} but this job has {env_now.world_size} "
            "process(es) (torchrun's WORLD_SIZE): launch as many with torchrun's "
            "--nproc_per_node/--nnodes, or pass --set world_size="
            f"{env_now.world_size} (the CLI sets it from torchrun by itself)"
        )
    config.check_output_dir()  # before find_run reads it
    env = DistEnv()
    if config.world_size > 1:  # join the job; a single process checks its device below
        env = init_distributed(check_device(config).type)
        if not env.is_main:
            say, progress = _silent, False
    main = env.is_main
    ctl = control_group(env)
    finished = broadcast_from_main(env, find_run(config) if main else None, ctl)
    if finished is not None:
        return load_run(finished)
    check_weight_files(config)
    started = time.perf_counter()
    device = env.device if env.distributed else check_device(config)
    with _main_first(env, ctl):  # rank 0 generates the synthetic data, the others then read it
        train_set, test_set = read_splits(config)
    check_num_classes(train_set.num_classes, config.num_classes, f"{config.dataset} dataset")
    sampler = build_sampler(config, train_set, env)
    run_dir = run_dir_for(config)
    if main:
        _make_folder(run_dir.parent, run_dir)  # output_dir: checked before pretraining
        if run_dir.exists() and not run_dir.is_dir():
            _make_folder(run_dir, run_dir)
    with _main_first(env, ctl):  # rank 0 pretrains; the others then find its cached stage
        weights = resolve_weights(config, progress=progress, log=say)
    if main:
        _make_folder(run_dir, run_dir)
    # rank 0 holds the lock for the whole run; the others wait for its decision (on `ctl`,
    # however long a twin command holds the lock)
    with run_lock(run_dir, say) if main else nullcontext():
        finished = find_run(config) if main else None
        if finished is None and main:
            for stale in remove_stale_tmp(run_dir):
                say(f"[{config.hash}] removed {stale.name}, left by a killed process")
        finished = broadcast_from_main(env, finished, ctl)
        if finished is not None:  # a twin command finished it while this one waited
            return load_run(finished)
        state = setup_run(config, device, (train_set, test_set), sampler, weights, run_dir,
                          started, env=env if env.distributed else None, control=ctl)
        return run_training(state, progress=progress, stop_after_epoch=stop_after_epoch, say=say)


def _silent(_: str) -> None:
    """The log of a rank other than 0."""


@contextmanager
def _main_first(env: DistEnv, group: Any) -> Iterator[None]:
    """Run the block on rank 0, then on the other ranks (a no-op in one process)."""
    if not env.distributed:
        yield
        return
    if not env.is_main:
        wait_for_main(env, group)
    yield
    if env.is_main:
        wait_for_main(env, group)


def _make_folder(folder: Path, run_dir: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the run folder {run_dir} ({error}); pass a writable output_dir"
        ) from error


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


def setup_run(
    config: RunConfig,
    device: torch.device,
    datasets: tuple[Dataset, Dataset],
    sampler: ClassBalancedBatchSampler,
    weights: tuple[str | None, str | None],
    run_dir: Path,
    started: float,
    *,
    env: DistEnv | None = None,
    control: Any = None,
) -> RunState:
    """Seed the run, build its networks, optimizer and loaders (nothing is read from disk but
    the weights). Every rank seeds alike: the same initial weights and RNG stream."""
    train_set, test_set = datasets
    # The run's own random stream starts here, after the data and the (cached or not)
    # pretraining, so neither can shift it; augmentation draws from per-item generators.
    seed_everything(config.seed)
    model = build_model(config, weights[0]).to(device, memory_format=config.memory_format)
    embed_net = build_embedding(config, weights[1]).to(device) if config.uses_coaug else None
    optimizer, scheduler = build_optimizer(config, model)
    loader = DataLoader(
        SeededItems(train_set, config.seed, cache=config.dataset == "synthetic"),
        batch_sampler=EpochBatches(sampler),
        collate_fn=collate_wsol,
        num_workers=config.num_workers,
        worker_init_fn=worker_init,
    )
    test_reader = test_set
    if config.dataset == "synthetic":
        test_set = SeededItems(test_set, config.seed, cache=True)
    val_count = min(config.val_images, len(test_set))
    val_set = Subset(test_set, range(val_count)) if val_count else None
    return RunState(
        config=config, device=device, run_dir=run_dir, model=model, embed_net=embed_net,
        optimizer=optimizer, scheduler=scheduler, sampler=sampler, loader=loader,
        test_reader=test_reader, test_set=test_set, val_set=val_set, started=started,
        env=env or DistEnv(device=device), control=control,
        amp=make_amp(device.type, config.amp, config.amp_dtype),
    )


def resume_run(state: RunState, say: Callable[[str], None]) -> None:
    """Continue from the run folder's checkpoint (model, optimizer, scheduler, RNG, history up
    to its epoch), or start the run's files afresh (`config.json`, an empty history)."""
    config = state.config
    # rank 0 decides (it holds the lock); every rank then loads the same checkpoint
    resume = broadcast_from_main(
        state.env, state.checkpoint_path.exists() if state.main else None, state.control
    )
    if resume:
        saved = load_checkpoint(state.checkpoint_path, config)
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.amp.load_state_dict(saved.get("amp", {}))
        set_rng_state(saved["rng"])
        state.start_epoch = int(saved["epoch"])
        state.elapsed_before = float(saved.get("elapsed_s", 0.0))
        if state.main:
            truncate_jsonl(state.metrics_path, state.start_epoch)
        say(f"[{config.hash}] resuming after epoch {state.start_epoch} from "
            f"{state.checkpoint_path}")
    elif state.main:
        state.metrics_path.unlink(missing_ok=True)
        write_json(state.run_dir / "config.json", config.to_record())
    state.net = _wrap(state)


def _wrap(state: RunState) -> nn.Module:
    """`state.model` for training: DDP-wrapped under torchrun (after the checkpoint is loaded;
    DDP then broadcasts rank 0's parameters and buffers). Every parameter of the network gets
    a gradient at every step, so `find_unused_parameters` stays off (DDP says so loudly if a
    method ever leaves one out). W_E is not wrapped: frozen, no parameter to average."""
    if not state.env.distributed:
        return state.model
    cuda = state.device.type == "cuda"
    return DistributedDataParallel(
        state.model, device_ids=[state.device.index] if cuda else None,
        find_unused_parameters=False, broadcast_buffers=True,
    )


def on_shards(
    state: RunState, size: int, collect: Callable[[Sequence[int] | None], dict[str, Any]]
) -> dict[str, Any]:
    """`collect(None)` in one process; under torchrun each rank calls `collect` on its shard of
    `size` images (`shard_indices`) with rank 0's BatchNorm statistics, and the shards are
    gathered on every rank in dataset order, each image once (`gather_eval`)."""
    env = state.env
    if not env.distributed:
        return collect(None)
    sync_buffers(state.model, env)
    shard = shard_indices(size, env.world_size, env.rank)
    return gather_eval(collect(shard), env, indices=shard, total=size)


def collect_sharded(
    state: RunState, dataset: Dataset, autocast: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """`collect_maps` of `dataset`, by shards under torchrun (`on_shards`)."""
    return on_shards(state, len(dataset), lambda shard: collect_maps(
        state.model, dataset if shard is None else Subset(dataset, shard), state.config,
        device=state.device, autocast=autocast))


def train_epoch(state: RunState, epoch: int, *, progress: bool) -> dict[str, Any]:
    """Epoch `epoch` (0-based): the method's steps (`csoa_nb.engine.loop.run_epoch`), the lr
    decay, and validation. Returns the epoch's record for `metrics.jsonl`."""
    config, device, model = state.config, state.device, state.model
    net, env = state.net or model, state.env
    epoch_started = time.perf_counter()
    state.sampler.set_epoch(epoch)
    model.train()
    steps = len(state.sampler)  # per rank, the same on every rank

    def alpha_at(index: int) -> float:
        return alpha_schedule(epoch + index / steps, config.epochs, config.alpha_ramp)

    def step(index: int, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int, int]:
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        # the global batch index (rank r takes batches r, r + W, ...): a rank draws what one
        # process draws for the same batch
        images, targets = augment_batch(config, images, labels, epoch,
                                        index * env.world_size + env.rank)
        images = images.contiguous(memory_format=config.memory_format)
        with state.amp.autocast():
            out = net(images, labels)
            terms = method_losses(config, out, images, targets, alpha_at(index), state.embed_net)
        if env.distributed:  # every rank stops at the same step (else the others would hang)
            finite = all(bool(torch.isfinite(v).all()) for v in terms.values())
            if any_rank(not finite, env) and finite:
                raise NonFiniteLossError(
                    f"epoch {epoch + 1}, batch {index + 1}: a loss term is not finite on "
                    "another rank (its log names it); training stopped, the last good "
                    "checkpoint is kept. Lower lr or check the data."
                )
        return terms, int((out.logits_last.argmax(1) == labels).sum()), len(labels)

    def nonfinite(index: int, name: str, value: torch.Tensor) -> Exception:
        kept = state.checkpoint_path if state.checkpoint_path.exists() else "none yet"
        return NonFiniteLossError(
            f"epoch {epoch + 1}, batch {index + 1}: loss term {name!r} is {value.item()}; "
            f"training stopped, the last good checkpoint ({kept}) is kept. Lower lr or check "
            "the data."
        )

    totals = run_epoch(
        state.loader, step, state.optimizer, nonfinite=nonfinite, total=steps,
        desc=f"{config.method} epoch {epoch + 1}/{config.epochs}", progress=progress,
        postfix=lambda index, terms: {"loss": f"{terms['total'].item():.3f}",
                                      "alpha": f"{alpha_at(index):.2f}"},
        backward_step=state.amp.backward_step,
    )
    lr_now = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    sums, correct, seen = totals.sums, totals.correct, totals.seen
    if env.distributed:  # the log covers every rank's images: steps x world_size batches
        names = sorted(sums)
        *summed, correct, seen = all_reduce_sum([*(sums[k] for k in names), correct, seen], env)
        sums = {k: v / env.world_size for k, v in zip(names, summed, strict=True)}
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": lr_now,
        "alpha": alpha_schedule(epoch + 1, config.epochs, config.alpha_ramp),
        "train_acc": 100.0 * correct / max(seen, 1),
        **{f"loss_{k}": v / steps for k, v in sums.items()},
    }
    if state.val_set is not None:
        # a monitor, in the training precision; the final evaluation runs in float32
        val_maps = collect_sharded(state, state.val_set, autocast=state.amp.autocast)
        val = score_maps(val_maps, config, thetas=(config.theta,), full=False)
        record.update({f"val_{k}": v for k, v in val.to_record().items()})
    record["epoch_time_s"] = time.perf_counter() - epoch_started
    return record


def save_checkpoint(state: RunState, epochs_done: int) -> None:
    """Everything a resumed run needs after `epochs_done` epochs (atomic; rank 0 alone calls
    it: the other ranks hold the same weights and optimizer state)."""
    save_torch(
        state.checkpoint_path,
        {
            "config_hash": state.config.hash,
            "epoch": epochs_done,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "rng": rng_state(),  # rank 0's, the same stream on every rank (module docstring)
            "amp": state.amp.state_dict(),  # the GradScaler's scale ({} without one)
            "elapsed_s": state.elapsed_before + time.perf_counter() - state.started,
        },
    )


def finalize_run(state: RunState, say: Callable[[str], None]) -> RunResult:
    """The final evaluation on the whole test split (every reported theta), the saved maps and
    CAM sample, and `results.json`, written last: the run is finished once it exists. Under
    torchrun every rank collects its shard; rank 0 scores and writes while the others wait, then
    read the finished run."""
    config, device, model, run_dir = state.config, state.device, state.model, state.run_dir
    env = state.env
    maps = collect_sharded(state, state.test_set)
    if config.ten_crop:  # class scores averaged over 10 crops (Sec. 4.1)
        reader = state.test_reader
        maps["probs"] = on_shards(state, len(reader), lambda shard: {"probs": ten_crop_probs(
            model, reader, config, device=device, indices=shard)})["probs"]
    if not state.main:
        wait_for_main(env, state.control)  # rank 0 writes results.json
        return load_run(run_dir, cached=False)
    thetas = (config.theta, *(t for t in REPORTED_THETAS if t != config.theta))
    scores = score_maps(maps, config, thetas=thetas, full=True)
    save_arrays(run_dir, "test", {k: v for k, v in maps.items() if k != "masks"})
    save_arrays(run_dir, "sample", sample_cams(model, state.test_set, device=device))
    save_torch(run_dir / MODEL_FILE, model.state_dict())
    if has_val_split(config):  # Choe et al.'s protocol (csoa_nb.engine.protocol)
        val_maps = collect_maps(model, build_val_set(config), config, device=device)
        write_protocol(run_dir, config, val_maps, maps)
    wall = state.elapsed_before + time.perf_counter() - state.started
    write_json(
        run_dir / "results.json",
        {
            "config_hash": config.hash,
            "data": config.data_identity(),
            "metrics": scores.to_record(),
            "wall_time_s": wall,
            "command": command_line(),
            "torch": torch.__version__,
            # float sums split over threads round differently: bit-identical re-runs need the
            # same torch build and thread count (make results: one thread per run)
            "torch_threads": torch.get_num_threads(),
            "world_size": env.world_size,
        },
    )
    say(f"[{config.hash}] done in {wall:.0f} s: {_summary(scores)}")
    wait_for_main(env, state.control)
    result = load_run(run_dir, cached=False)
    result.wall_time_s = wall
    return result


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


def run_training(
    state: RunState,
    *,
    progress: bool,
    stop_after_epoch: int | None,
    say: Callable[[str], None],
) -> RunResult:
    """The body of `train` after `setup_run`, holding the run folder's lock: resume, the epochs
    (each logged and checkpointed), finalize."""
    config = state.config
    resume_run(state, say)
    for epoch in range(state.start_epoch, config.epochs):
        record = train_epoch(state, epoch, progress=progress)
        if state.main:
            append_jsonl(state.metrics_path, record)
            save_checkpoint(state, epoch + 1)
        say(_epoch_line(config, record))
        for line in collapse_lines(config, record):
            say(line)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch < config.epochs:
            raise RunInterrupted(f"stopped after epoch {epoch + 1}; call train() again to resume")
    return finalize_run(state, say)


#: Longest line the trainer logs: a notebook's text column holds about 90 characters.
LOG_WIDTH = 88


def _epoch_line(config: RunConfig, record: dict[str, Any]) -> str:
    """One epoch of the log: training on the first line, validation on the second (each at
    most `LOG_WIDTH` characters)."""
    parts = [f"loss {record.get('loss_total', math.nan):.4f}"]
    if config.uses_inner_loss or config.uses_coaug:  # alpha weighs Eq. 5 and Eq. 12 only
        parts.append(f"alpha {record['alpha']:.2f}")
    parts.append(f"lr {record['lr']:.1e}")
    parts.append(f"acc {record['train_acc']:.1f}%")
    parts.append(f"{record['epoch_time_s']:.1f} s")
    line = (f"[{config.hash}] {config.method} epoch {record['epoch']}/{config.epochs}: "
            + ", ".join(parts))
    if "val_top1_loc_err" in record:
        line += (
            f"\n{' ' * 15}val: top-1 loc err {record['val_top1_loc_err']:.1f}% | "
            f"GT-known {record['val_gt_known_loc_err']:.1f}% | "
            f"cls err {record['val_top1_cls_err']:.1f}%"
        )
    return line


def _summary(scores: Scores) -> str:
    parts = [("top-1 loc", scores.top1_loc_err), ("GT-known", scores.gt_known_loc_err),
             ("cls", scores.top1_cls_err), ("MaxBoxAccV2", scores.max_box_acc_v2)]
    return ", ".join(f"{name} {value:.2f}" for name, value in parts if value is not None)


def collapse_lines(config: RunConfig, record: dict[str, Any]) -> list[str]:
    """Warning lines for the epoch log when the validation maps of a CoAug method show a
    collapse (`csoa_nb.core.monitors`): Eq. 12's degenerate minima (chapter 04). Log lines, not
    Python warnings, so that a notebook shows no source path of the machine that ran it."""
    if not config.uses_coaug:
        return []
    stats = {k[len("val_"):]: v for k, v in record.items() if k.startswith("val_")}
    return [
        textwrap.fill(f"[{config.hash}] WARNING {config.method} epoch {record['epoch']}: "
                      f"{finding}", LOG_WIDTH, subsequent_indent=" " * 15)
        for finding in diagnose_collapse(stats)
    ]


# ---------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.train", description=__doc__)
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
    """The preset with --method, --seed and every --set applied (a --set wins); the preset's
    variant for a --set dataset (the paper's ILSVRC) comes first."""
    overrides: dict[str, Any] = {}
    if args.method is not None:
        overrides["method"] = args.method
    if args.seed is not None:
        overrides["seed"] = args.seed
    # under torchrun, the job's process count (a --set world_size=N is checked against it)
    overrides["world_size"] = read_env().world_size
    overrides.update(RunConfig.parse_assignments(args.assignments))
    return RunConfig.from_preset(args.preset, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        result = train(config, progress=not args.no_progress and sys.stderr.isatty())
    except ValueError as error:  # a setting or input refused (the message says what to do)
        raise SystemExit(f"error: {error}") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if read_env().rank == 0:
        print(f"run folder: {result.run_dir}{' (cached)' if result.cached else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
