"""csoa_nb.engine.distributed: the class-balanced sampler split across ranks, sharded evaluation,
the torchrun environment, bf16 autocast with float32 losses, and bench/gpu_check.sh's dry run.

Two tests start real processes: `torchrun --nproc_per_node=2` over tests/dist_worker.py (gloo
on the CPU) and `bash bench/gpu_check.sh --dry-run`; the rest run in this process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from csoa_nb.base.precision import autocast_context, fp32_region, make_amp
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.engine.distributed import (
    DistEnv,
    DistributedClassBalancedBatchSampler,
    gather_eval,
    init_distributed,
    read_env,
    shard_indices,
)
from csoa_nb.methods.coaug import coaug_loss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dist_worker  # noqa: E402  (tests/dist_worker.py: the torchrun worker's fixtures)


def _env_without_torchrun() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                        "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def _epoch(sampler: ClassBalancedBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def _ranks(labels: list[int], world: int, **kw: int) -> list[DistributedClassBalancedBatchSampler]:
    return [DistributedClassBalancedBatchSampler(labels, **kw, num_replicas=world, rank=r)
            for r in range(world)]


LABEL_SETS = {
    # balanced: 20 classes x 25 images (500; base epoch = 10 batches of 48, 20 left out)
    "balanced": [c for c in range(20) for _ in range(25)],
    # unbalanced: 13 classes with 5..41 images, so pools run low and top-ups happen
    "unbalanced": [c for c in range(13) for _ in range(5 + 3 * c)],
}


# ------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("name", sorted(LABEL_SETS))
@pytest.mark.parametrize("seed", [0, 7])
def test_world_size_one_is_the_single_process_sampler(name: str, seed: int) -> None:
    labels = LABEL_SETS[name]
    base = ClassBalancedBatchSampler(labels, 48, 12, seed=seed)
    dist_sampler = DistributedClassBalancedBatchSampler(labels, 48, 12, seed=seed)
    assert len(dist_sampler) == len(base) == len(labels) // 48
    for epoch in (0, 1, 5):
        assert _epoch(dist_sampler, epoch) == _epoch(base, epoch)


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_ranks_partition_the_epoch_in_whole_groups(world: int, name: str) -> None:
    labels = LABEL_SETS[name]
    base = ClassBalancedBatchSampler(labels, 48, 12, seed=3)
    ranks = _ranks(labels, world, batch_size=48, classes_per_batch=12, seed=3)
    base_len = len(labels) // 48
    steps = -(-base_len // world)  # ceil
    for epoch in (0, 2):
        per_rank = [_epoch(s, epoch) for s in ranks]
        # the same number of steps on every rank, as len() promises
        assert [len(b) for b in per_rank] == [steps] * world
        assert all(len(s) == steps for s in ranks)
        # every batch a whole group: 12 distinct classes x 4 images, 48 distinct images
        for batches in per_rank:
            for batch in batches:
                counts = Counter(labels[i] for i in batch)
                assert len(batch) == 48 and len(counts) == 12
                assert set(counts.values()) == {4}
        # global step s, rank r is global batch s * world + r; the first base_len global
        # batches are exactly the single-process epoch: each of its batches once across ranks
        interleaved = [per_rank[g % world][g // world] for g in range(steps * world)]
        base_epoch = _epoch(base, epoch)
        assert interleaved[:base_len] == base_epoch
        assert len(interleaved) - base_len == (-base_len) % world  # padding: < world batches
        used = Counter(i for batch in interleaved for i in batch)
        assert used >= Counter(i for batch in base_epoch for i in batch)
    # another epoch, another order; the same (seed, epoch), the same batches
    assert _epoch(ranks[0], 0) != _epoch(ranks[0], 1)
    twin = _ranks(labels, world, batch_size=48, classes_per_batch=12, seed=3)[world - 1]
    assert _epoch(twin, 2) == _epoch(ranks[world - 1], 2)


def test_balanced_epoch_uses_every_image_once() -> None:
    """12 classes x 16 images, 4 batches of 48, 2 ranks: every image exactly once."""
    labels = [c for c in range(12) for _ in range(16)]
    per_rank = [_epoch(s, 1) for s in _ranks(labels, 2, batch_size=48, classes_per_batch=12)]
    assert [len(b) for b in per_rank] == [2, 2]
    used = sorted(i for batches in per_rank for batch in batches for i in batch)
    assert used == list(range(len(labels)))


def test_sampler_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\)"):
        DistributedClassBalancedBatchSampler([0, 1] * 8, 4, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be an integer >= 1"):
        DistributedClassBalancedBatchSampler([0, 1] * 8, 4, 2, num_replicas=0)


# ------------------------------------------------------------------------- environment, shards
def test_read_env() -> None:
    assert read_env({}) == DistEnv()
    env = read_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "node0", "MASTER_PORT": "29500"})
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)
    assert (env.master_addr, env.master_port, env.backend, env.is_main) == (
        "node0", 29500, None, False)
    with pytest.raises(ValueError, match="RANK=4.*WORLD_SIZE=4.*launch with torchrun"):
        read_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        read_env({"WORLD_SIZE": "two"})


def test_single_process_init_is_a_no_op() -> None:
    env = init_distributed("cpu", environ={})
    assert env == DistEnv() and not env.distributed
    env = init_distributed("cpu", environ={"WORLD_SIZE": "1", "RANK": "0"})
    assert not env.distributed and not torch.distributed.is_initialized()


def test_shard_indices_pad_like_distributed_sampler() -> None:
    assert shard_indices(7, 2, 0) == [0, 2, 4, 6]
    assert shard_indices(7, 2, 1) == [1, 3, 5, 0]  # padded by wrapping to image 0
    assert shard_indices(6, 3, 2) == [2, 5]
    assert shard_indices(2, 4, 3) == [1]
    assert shard_indices(0, 2, 1) == []


def test_gather_eval_single_process_orders_and_drops_duplicates() -> None:
    maps = {
        "cam_last": torch.tensor([[30.0], [10.0], [20.0], [0.0], [10.0]]),
        "boxes": [torch.full((1, 4), float(i)) for i in (3, 1, 2, 0, 1)],
        "cam_feature": None,
        "image_size": [64, 64],
    }
    out = gather_eval(maps, DistEnv(), indices=[3, 1, 2, 0, 1], total=4)
    assert out["cam_last"].flatten().tolist() == [0.0, 10.0, 20.0, 30.0]
    assert [float(b[0, 0]) for b in out["boxes"]] == [0.0, 1.0, 2.0, 3.0]
    assert out["cam_feature"] is None and out["image_size"] == [64, 64]
    with pytest.raises(ValueError, match=r"missing \[4\]"):
        gather_eval(maps, DistEnv(), indices=[3, 1, 2, 0, 1], total=5)
    with pytest.raises(ValueError, match="5 rows but 4 indices"):
        gather_eval(maps, DistEnv(), indices=[0, 1, 2, 3])


@pytest.fixture(scope="module")
def torchrun_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Run tests/dist_worker.py under `torchrun --nproc_per_node=2` and load what each rank
    saved."""
    out = tmp_path_factory.mktemp("torchrun")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "dist_worker.py"), str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env_without_torchrun(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_torchrun_ranks_get_their_share(torchrun_ranks: list[dict]) -> None:
    for rank, saved in enumerate(torchrun_ranks):
        assert saved["env"] == {"rank": rank, "world_size": 2, "backend": "gloo",
                                "local_rank": rank, "distributed": True}
        expected = DistributedClassBalancedBatchSampler(
            dist_worker.LABELS, **dist_worker.SAMPLER, num_replicas=2, rank=rank)
        for epoch in dist_worker.EPOCHS:
            assert saved["batches"][epoch] == _epoch(expected, epoch)
    base = ClassBalancedBatchSampler(dist_worker.LABELS, **dist_worker.SAMPLER)
    for epoch in dist_worker.EPOCHS:
        a, b = (saved["batches"][epoch] for saved in torchrun_ranks)
        assert len(a) == len(b) == 4  # ceil(7 / 2)
        assert [x for pair in zip(a, b, strict=True) for x in pair][:7] == _epoch(base, epoch)


def test_gather_eval_reassembles_the_shards(torchrun_ranks: list[dict]) -> None:
    full = dist_worker.full_maps()
    assert [saved["shard"] for saved in torchrun_ranks] == [[0, 2, 4, 6], [1, 3, 5, 0]]
    for saved in torchrun_ranks:  # every rank gets the whole, in dataset order
        got = saved["gathered"]
        assert set(got) == set(full)
        for key in ("cam_last", "probs", "labels"):
            assert got[key].dtype == full[key].dtype
            assert torch.equal(got[key], full[key]), key
        assert len(got["boxes"]) == dist_worker.TOTAL
        assert all(torch.equal(g, f) for g, f in zip(got["boxes"], full["boxes"], strict=True))
        assert got["cam_feature"] is None and got["image_size"] == [224, 224]


# ---------------------------------------------------------------------------- mixed precision
class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))))


