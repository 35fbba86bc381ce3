"""The trainer's log: one epoch's lines, the final scores' summary, the collapse warnings.

Each entry names the run by its hash, in lines of at most `LOG_WIDTH` characters, and goes to
the log function of `csoa_nb.engine.train.train` (print by default).
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from csoa_nb.core.monitors import diagnose_collapse
from csoa_nb.core.scores import Scores
from csoa_nb.engine.config import RunConfig

#: Longest line the trainer logs: a notebook's text column holds about 90 characters.
LOG_WIDTH = 88


def epoch_line(config: RunConfig, record: dict[str, Any]) -> str:
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


def run_summary(scores: Scores) -> str:
    """The final scores in the log's last line (the metrics the run has)."""
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
