"""Multi-process training pieces (torchrun / DDP), used by the trainer.

`csoa_nb.engine.train` wires them (its module docstring: batches, BatchNorm, W_E, RNG, files,
evaluation); every piece also works in a single process, where it reduces to the single-process
trainer exactly.

* :class:`DistEnv`, :func:`init_distributed`, :func:`is_main`, :func:`barrier`,
  :func:`cleanup`: the process group from torchrun's environment (``RANK``, ``LOCAL_RANK``,
  ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); without
  ``WORLD_SIZE`` (plain ``python -m csoa_nb.engine.train``) or with ``WORLD_SIZE=1`` no
  process group is created and every call is a no-op.
* :class:`DistributedClassBalancedBatchSampler`: Sec. 4.1's class-balanced batches split
  across ranks, each rank's batch one whole group of ``classes_per_batch`` x ``k`` images.
* :func:`shard_indices`, :func:`gather_eval`, :func:`on_shards`: sharded evaluation in which
  every test image counts once.
* :func:`control_group`, :func:`broadcast_from_main`, :func:`wait_for_main`,
  :func:`main_first`, :func:`sync_buffers`, :func:`all_reduce_sum`, :func:`any_rank`: the
  trainer's hand-offs; :func:`wrap_ddp`: the network it trains.

Why each rank's batch is a whole group of 48 (not 48 / world_size images): CoAug's pairs
(Eq. 11-12) are formed within a batch, and the paper's batch holds 12 classes x 4 images, so
every image has 3 same-class partners. A rank that sees one whole group computes Eq. 8-12
exactly as one process does; splitting one group over ranks would leave a rank with, e.g., 6
images of 6 classes (no same-class pair, so Eq. 12's same-class term vanishes) unless the
embeddings were all-gathered, and BatchNorm (Inception-v3, the slim VGG) would see 6 images.
DDP averages the W ranks' gradients, so one step with W ranks is one step on the mean of W
independent Eq. 12 losses: the global batch is W x 48, not the paper's protocol (lr is the
user's to keep or scale; README, "The paper preset on one GPU, several GPUs, several machines").
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from csoa_nb.core.scores import MapSet
from csoa_nb.data.sampler import ClassBalancedBatchSampler

__all__ = [
    "DistEnv",
    "DistributedClassBalancedBatchSampler",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "broadcast_from_main",
    "cleanup",
    "control_group",
    "gather_eval",
    "init_distributed",
    "is_main",
    "main_first",
    "on_shards",
    "read_env",
    "shard_indices",
    "sync_buffers",
    "wait_for_main",
    "wrap_ddp",
]

#: Environment variables torchrun sets for every worker.
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT")


# ------------------------------------------------------------------------------ process group
@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a torchrun job (a single process: rank 0 of 1).

    ``backend`` is None when no process group exists (single process). ``device`` is the
    device this rank computes on: ``cuda:LOCAL_RANK`` under torchrun on CUDA, else the CPU.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str = ""
    master_port: int = 0
    backend: str | None = None
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        """True when a process group of more than one process is initialised."""
        return self.backend is not None and self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer; launch with torchrun "
            "(it sets RANK, LOCAL_RANK, WORLD_SIZE) or unset it for a single process"
        ) from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value} must be >= 0; launch with torchrun")
    return value


def read_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """The torchrun variables of ``environ`` (default ``os.environ``), checked, no side effect.

    Without ``WORLD_SIZE`` the process is rank 0 of 1 whatever else is set.
    """
    env = os.environ if environ is None else environ
    if not env.get("WORLD_SIZE"):
        return DistEnv()
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    local_world_size = _env_int(env, "LOCAL_WORLD_SIZE", world_size)
    if world_size < 1 or rank >= world_size or local_rank >= local_world_size:
        raise ValueError(
            f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, "
            f"WORLD_SIZE={world_size}, LOCAL_WORLD_SIZE={local_world_size} (need RANK < "
            "WORLD_SIZE and LOCAL_RANK < LOCAL_WORLD_SIZE); launch with torchrun"
        )
    return DistEnv(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        local_world_size=local_world_size,
        master_addr=env.get("MASTER_ADDR", ""),
        master_port=_env_int(env, "MASTER_PORT", 0),
    )


def init_distributed(
    device_type: str = "cuda",
    *,
    timeout_s: float = 1800.0,
    environ: Mapping[str, str] | None = None,
) -> DistEnv:
    """Join torchrun's process group: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``),
    gloo on the CPU. A single process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) creates no
    group and gets ``DistEnv()`` with ``device`` = the device type's default device.

    ``timeout_s`` bounds every collective, barriers included (rank 0 may hold the others at a
    barrier; the trainer's long waits on rank 0 use :func:`control_group` instead).
    """
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device type {device_type!r}: use cpu or cuda")
    env = read_env(environ)
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device type cuda: this PyTorch sees no CUDA device; use --set device=cpu "
                "(gloo) or install a CUDA build of PyTorch"
            )
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} CUDA "
                "device(s) on this node: lower torchrun's --nproc_per_node to the GPU count"
            )
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if env.world_size == 1:
        return dataclasses.replace(env, device=device)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = device  # binds the communicator to this rank's GPU
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, **kwargs)
    return dataclasses.replace(env, backend=backend, device=device)


def is_main(env: DistEnv) -> bool:
    """True on the rank that writes the run folder (rank 0)."""
    return env.rank == 0


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if not env.distributed:
        return
    if env.backend == "nccl":
        dist.barrier(device_ids=[env.local_rank])
    else:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    """Leave the process group (no-op in a single process or when already left)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def control_group(env: DistEnv, *, timeout_s: float = 7 * 24 * 3600.0) -> Any:
    """Long-timeout gloo group for hand-offs where ranks wait on rank 0 (data, pretraining, run
    lock, test scoring), so no collective timeout (NCCL's watchdog too) fires; every rank calls
    it, in the same order. None in a single process."""
    if not env.distributed:
        return None
    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))


