"""Pretraining: the offline stand-in for ImageNet weights.

The paper fine-tunes ImageNet-pretrained VGG16 / InceptionV3 and uses an ImageNet AlexNet as the
embedding network W_E (Sec. 4.1). Offline there is no ImageNet, and a network trained from
scratch on a small set is another regime (its CAM is far more part-focused). So the `cpu`
preset mirrors the protocol: this stage trains the slim backbone and the slim W_E as plain
classifiers on a separate, larger synthetic set whose object designs and classes differ from
the benchmark's (`Difficulty(family="pretrain")`), and writes one local weights file::

    <output_dir>/pretrain-<hash>/weights.pt   {"backbone": ..., "embedding": ..., "info": ...}

which every method then fine-tunes from, as the `paper` preset fine-tunes from torchvision's
file. It is cached by the hash of the settings it depends on, so `make book` pays it once.

Command line::

    python -m csoa_nb.engine.pretrain --preset cpu
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from csoa_nb.base.cache import find_cached, stable_hash
from csoa_nb.base.paths import project_path
from csoa_nb.base.precision import make_amp
from csoa_nb.core.models import CSoANet, EmbeddingNet
from csoa_nb.data import CUB200, Difficulty, WSOLTransform, collate_wsol, make_dataset
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.loop import NonFiniteLossError, run_epoch
from csoa_nb.engine.runs import run_lock, save_torch, write_json

#: The W_E the stage trains beside the slim backbone (the one it stands in for ImageNet for).
STAGE_EMBEDDING = "slim"
#: The settings a pretrained weights file depends on (and nothing else).
PRETRAIN_FIELDS = (
    "backbone",
    "slim_width",
    "embedding",
    "synthetic_size",
    "resize_size",
    "crop_size",
    "pretrain_classes",
    "pretrain_images_per_class",
    "pretrain_epochs",
    "pretrain_lr",
)
PRETRAIN_SEED = 0  # one pretrained model for all seeds, as one ImageNet model serves all runs
PRETRAIN_THREADS = 1  # CPU threads of the stage, whoever trains it (see `_pretrain`)
#: The ImageNet analogue: other object designs and classes than the benchmark's, and (as in
#: ImageNet, where whole objects differ between classes) class evidence spread over the whole
#: body as well as in the part, so that pretrained features respond to whole objects.
PRETRAIN_DIFFICULTY = Difficulty(family="pretrain", body_class_evidence=0.6, part_fraction=0.08)


def pretrain_settings(config: RunConfig) -> dict[str, Any]:
    """The fields of `config` the stage depends on: `PRETRAIN_FIELDS`, and the precision and
    layout it trains in when they are not float32 NCHW (`amp`, `amp_dtype`, `channels_last`;
    left out at their defaults, so the stage of a float32 run keeps its hash)."""
    settings = {name: getattr(config, name) for name in PRETRAIN_FIELDS}
    settings["embedding"] = STAGE_EMBEDDING  # the stage's own W_E, whatever the run's
    if config.amp:
        settings.update(amp=True, amp_dtype=config.amp_dtype)
    if config.channels_last:
        settings["channels_last"] = True
    return settings


def pretrain_hash(config: RunConfig) -> str:
    return stable_hash(pretrain_settings(config))


def find_pretrained(config: RunConfig) -> Path | None:
    """The weights file of `config`'s pretraining stage under `output_dir` or `results_dirs`."""
    bases = (project_path(base) for base in (config.output_dir, *config.results_dirs))
    found = find_cached(f"pretrain-{pretrain_hash(config)}", bases, "weights.pt")
    return None if found is None else found / "weights.pt"


