"""The GPU check's driver (run by bench/gpu_check.sh): throughput, memory, CUDA == CPU.

Printing `RESULT ...` lines that bench/gpu_check.sh collects:

* default: for each backbone of the `paper` preset (VGG16 with AlexNet W_E on CUB's 200
  classes; Inception-v3 on ILSVRC's 1000), N training steps of the CSoA network with random
  weights (nothing is downloaded) with AMP off and on: images/s and peak GPU memory
  (`torch.cuda.max_memory_allocated`); then the loss of one fixed batch on CUDA and on the
  CPU (float32, TF32 off), which must agree to a relative 1e-4.
* `--dry-run`: CPU, the slim backbone, 64 px, batch 8, 3 steps: the whole script in
  seconds, the same report format.

The multi-GPU part of bench/gpu_check.sh runs the real trainer under torchrun, not this file.

A training step is the trainer's: forward under autocast, `csoa_nb.engine.builders.method_losses`
of method `csoa` at alpha = 1 (Eq. 5 and Eq. 12 in float32 under autocast, as `csoa_nb.methods.csoa`
computes them), backward, SGD step.
The data are random tensors already on the device, with class-balanced labels: the check
measures the GPU and the network, not JPEG decoding (the loader's speed depends on the data
set's disk and CPU workers, not on the GPU; the synthetic generator would spend most of a
10-minute budget rendering 224 px images on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import torch

try:
    import bench._common  # noqa: F401  (puts the checkout on sys.path)
except ImportError:  # `python bench/gpu_check.py`
    import _common  # type: ignore # noqa: F401

from csoa_nb.base.precision import Amp, make_amp
from csoa_nb.engine import builders
from csoa_nb.engine.config import RunConfig

#: Relative tolerance of the CUDA-vs-CPU loss (float32 both, TF32 off): the two differ only
#: in the order of float32 sums inside convolutions (~1e-6 relative after 13 layers).
LOSS_RTOL = 1e-4

ALPHA = 1.0  # alpha of Eq. 6 / Eq. 12 after its ramp: every loss term at full weight


@dataclass(frozen=True)
class Setup:
    """One network to check: its config (method csoa) and the batch's size."""

    label: str
    config: RunConfig
    batch: int


def setups(dry_run: bool, backbones: list[str], batch: int, size: int) -> list[Setup]:
    """The `paper` preset's networks (VGG16 on CUB, Inception-v3 on ILSVRC), or the dry run's
    slim one, as csoa_nb.engine.builders builds them."""
    if dry_run:
        config = RunConfig.from_preset("cpu", method="csoa").replace(
            batch_size=batch, classes_per_batch=4, crop_size=size, resize_size=size, device="cpu"
        )
        return [Setup("vgg_slim", config, batch)]
    out = []
    for backbone in backbones:
        dataset = "ilsvrc" if backbone == "inception_v3" else "cub"
        config = RunConfig.from_preset("paper", method="csoa", dataset=dataset)
        config = config.replace(batch_size=batch, crop_size=size,
                                resize_size=max(size, config.resize_size))
        if config.backbone != backbone:
            raise ValueError(f"--backbones: {backbone!r} is not a paper-preset backbone; use "
                             "vgg16 and/or inception_v3")
        out.append(Setup(backbone, config, batch))
    return out


