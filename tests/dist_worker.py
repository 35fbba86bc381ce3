"""Worker of tests/test_distributed.py, launched by `torchrun --nproc_per_node=2` (gloo, CPU).

Each rank joins the group with `init_distributed("cpu")` from torchrun's environment, draws
its sampler batches, shards a known set of evaluation maps with `shard_indices`, gathers them
with `gather_eval` and saves what it saw to `OUT/rank<R>.pt` for the test to check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from csoa_nb.engine.distributed import (
    DistributedClassBalancedBatchSampler,
    barrier,
    cleanup,
    gather_eval,
    init_distributed,
    shard_indices,
)

#: The labels, sampler and maps the test rebuilds in-process (keep in sync with the test).
LABELS = [i % 7 for i in range(61)]  # 7 classes, 61 images: base epoch = 61 // 8 = 7 batches
SAMPLER = dict(batch_size=8, classes_per_batch=4, seed=5)
EPOCHS = (0, 3)
TOTAL = 7  # test images: 2 ranks -> shards of 4, one padding duplicate


def full_maps() -> dict[str, object]:
    """Evaluation maps of TOTAL images, each row a function of its index."""
    index = torch.arange(TOTAL)
    return {
        "cam_last": (torch.arange(TOTAL * 6, dtype=torch.float16).view(TOTAL, 2, 3)),
        "cam_feature": None,
        "probs": torch.rand(TOTAL, 5, generator=torch.Generator().manual_seed(0)),
        "labels": index * 10,
        "boxes": [torch.tensor([[float(i), 0.0, i + 1.0, 2.0]] * (1 + i % 2))
                  for i in range(TOTAL)],
        "image_size": [224, 224],
    }


def main(out: Path) -> None:
    env = init_distributed("cpu")
    sampler = DistributedClassBalancedBatchSampler.for_env(LABELS, env=env, **SAMPLER)
    batches = {}
    for epoch in EPOCHS:
        sampler.set_epoch(epoch)
        batches[epoch] = list(sampler)
    shard = shard_indices(TOTAL, env.world_size, env.rank)
    full = full_maps()
    mine = {
        k: (v[torch.tensor(shard)] if isinstance(v, torch.Tensor)
            else [v[i] for i in shard] if k == "boxes" else v)
        for k, v in full.items()
    }
    gathered = gather_eval(mine, env, indices=shard, total=TOTAL)
    barrier(env)
    torch.save(
        {
            "env": {"rank": env.rank, "world_size": env.world_size, "backend": env.backend,
                    "local_rank": env.local_rank, "distributed": env.distributed},
            "batches": batches,
            "shard": shard,
            "gathered": gathered,
        },
        out / f"rank{env.rank}.pt",
    )
    cleanup(env)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