def test_bf16_autocast_on_cpu_trains_a_conv_net() -> None:
    torch.manual_seed(0)
    net = _TinyNet()
    images = torch.randn(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    amp = make_amp("cpu", True)
    assert amp.dtype == torch.bfloat16 and amp.scaler is None
    with amp.autocast():
        cam = net(images)
        loss = nn.functional.cross_entropy(cam.mean(dim=(-2, -1)), labels)
    assert cam.dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    amp.backward_step(loss, optimizer)
    assert torch.isfinite(loss) and 0.5 < float(loss.detach()) < 3.0  # ~log(4) = 1.39 at init
    for p in net.parameters():
        assert p.dtype == torch.float32 and p.grad is not None
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
    context, scaler = autocast_context("cpu", False)
    with context:
        assert net(images).dtype == torch.float32 and scaler is None


def test_amp_policy_choices() -> None:
    assert make_amp("cpu", False).dtype is None
    with pytest.raises(ValueError, match="fp16 on the CPU: use bf16"):
        make_amp("cpu", True, "fp16")
    with pytest.raises(ValueError, match="choose one of auto, bf16, fp16"):
        make_amp("cuda", True, "fp8")
    assert make_amp("cuda", True, "bf16").scaler is None
    with warnings.catch_warnings():  # without a GPU, GradScaler warns that it disables itself
        warnings.simplefilter("ignore", UserWarning)
        fp16 = make_amp("cuda", True, "fp16")
    assert fp16.dtype == torch.float16 and isinstance(fp16.scaler, torch.amp.GradScaler)


def test_fp32_region_runs_eq12_in_float32_under_autocast() -> None:
    torch.manual_seed(1)
    fg, bg, mask_bg = (torch.randn(8, 16) for _ in range(3))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    reference, _ = coaug_loss(fg, bg, mask_bg, labels)
    half = [t.bfloat16().requires_grad_() for t in (fg, bg, mask_bg)]
    seen = {}

    @fp32_region
    def probe(x: torch.Tensor, out: dict) -> torch.Tensor:
        seen["dtype"] = x.dtype
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return (x @ x.T).sum()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = fp32_region(coaug_loss)(*half, labels)
        probed = probe(half[0], {"x": half[0]})
    assert seen == {"dtype": torch.float32, "autocast": False}
    assert probed.dtype == torch.float32
    assert loss.dtype == torch.float32 and terms["d_cam"].dtype == torch.float32
    # float32 arithmetic on bf16-rounded inputs: the float32 loss of those inputs, exactly
    exact, _ = coaug_loss(*(t.detach().float() for t in half), labels)
    assert float(loss.detach()) == float(exact)
    assert abs(float(loss.detach()) - float(reference)) < 0.05 * abs(float(reference))
    loss.backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in half)


