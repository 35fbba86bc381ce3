"""Time one training step of cam, confseg, coaug and csoa on the same backbone and batch.

A step is what `csoa_nb.engine.train.train` does per batch: forward, every loss term of the method
(`csoa_nb.engine.builders.method_losses`, alpha = 1 as after the ramp), backward, SGD step, in the
config's precision and layout (the cpu preset: bf16 autocast, channels-last). The model,
embedding W_E and optimizer come from the engine's own builders, so the loss code timed here is
the code that trains. Methods are timed round-robin (the order rotates every round) so that a
change in machine load hits every method alike. Each sample is the CPU time of this process
(one torch thread, so it is the compute spent and hardly depends on what else runs) and the
wall-clock time beside it; the ratio to `cam` is taken per round (paired) on CPU time and
summarised by its median and interquartile range (IQR).

The physical floor is the FLOP ratio: convolution and matmul FLOPs of forward + backward
counted with `torch.utils.flop_counter.FlopCounterMode` (a floor if every FLOP cost the same;
wide layers run at a higher FLOP rate than narrow ones, so a measured ratio can fall below it).
CSoA adds the W_F head (forward and backward) and three passes of W_E over S*I, (1-S)*I and
(1-S)*Mask*I (forward, plus the backward to their inputs: W_E is frozen, but L_D's gradient
flows through it into the CAM).

    python bench/step_time.py            # vgg_slim at the cpu preset's size
    python bench/step_time.py --quick    # fewer rounds (a smoke check of the script)
    python bench/step_time.py --fp32-nchw    # float32 NCHW: no bf16 autocast, no channels-last
    python bench/step_time.py --vgg16    # also VGG16 at 224 px, AlexNet W_E, batch 4 (minutes)
    python bench/step_time.py --embedding efficientnet_lite0   # the ImageNet W_E of imagenet_we

Target: csoa <= 1.45x cam (time per step; the FLOP floor is 1.33x).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    from bench._common import format_table, median_iqr, print_machine, set_threads
except ModuleNotFoundError:  # run as `python bench/step_time.py`
    from _common import format_table, median_iqr, print_machine, set_threads  # type: ignore

from csoa_nb.base.precision import make_amp
from csoa_nb.core.models import EMBEDDINGS
from csoa_nb.engine.builders import build_embedding, build_model, build_optimizer, method_losses
from csoa_nb.engine.config import RunConfig

METHODS = ("cam", "confseg", "coaug", "csoa")
TARGET_RATIO = 1.45  # csoa / cam, time per step
ALPHA = 1.0  # Eq. 6 / L_D weight after the ramp: every term is computed and back-propagated


@dataclass
class Setup:
    """One benchmark setting: a config (backbone, sizes) and the batch it is timed on."""

    label: str
    config: RunConfig
    images: torch.Tensor
    labels: torch.Tensor


def make_setup(label: str, config: RunConfig, batch_size: int) -> Setup:
    """A fixed random batch with `classes_per_batch` classes, as the class-balanced sampler
    draws it (CoAug needs same-class and different-class pairs in every batch)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, config.crop_size, config.crop_size, generator=generator)
    per_class = batch_size // config.classes_per_batch
    labels = torch.arange(config.classes_per_batch).repeat_interleave(per_class)
    return Setup(label, config, images, labels)


def cpu_setup(embedding: str = "slim") -> Setup:
    # vgg_slim, slim_width 8, 64 px crops, batch 48; `embedding`: W_E (random weights)
    config = RunConfig.from_preset("cpu", embedding=embedding)
    return make_setup(
        f"vgg_slim (w={config.slim_width}) {config.crop_size} px, W_E {embedding}, "
        f"batch {config.batch_size}",
        config,
        config.batch_size,
    )


def vgg16_setup(batch_size: int) -> Setup:
    config = RunConfig.from_preset(
        "paper", device="cpu", num_workers=0, batch_size=batch_size, classes_per_batch=2
    )
    return make_setup(
        f"vgg16 {config.crop_size} px, AlexNet W_E, batch {batch_size}", config, batch_size
    )


