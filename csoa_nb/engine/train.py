"""The trainer shared by every chapter and the command line.

`train(config)` builds the data, the two-CAM network and (for CoAug) the embedding network W_E
(`csoa_nb.engine.builders`), optimises the loss of `config.method`, checkpoints every epoch,
evaluates on the test split and writes the run folder described in `csoa_nb.engine.runs`. Its
steps are `setup_run`, `resume_run`, `train_epoch`, `save_checkpoint` and `finalize_run`, around
the shared loop of `csoa_nb.engine.loop`; each has its torchrun side (rank 0 decides and writes,
the others wait; sharded evaluation). A finished run with the same config hash is loaded, not
retrained; an interrupted one resumes from its last checkpoint.

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

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from csoa_nb.base.files import remove_stale_tmp
from csoa_nb.base.precision import make_amp
from csoa_nb.core.localize import REPORTED_THETAS
from csoa_nb.data import check_num_classes
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.engine.builders import (
    RunState,
    augment_batch,
    build_embedding,
    build_loader,
    build_model,
    build_optimizer,
    build_sampler,
    check_device,
    check_weight_files,
    eval_sets,
    method_losses,
    read_splits,
    resolve_weights,
)
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_val_set, has_val_split
from csoa_nb.engine.distributed import (
    DistEnv,
    all_reduce_sum,
    any_rank,
    broadcast_from_main,
    control_group,
    init_distributed,
    main_first,
    on_shards,
    read_env,
    wait_for_main,
    wrap_ddp,
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
    append_jsonl,
    command_line,
    find_run,
    load_checkpoint,
    load_run,
    run_dir_for,
    run_lock,
    save_arrays,
    save_torch,
    truncate_jsonl,
    write_json,
)
from csoa_nb.engine.train_cli import config_from_args, parse_args
from csoa_nb.engine.train_log import collapse_lines, epoch_line, run_summary
from csoa_nb.methods.confseg import alpha as alpha_schedule


class RunInterrupted(RuntimeError):
    """`train(..., stop_after_epoch=k)` stopped after epoch k's checkpoint, as a kill would."""


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
    with main_first(env, ctl):  # rank 0 generates the synthetic data, the others then read it
        train_set, test_set = read_splits(config)
    check_num_classes(train_set.num_classes, config.num_classes, f"{config.dataset} dataset")
    sampler = build_sampler(config, train_set, env)
    run_dir = run_dir_for(config)
    if main:
        _make_folder(run_dir.parent, run_dir)  # output_dir: checked before pretraining
        if run_dir.exists() and not run_dir.is_dir():
            _make_folder(run_dir, run_dir)
    with main_first(env, ctl):  # rank 0 pretrains; the others then find its cached stage
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


def _make_folder(folder: Path, run_dir: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the run folder {run_dir} ({error}); pass a writable output_dir"
        ) from error


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
    loader = build_loader(config, train_set, sampler)
    eval_set, val_set = eval_sets(config, test_set)
    return RunState(
        config=config, device=device, run_dir=run_dir, model=model, embed_net=embed_net,
        optimizer=optimizer, scheduler=scheduler, sampler=sampler, loader=loader,
        test_reader=test_set, test_set=eval_set, val_set=val_set, started=started,
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
    # W_E is not wrapped: frozen, no parameter to average
    state.net = wrap_ddp(state.model, state.env, state.device)


def collect_sharded(
    state: RunState, dataset: Dataset, autocast: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """`collect_maps` of `dataset`, by shards under torchrun (`on_shards`)."""
    return on_shards(state.model, state.env, len(dataset), lambda shard: collect_maps(
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
        maps["probs"] = on_shards(model, env, len(reader), lambda shard: {"probs": ten_crop_probs(
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
    say(f"[{config.hash}] done in {wall:.0f} s: {run_summary(scores)}")
    wait_for_main(env, state.control)
    result = load_run(run_dir, cached=False)
    result.wall_time_s = wall
    return result


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
        say(epoch_line(config, record))
        for line in collapse_lines(config, record):
            say(line)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch < config.epochs:
            raise RunInterrupted(f"stopped after epoch {epoch + 1}; call train() again to resume")
    return finalize_run(state, say)


# ---------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """`python -m csoa_nb.engine.train`: train (or load) the run its arguments name."""
    args = parse_args(argv, __doc__)
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