def broadcast_from_main(env: DistEnv, value: Any, group: Any = None) -> Any:
    """Rank 0's `value` on every rank (a picklable object; `value` itself in one process)."""
    if not env.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def wait_for_main(env: DistEnv, group: Any = None) -> None:
    """A barrier on `group` (default: the whole job): the ranks wait until rank 0 arrives."""
    if env.distributed:
        dist.barrier(group=group)


@contextmanager
def main_first(env: DistEnv, group: Any = None) -> Iterator[None]:
    """Run the block on rank 0, then on the other ranks (a no-op in one process): rank 0 makes
    what the others then read (the generated data, the pretraining stage)."""
    if not env.distributed:
        yield
        return
    if not env.is_main:
        wait_for_main(env, group)
    yield
    if env.is_main:
        wait_for_main(env, group)


def wrap_ddp(model: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """`model` for training: DDP-wrapped under torchrun (after a checkpoint is loaded; DDP then
    broadcasts rank 0's parameters and buffers), `model` itself in one process. Every parameter
    of the network gets a gradient at every step, so `find_unused_parameters` stays off (DDP
    says so loudly if a method ever leaves one out)."""
    if not env.distributed:
        return model
    cuda = device.type == "cuda"
    return DistributedDataParallel(
        model, device_ids=[device.index] if cuda else None,
        find_unused_parameters=False, broadcast_buffers=True,
    )


def sync_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank, in place. DDP
    broadcasts them at the start of each training forward only, so after the last step each
    rank holds the statistics its own batch updated; evaluation must use one model."""
    if env.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(values: Sequence[float], env: DistEnv) -> list[float]:
    """Element-wise sums of `values` over the ranks (float64; `values` itself in one process)."""
    if not env.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when `flag` is true on any rank (`flag` in one process)."""
    if not env.distributed:
        return flag
    tensor = torch.tensor([float(flag)], device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


# ----------------------------------------------------------------------------------- sampling
class _GlobalOrder(ClassBalancedBatchSampler):
    """The base sampler's algorithm drawing ``count`` batches instead of ``len(labels) //
    batch_size``: the same random stream, so its first batches are the base epoch's batches
    (``ClassBalancedBatchSampler.__iter__`` draws ``len(self)`` batches)."""

    def __init__(self, base: ClassBalancedBatchSampler, count: int) -> None:
        # share the base's read-only state (class pools, sizes, seed, epoch); Sampler.__init__
        # holds no state
        self.__dict__.update(base.__dict__)
        self.count = count

    def __len__(self) -> int:
        return self.count


class DistributedClassBalancedBatchSampler(ClassBalancedBatchSampler):
    """`ClassBalancedBatchSampler` split across ``num_replicas`` ranks, one whole group a step.

    The epoch's global order is the base sampler's (seeded by ``(seed, epoch)``), extended to
    ``num_replicas * len(self)`` batches with ``len(self) = ceil(base_len / num_replicas)`` and
    ``base_len = len(labels) // batch_size``: the base algorithm simply draws on (its pools
    hold the ``len(labels) % batch_size`` images the base epoch leaves out, then it tops up
    with images already used this epoch, as the base does when pools run low). Rank r takes
    global batches ``r, r + W, r + 2W, ...``, so

    * each rank's batch is one whole group (``classes_per_batch`` classes x ``k`` images), and
      step s of the W ranks together covers global batches ``sW .. sW + W - 1``;
    * every batch of the single-process epoch is trained on exactly once across the ranks (at
      most ``W - 1`` extra batches pad the epoch so every rank takes the same number of steps:
      DDP needs every rank in every all-reduce);
    * with ``num_replicas == 1`` the batches are exactly the base sampler's, so single-process
      runs (and their committed, bit-identical results) are unchanged.

    Call :meth:`set_epoch` on every rank at every epoch, as with the base sampler.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int = 48,
        classes_per_batch: int = 12,
        seed: int = 0,
        *,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be an integer >= 1, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}")
        super().__init__(labels, batch_size, classes_per_batch, seed)
        self.num_replicas = num_replicas
        self.rank = rank

    @classmethod
    def for_env(
        cls, labels: Sequence[int], batch_size: int, classes_per_batch: int, seed: int,
        env: DistEnv,
    ) -> DistributedClassBalancedBatchSampler:
        """The sampler of this rank of ``env``."""
        return cls(labels, batch_size, classes_per_batch, seed,
                   num_replicas=env.world_size, rank=env.rank)

    @property
    def base_len(self) -> int:
        """Batches of the single-process epoch (``len(labels) // batch_size``)."""
        return self._num_samples // self.batch_size

    def __len__(self) -> int:
        """Steps per epoch on every rank: ``ceil(base_len / num_replicas)``."""
        return math.ceil(self.base_len / self.num_replicas)

    def global_batches(self) -> Iterator[list[int]]:
        """Every rank's batches this epoch; step s, rank r is batch ``s * num_replicas + r``."""
        return iter(_GlobalOrder(self, len(self) * self.num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        for position, batch in enumerate(self.global_batches()):
            if position % self.num_replicas == self.rank:
                yield batch


# --------------------------------------------------------------------------------- evaluation
def shard_indices(total: int, world_size: int, rank: int) -> list[int]:
    """Rank ``rank``'s share of ``range(total)``, as ``DistributedSampler(shuffle=False)``
    cuts it: the list is padded by wrapping to a multiple of ``world_size`` (so every rank
    runs the same number of batches) and rank r takes every ``world_size``-th item from r.
    The padding repeats up to ``world_size - 1`` images; :func:`gather_eval` drops them."""
    if total < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"shard_indices needs total >= 0, world_size >= 1 and 0 <= rank < world_size; got "
            f"total={total}, world_size={world_size}, rank={rank}"
        )
    if total == 0:
        return []
    padded = math.ceil(total / world_size) * world_size
    order = [i % total for i in range(padded)]
    return order[rank::world_size]


def _is_per_image(value: Any) -> bool:
    """Per-image entries: tensors with a batch dimension, or lists/tuples of tensors (boxes).
    Anything else (None, ``image_size``, a scalar) is the same on every rank."""
    if isinstance(value, Tensor):
        return value.dim() >= 1
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, Tensor) for v in value
    )


def gather_eval(
    maps: MapSet,
    env: DistEnv,
    *,
    indices: Sequence[int] | Tensor | None = None,
    total: int | None = None,
) -> MapSet:
    """Reassemble sharded evaluation outputs (e.g. `csoa_nb.engine.evaluate.collect_maps` of a
    shard) into the single-process result, on every rank.

    ``indices`` are the dataset indices of this rank's rows (default ``maps["index"]``),
    e.g. :func:`shard_indices`. Per-image entries (tensors with a first dimension, lists of
    tensors such as ``boxes``) are gathered from all ranks with ``all_gather_object`` (CPU
    copies: the maps of a test set fit in host memory, and it works on gloo and NCCL alike),
    ordered by dataset index, and the padding duplicates dropped (the first copy is kept; the
    copies are the same image's outputs). Other entries (``None``, ``image_size``) must be
    equal on every rank and are returned as they are. With ``total``, the gathered indices
    must be exactly ``0 .. total - 1`` (a ValueError names what is missing).

    Memory: every rank receives every rank's maps (host memory). ILSVRC's 50,000 x 1,000 class
    scores are 200 MB per key; if that is too much, gather to rank 0 only (`gather_object`).
    """
    if indices is None:
        if "index" not in maps:
            raise ValueError("gather_eval needs the rows' dataset indices: pass indices= or "
                             "put them in maps['index']")
        indices = maps["index"]
    local_index = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
    per_image = {k: v for k, v in maps.items() if _is_per_image(v)}
    for key, value in per_image.items():
        if len(value) != len(local_index):
            raise ValueError(
                f"maps[{key!r}] has {len(value)} rows but {len(local_index)} indices were given: "
                "pass the indices of exactly this rank's rows"
            )
    shared = {k: v for k, v in maps.items() if k not in per_image}
    payload = {
        "index": local_index,
        "maps": {
            k: (v.detach().cpu() if isinstance(v, Tensor) else [t.detach().cpu() for t in v])
            for k, v in per_image.items()
        },
        "shared_keys": sorted(shared),
    }
    if env.distributed:
        parts: list[Any] = [None] * env.world_size
        dist.all_gather_object(parts, payload)
    else:
        parts = [payload]
    if any(p["shared_keys"] != payload["shared_keys"] for p in parts):
        raise ValueError("gather_eval: the ranks' maps have different keys; collect the same "
                         "maps on every rank")
    all_index = [i for p in parts for i in p["index"]]
    first: dict[int, int] = {}
    for position, index in enumerate(all_index):
        first.setdefault(index, position)
    order = [first[i] for i in sorted(first)]
    if total is not None and sorted(first) != list(range(total)):
        missing = sorted(set(range(total)) - set(first))[:10]
        raise ValueError(
            f"gather_eval: the ranks' indices do not cover 0..{total - 1} exactly (missing "
            f"{missing}, {len(first)} distinct); shard with shard_indices(total, ...)"
        )
    out: dict[str, Any] = dict(shared)
    for key, value in per_image.items():
        pieces = [p["maps"][key] for p in parts]
        if isinstance(value, Tensor):
            full = torch.cat(pieces)
            out[key] = full[torch.tensor(order, dtype=torch.long)]
        else:
            flat = [t for piece in pieces for t in piece]
            out[key] = [flat[i] for i in order]
    return out


def on_shards(
    model: torch.nn.Module, env: DistEnv, size: int,
    collect: Callable[[Sequence[int] | None], dict[str, Any]],
) -> dict[str, Any]:
    """`collect(None)` in one process; under torchrun each rank calls `collect` on its shard of
    `size` images (`shard_indices`) with rank 0's BatchNorm statistics (`sync_buffers` of
    `model`), and the shards are gathered on every rank in dataset order, each image once
    (`gather_eval`)."""
    if not env.distributed:
        return collect(None)
    sync_buffers(model, env)
    shard = shard_indices(size, env.world_size, env.rank)
    return gather_eval(collect(shard), env, indices=shard, total=size)