def build_step(
    setup: Setup, method: str, fp32_nchw: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """`(step, forward_backward)` for `method`: the full training step, and the same without
    the optimizer (what the FLOP counter sees). Weights are random (`weights=None`): the
    cost of a step does not depend on their values. The precision and layout are the config's,
    as the engine trains (the `cpu` preset: bf16 autocast, channels-last network and batch);
    `fp32_nchw` times float32 NCHW instead (the engine before the preset changed; the frozen
    W_E is channels-last either way, see `EmbeddingNet.freeze`)."""
    config = setup.config.replace(method=method)
    if fp32_nchw:
        config = config.replace(amp=False, channels_last=False)
    torch.manual_seed(0)
    model = build_model(config, weights=None).to(memory_format=config.memory_format)
    model.train()
    embed_net = build_embedding(config, weights=None) if config.uses_coaug else None
    images = setup.images.contiguous(memory_format=config.memory_format)
    labels = setup.labels
    optimizer, _ = build_optimizer(config, model)
    amp = make_amp("cpu", config.amp, config.amp_dtype)

    def forward_backward() -> None:
        with amp.autocast():
            out = model(images)
            terms = method_losses(config, out, images, labels, ALPHA, embed_net)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()

    def step() -> None:
        forward_backward()
        optimizer.step()

    return step, forward_backward


def count_flops(fn: Callable[[], None]) -> tuple[float, dict[str, float]]:
    """Total FLOPs of `fn` and the forward FLOPs of the modules that CSoA adds."""
    with FlopCounterMode(display=False, depth=2) as counter:
        fn()
    by_module = counter.get_flop_counts()

    def forward_flops(name: str) -> float:
        ops = by_module.get(name, {})
        return float(sum(n for op, n in ops.items() if "backward" not in str(op)))

    extras = {
        "W_F forward": forward_flops("CSoANet.head_feature"),
        "W_E forward (3 passes)": forward_flops("EmbeddingNet"),
    }
    return float(counter.get_total_flops()), extras


def time_methods(
    setup: Setup, rounds: int, steps: int, warmup: int, fp32_nchw: bool = False
) -> tuple[dict[str, dict[str, list[float]]], dict[str, tuple[float, dict[str, float]]]]:
    """Seconds per step of every method, `rounds` samples each (mean of `steps` steps), as
    CPU time of this process (`"cpu"`) and wall-clock time (`"wall"`)."""
    steps_by_method = {}
    flops = {}
    for method in METHODS:
        step, forward_backward = build_step(setup, method, fp32_nchw)
        flops[method] = count_flops(forward_backward)
        for _ in range(warmup):
            step()
        steps_by_method[method] = step
    samples = {m: {"cpu": [], "wall": []} for m in METHODS}
    for r in range(rounds):
        order = METHODS[r % len(METHODS):] + METHODS[: r % len(METHODS)]
        for method in order:
            step = steps_by_method[method]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            samples[method]["cpu"].append((time.process_time() - cpu) / steps)
            samples[method]["wall"].append((time.perf_counter() - wall) / steps)
    return samples, flops


def paired_ratio(samples: dict[str, dict[str, list[float]]], method: str) -> tuple[float, float]:
    """Median and IQR over rounds of CPU time(method) / CPU time(cam) in the same round."""
    pairs = zip(samples[method]["cpu"], samples["cam"]["cpu"], strict=True)
    return median_iqr([t / c for t, c in pairs])


def report(
    setup: Setup, rounds: int, steps: int, warmup: int, fp32_nchw: bool = False
) -> None:
    config = setup.config.replace(amp=False, channels_last=False) if fp32_nchw else setup.config
    layout = (f", {'bf16 autocast' if config.amp else 'float32'}, "
              f"{'channels-last' if config.channels_last else 'NCHW'}")
    print(
        f"## {setup.label}{layout}: {rounds} rounds x {steps} steps per method, "
        f"{warmup} warm-up"
    )
    samples, flops = time_methods(setup, rounds, steps, warmup, fp32_nchw)
    cam_flops = flops["cam"][0]
    rows = []
    for method in METHODS:
        cpu, cpu_iqr = median_iqr(samples[method]["cpu"])
        wall, wall_iqr = median_iqr(samples[method]["wall"])
        ratio, ratio_iqr = paired_ratio(samples, method)
        total = flops[method][0]
        rows.append([
            method,
            f"{1e3 * cpu:.0f} ± {1e3 * cpu_iqr:.0f}",
            f"{1e3 * wall:.0f} ± {1e3 * wall_iqr:.0f}",
            f"{ratio:.2f} ± {ratio_iqr:.2f}",
            f"{total / 1e9:.2f}",
            f"{total / cam_flops:.2f}",
        ])
    print(format_table(
        ["method", "CPU ms/step", "wall ms/step", "CPU time / cam", "GFLOP/step", "FLOP / cam"],
        rows,
    ))
    print("(median ± IQR over rounds; the time ratio is paired: each round's csoa over the same "
          "round's cam)")
    csoa_total, extras = flops["csoa"]
    extra = csoa_total - cam_flops
    forward_extra = sum(extras.values())
    parts = ", ".join(f"{name} {value / 1e9:.2f}" for name, value in extras.items())
    print(
        f"csoa - cam = {extra / 1e9:.2f} GFLOP/step: {parts}, their backward "
        f"{(extra - forward_extra) / 1e9:.2f} (GFLOP)"
    )
    csoa_ratio = paired_ratio(samples, "csoa")[0]
    verdict = "met" if csoa_ratio <= TARGET_RATIO else "NOT met"
    print(
        f"target csoa <= {TARGET_RATIO:.2f}x cam (CPU time): {verdict} ({csoa_ratio:.2f}x "
        f"measured, {csoa_total / cam_flops:.2f}x in FLOPs)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 step, 1 warm-up")
    parser.add_argument("--vgg16", action="store_true", help="also VGG16 at 224 px (minutes)")
    parser.add_argument("--vgg16-only", action="store_true", help="VGG16 at 224 px only")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (3 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round, default 2")
    parser.add_argument("--vgg16-batch", type=int, default=4)
    parser.add_argument(
        "--fp32-nchw", action="store_true",
        help="float32 NCHW instead of the preset's precision and layout (the cpu preset: bf16 "
             "autocast, channels-last)",
    )
    parser.add_argument(
        "--embedding", default="slim", choices=EMBEDDINGS,
        help="W_E of coaug and csoa at the cpu preset's size (default: slim, the preset's; "
             "efficientnet_lite0: the sweep imagenet_we's)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    print_machine()
    rounds = args.rounds or (3 if args.quick else 7)
    steps = args.steps or (1 if args.quick else 2)
    if not args.vgg16_only:
        report(cpu_setup(args.embedding), rounds, steps, 1 if args.quick else 2,
               args.fp32_nchw)
    if args.vgg16 or args.vgg16_only:
        # 10-30 s per step on one core: 2 rounds of 1 step; the FLOP-counting pass (a full
        # forward and backward) is the warm-up
        report(vgg16_setup(args.vgg16_batch), args.rounds or 2, args.steps or 1, 0,
               args.fp32_nchw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