def pretrain(
    config: RunConfig, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> Path:
    """Path of the pretrained weights for `config` (training them first if needed); `log`
    receives one line per epoch (default: print)."""
    if config.backbone != "vgg_slim":
        raise ValueError(
            "the pretraining stage stands in for ImageNet for the slim backbone only; for "
            f"backbone {config.backbone!r} pass an ImageNet weights file or name as `pretrained`"
        )
    # the stage trains the slim W_E beside the backbone; a run with another W_E reads only the
    # stage's backbone (`builders.resolve_weights`) and names its W_E's weights itself
    config = config.replace(embedding=STAGE_EMBEDDING)
    config.check_output_dir()  # before find_pretrained reads it
    found = find_pretrained(config)
    if found is not None:
        return check_pretrained(found, config)
    out_dir = project_path(config.output_dir) / f"pretrain-{pretrain_hash(config)}"
    with run_lock(out_dir), torch.random.fork_rng(devices=[]):
        # fork_rng: the stage seeds and draws from torch's global generator; the caller's
        # stream (a run's seed) must come out as it went in, cached stage or not
        found = find_pretrained(config)  # a twin process may have written it while we waited
        if found is not None:
            return check_pretrained(found, config)
        return _pretrain(config, out_dir, progress=progress, say=log or print)


def check_pretrained(weights: Path, config: RunConfig | None = None) -> Path:
    """`weights` if it is a readable pretraining file (whose networks fit `config`'s, when
    given), else an error saying which folder to delete."""
    fix = f"delete the folder {weights.parent} and run the same command again to pretrain anew"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        ok = isinstance(state, dict) and {"backbone", "embedding"} <= state.keys()
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing
        ok, reason = False, f"{type(error).__name__}: {error}"
    else:
        reason = "no 'backbone'/'embedding' weights"
    if not ok:
        raise ValueError(f"the cached pretraining weights {weights} are corrupt ({reason}): {fix}")
    misfit = None if config is None else _misfit(state, config)
    if config is not None and misfit is not None:
        raise ValueError(
            f"the cached pretraining weights {weights} do not fit the {config.backbone} "
            f"backbone and {config.embedding} W_E of slim_width {config.slim_width} ({misfit}; "
            f"written by other code, or copied there): {fix}"
        )
    return weights


def _misfit(state: dict[str, Any], config: RunConfig) -> str | None:
    """The first tensor of a pretraining file's `state` that `config`'s networks lack or hold
    in another shape, described; None when every tensor fits."""
    with torch.random.fork_rng(devices=[]):  # the initial weights are not used
        own = {
            "backbone": CSoANet(config.backbone, 2, baseline=True,
                                slim_width=config.slim_width).backbone.state_dict(),
            "embedding": EmbeddingNet(config.embedding, slim_width=config.slim_width)
            .state_dict(),
        }
    for part, expected in own.items():
        saved = state[part]
        if not isinstance(saved, dict):
            return f"{part} is a {type(saved).__name__}, not a state dict"
        for key, tensor in expected.items():
            found = saved.get(key)
            if not isinstance(found, torch.Tensor):
                return f"{part} lacks {key}"
            if found.shape != tensor.shape:
                return (f"{part} {key} has shape {tuple(found.shape)}, the network's is "
                        f"{tuple(tensor.shape)}")
        extra = sorted(set(saved) - set(expected))
        if extra:
            return f"{part} has {len(extra)} unexpected tensors, e.g. {extra[0]}"
    return None


def _pretrain(
    config: RunConfig, out_dir: Path, *, progress: bool, say: Callable[[str], None]
) -> Path:
    """Train the stage with one CPU thread: float sums split over threads round differently,
    and training amplifies that, so the stage (shared by every run) would depend on the
    process that happened to train it first (measured: backbone test accuracy 61.5 % with two
    threads, 53.8 % with one, same seed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _pretrain_with(config, out_dir, progress=progress, say=say)
    finally:
        torch.set_num_threads(threads)


def _pretrain_with(
    config: RunConfig, out_dir: Path, *, progress: bool, say: Callable[[str], None]
) -> Path:
    device = torch.device(config.device)
    torch.manual_seed(PRETRAIN_SEED)
    started = time.perf_counter()

    try:
        root = make_dataset(
            project_path(config.data_root) / "synthetic",
            num_classes=config.pretrain_classes,
            images_per_class=config.pretrain_images_per_class,
            image_size=config.synthetic_size,
            seed=PRETRAIN_SEED + 1,
            test_per_class=max(config.pretrain_images_per_class // 4, 1),
            difficulty=PRETRAIN_DIFFICULTY,
        )
    except OSError as error:
        raise config.data_root_error(error) from error
    train_set = CUB200(root, "train", WSOLTransform(True, config.resize_size, config.crop_size))
    test_set = CUB200(root, "test", WSOLTransform(False, config.resize_size, config.crop_size))
    loader = DataLoader(
        train_set,
        batch_size=64,
        shuffle=True,
        collate_fn=collate_wsol,
        generator=torch.Generator().manual_seed(PRETRAIN_SEED),
    )
    classes = train_set.num_classes
    layout = config.memory_format
    network = CSoANet(
        config.backbone, classes, baseline=True, slim_width=config.slim_width
    ).to(device, memory_format=layout)
    embed_net = EmbeddingNet(config.embedding, slim_width=config.slim_width).to(device)
    embed_head = nn.Linear(embed_net.out_dim, classes).to(device)
    params = [*network.parameters(), *embed_net.parameters(), *embed_head.parameters()]
    optimizer = torch.optim.SGD(params, lr=config.pretrain_lr, momentum=0.9, weight_decay=5e-4)
    total_steps = config.pretrain_epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.pretrain_lr, total_steps=total_steps, pct_start=0.2
    )
    amp = make_amp(device.type, config.amp, config.amp_dtype)

    def step(index: int, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int, int]:
        images = batch["image"].to(device, memory_format=layout)
        labels = batch["label"].to(device)
        with amp.autocast():
            loss = F.cross_entropy(network(images).logits_last, labels) + F.cross_entropy(
                embed_head(embed_net(images)), labels
            )
        return {"total": loss}, 0, 0

    for epoch in range(config.pretrain_epochs):
        network.train()
        embed_net.train()

        def nonfinite(index: int, name: str, value: torch.Tensor, epoch: int = epoch) -> Exception:
            return NonFiniteLossError(
                f"pretraining loss is {value.item()} at epoch {epoch + 1}, batch {index + 1}; "
                "nothing was saved. Lower pretrain_lr (--set pretrain_lr=...)"
            )

        totals = run_epoch(
            loader, step, optimizer, nonfinite=nonfinite, scheduler=scheduler,
            desc=f"pretrain epoch {epoch + 1}/{config.pretrain_epochs}", progress=progress,
            backward_step=amp.backward_step,
        )
        say(f"[pretrain {pretrain_hash(config)}] epoch {epoch + 1}/{config.pretrain_epochs} "
            f"loss {totals.sums['total'] / len(loader):.4f}")

    accuracy = _accuracy(network, embed_net, embed_head, test_set, device)
    info = {
        "settings": pretrain_settings(config),
        "classes": classes,
        "dataset": root.name,  # the folder under data_root/synthetic (no machine paths)
        "test_acc_backbone": accuracy[0],
        "test_acc_embedding": accuracy[1],
        "wall_time_s": time.perf_counter() - started,
    }
    weights = out_dir / "weights.pt"
    save_torch(
        weights,
        {
            "backbone": network.backbone.state_dict(),
            "embedding": embed_net.state_dict(),
            "info": {k: v for k, v in info.items() if k != "settings"},
        },
    )
    write_json(out_dir / "pretrain.json", info)
    say(f"[pretrain {pretrain_hash(config)}] test acc: backbone {accuracy[0]:.1f}%, "
        f"W_E {accuracy[1]:.1f}%; {info['wall_time_s']:.0f} s; {out_dir.name}/{weights.name}")
    return weights


@torch.no_grad()
def _accuracy(
    network: CSoANet, embed_net: EmbeddingNet, embed_head: nn.Module, dataset: Any, device: Any
) -> tuple[float, float]:
    network.eval()
    embed_net.eval()
    hits = [0, 0]
    loader = DataLoader(dataset, batch_size=128, shuffle=False, collate_fn=collate_wsol)
    for batch in loader:
        images, labels = batch["image"].to(device), batch["label"].to(device)
        hits[0] += int((network(images).logits_last.argmax(1) == labels).sum())
        hits[1] += int((embed_head(embed_net(images)).argmax(1) == labels).sum())
    return 100.0 * hits[0] / len(dataset), 100.0 * hits[1] / len(dataset)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.pretrain", description=__doc__)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", dest="assignments", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        config = RunConfig.from_preset(args.preset, **RunConfig.parse_assignments(args.assignments))
        weights = pretrain(config)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