# ------------------------------------------------------------------------------ gpu_check.sh
def test_gpu_check_dry_run_prints_the_report() -> None:
    env = _env_without_torchrun()
    env["PYTHON"] = sys.executable
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    report = done.stdout
    assert done.returncode == 0, report[-3000:] + done.stderr[-3000:]
    for heading in ("== environment", "== throughput", "== loss check", "== multi-process",
                    "== summary"):
        assert heading + "\n" in report, heading
    assert re.search(r"^torch \S+ \| cuda (none|\S+) \| gpus 0$", report, re.M)
    rows = re.findall(
        r"^RESULT throughput backbone=vgg_slim amp=(off|bf16) steps=3 batch=8 size=64 "
        r"images_per_s=([\d.]+) peak_mem_gib=(n/a|[\d.]+)$", report, re.M)
    assert [r[0] for r in rows] == ["off", "bf16"]
    assert all(float(r[1]) > 0 for r in rows)
    check = re.search(r"^RESULT loss_check backbone=vgg_slim device=cpu ref=cpu "
                      r"loss=([\d.]+) ref_loss=([\d.]+) rel_diff=(\S+) tol=1e-04 PASS$",
                      report, re.M)
    assert check and float(check.group(1)) == pytest.approx(float(check.group(2)), rel=1e-4)
    # the real trainer under torchrun, 2 gloo processes, one run folder written by rank 0
    trainer = re.search(r"^RESULT trainer world_size=2 amp=False epoch_time_s=[\d.]+ "
                        r"loss=[\d.]+ top1_loc_err=[\d.]+ num_images=16 PASS$", report, re.M)
    assert trainer, report
    assert report.rstrip().endswith("gpu_check: all checks passed (dry run)")
