"""The one training loop: seeding, the steps of an epoch with their NaN guard, RNG snapshots.

Both trainers run their epochs through `run_epoch`: a run of a method (`csoa_nb.engine.train`:
setup, resume, epochs, checkpoint, finalize) and the pretraining stage
(`csoa_nb.engine.pretrain`). A step is the trainer's `step(index, batch)` (forward and every loss
term, the weighted sum under "total"), then this module's part, in this order: every term
checked finite (else `NonFiniteLossError`, before any parameter changes), gradients zeroed,
backward, optimizer step, the per-step scheduler if any, the terms summed for the epoch's log.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


#: `step(index, batch) -> (terms, correct, seen)`: the loss terms of one batch (with "total"),
#: and how many of its `seen` images the network classified right (0, 0 when not counted).
StepFn = Callable[[int, Any], tuple[dict[str, torch.Tensor], int, int]]


@dataclass
class EpochTotals:
    """What one epoch's steps add up to: each term's sum over steps, the classification hits."""

    sums: dict[str, float] = field(default_factory=dict)
    correct: int = 0
    seen: int = 0
    steps: int = 0


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_epoch(
    loader: Iterable[Any],
    step: StepFn,
    optimizer: torch.optim.Optimizer,
    *,
    nonfinite: Callable[[int, str, torch.Tensor], Exception],
    scheduler: Any = None,
    total: int | None = None,
    desc: str = "",
    progress: bool = True,
    postfix: Callable[[int, dict[str, torch.Tensor]], dict[str, str]] | None = None,
    backward_step: Callable[[torch.Tensor, torch.optim.Optimizer], None] | None = None,
) -> EpochTotals:
    """One epoch of SGD steps over `loader` (see the module docstring for a step's order).

    `nonfinite(index, name, value)` makes the error raised when term `name` of step `index`
    is not finite; `scheduler` (if given) steps after every optimizer step (an epoch-wise
    scheduler is the caller's); `postfix` gives the progress bar's text after each step;
    `backward_step(loss, optimizer)` replaces `loss.backward(); optimizer.step()` (mixed
    precision's loss scaling, `csoa_nb.base.precision.Amp.backward_step`).
    """
    totals = EpochTotals()
    bar = tqdm(loader, total=total, desc=desc, disable=not progress, leave=False)
    for index, batch in enumerate(bar):
        terms, correct, seen = step(index, batch)
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise nonfinite(index, name, value)
        optimizer.zero_grad(set_to_none=True)
        if backward_step is None:
            terms["total"].backward()
            optimizer.step()
        else:
            backward_step(terms["total"], optimizer)
        if scheduler is not None:
            scheduler.step()
        for name, value in terms.items():
            totals.sums[name] = totals.sums.get(name, 0.0) + float(value.detach())
        totals.correct += correct
        totals.seen += seen
        totals.steps += 1
        if postfix is not None:
            bar.set_postfix(**postfix(index, terms))
    return totals


# ------------------------------------------------------------------------- RNG snapshots
def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's (CPU) generator states, as a checkpoint stores them."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