def make_batch(setup: Setup, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised images and class-balanced labels (classes_per_batch x k)."""
    config = setup.config
    gen = torch.Generator().manual_seed(seed)
    size = config.crop_size
    images = torch.randn(setup.batch, 3, size, size, generator=gen)
    per_class = setup.batch // config.classes_per_batch
    classes = torch.randperm(config.num_classes, generator=gen)[: config.classes_per_batch]
    labels = classes.repeat_interleave(per_class)
    return images.to(device), labels.to(device)


def build(setup: Setup, device: torch.device, seed: int = 0) -> tuple[torch.nn.Module,
                                                                      torch.nn.Module]:
    torch.manual_seed(seed)
    model = builders.build_model(setup.config, None).to(device)  # random weights, no download
    embed_net = builders.build_embedding(setup.config, None).to(device)
    return model, embed_net


def train_step(setup: Setup, model: torch.nn.Module, embed_net: torch.nn.Module, amp: Amp,
               optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    with amp.autocast():
        out = model(images)
        terms = builders.method_losses(setup.config, out, images, labels, ALPHA, embed_net)
    optimizer.zero_grad(set_to_none=True)
    amp.backward_step(terms["total"], optimizer)
    return terms["total"].detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(setup: Setup, device: torch.device, amp: Amp, steps: int) -> tuple[float, str]:
    """Images per second over `steps` timed steps (after a warm-up) and the peak memory."""
    model, embed_net = build(setup, device)
    model.train()
    optimizer, _ = builders.build_optimizer(setup.config, model)
    batches = [make_batch(setup, device, seed) for seed in range(4)]
    warmup = max(2, min(10, steps // 5))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(warmup):
        train_step(setup, model, embed_net, amp, optimizer, *batches[step % len(batches)])
    sync(device)
    started = time.perf_counter()
    last = None
    for step in range(steps):
        last = train_step(setup, model, embed_net, amp, optimizer, *batches[step % len(batches)])
    sync(device)
    elapsed = time.perf_counter() - started
    if last is None or not torch.isfinite(last):
        raise FloatingPointError(f"{setup.label} amp={amp_name(amp)}: loss {last} after "
                                 f"{steps} steps")
    peak = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
            if device.type == "cuda" else "n/a")
    del model, embed_net, optimizer
    return steps * setup.batch / elapsed, peak


def amp_name(amp: Amp) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp.dtype]


@torch.no_grad()
def fixed_loss(setup: Setup, model: torch.nn.Module, embed_net: torch.nn.Module,
               device: torch.device, amp: Amp | None = None) -> float:
    images, labels = make_batch(setup, torch.device("cpu"), seed=123)
    images, labels = images.to(device), labels.to(device)
    with (amp or make_amp(device.type, False)).autocast():
        out = model(images)
        terms = builders.method_losses(setup.config, out, images, labels, ALPHA, embed_net)
    return float(terms["total"])


def loss_check(setup: Setup, device: torch.device, amp: Amp) -> bool:
    """The fixed batch's loss on `device` and on the CPU (same weights, float32, TF32 off)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = torch.device("cpu")
    model, embed_net = build(setup, cpu, seed=7)
    model.train()  # BatchNorm on batch statistics, as in training
    ref = fixed_loss(setup, model, embed_net, cpu)
    model_d, embed_d = copy.deepcopy(model).to(device), copy.deepcopy(embed_net).to(device)
    got = fixed_loss(setup, model_d, embed_d, device)
    rel = abs(got - ref) / max(abs(ref), 1e-12)
    ok = rel <= LOSS_RTOL
    print(f"RESULT loss_check backbone={setup.label} device={device.type} ref=cpu "
          f"loss={got:.6f} ref_loss={ref:.6f} rel_diff={rel:.1e} tol={LOSS_RTOL:.0e} "
          f"{'PASS' if ok else 'FAIL'}")
    if amp.enabled:
        half = fixed_loss(setup, model_d, embed_d, device, amp)
        print(f"INFO loss_amp backbone={setup.label} amp={amp_name(amp)} loss={half:.6f} "
              f"rel_diff_to_fp32={abs(half - got) / max(abs(got), 1e-12):.1e} (no threshold)")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return ok


def single(args: argparse.Namespace) -> int:
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device visible to PyTorch; run with --dry-run on a CPU")
    print("== throughput", flush=True)
    failed = False
    todo = setups(args.dry_run, args.backbones, args.batch, args.size)
    for setup in todo:
        for enabled in (False, True):
            amp = make_amp(device.type, enabled, args.amp_dtype)
            rate, peak = throughput(setup, device, amp, args.steps)
            print(f"RESULT throughput backbone={setup.label} amp={amp_name(amp)} "
                  f"steps={args.steps} batch={setup.batch} size={setup.config.crop_size} "
                  f"images_per_s={rate:.1f} peak_mem_gib={peak}", flush=True)
    print("== loss check", flush=True)
    if args.dry_run:
        print("(dry run: the device is the CPU too; this exercises the code path only)")
    for setup in todo:
        failed |= not loss_check(setup, device, make_amp(device.type, True, args.amp_dtype))
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, slim backbone, 64 px, batch 8, 3 steps")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per backbone and AMP mode (default 200; dry run 3)")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per step (default 48 = 12 classes x 4; dry run 8)")
    parser.add_argument("--size", type=int, default=None, help="crop size (default 224; dry 64)")
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "inception_v3"])
    parser.add_argument("--amp-dtype", default="auto", choices=("auto", "bf16", "fp16"))
    args = parser.parse_args(argv)
    defaults = (3, 8, 64) if args.dry_run else (200, 48, 224)
    for name, default in zip(("steps", "batch", "size"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return single(args)


if __name__ == "__main__":
    raise SystemExit(main())
