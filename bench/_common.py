"""Helpers shared by the benchmark scripts: the machine line, robust statistics, tables.

Benchmarks print facts, they assert nothing (timed tests are flaky on shared machines). Every
script prints the machine it ran on (`machine_lines`) so a figure is never quoted without it.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))


def set_threads(threads: int) -> None:
    """Pin torch's intra-op pool to `threads` (other OpenMP pools: OMP_NUM_THREADS, at start)."""
    torch.set_num_threads(threads)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (`platform.processor()` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_lines() -> list[str]:
    """What a reader needs to judge the figures: CPU, cores, load, torch, threads, date."""
    cores = os.cpu_count() or 0
    try:
        one = os.getloadavg()[0]
    except OSError:
        one = 0.0
    busy = ""
    if one > 0.5 * cores:
        busy = " (busy: other processes share the cores; timings are noisy)"
    return [
        f"machine: {cpu_model()}, {cores} cores, load average {load_average()}{busy}",
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def print_machine() -> None:
    for line in machine_lines():
        print(line)
    print()


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of `values` (one value: all three equal)."""
    data = sorted(values)
    if len(data) == 1:
        return data[0], data[0], data[0]
    q1, q2, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return q1, q2, q3


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile range (75th - 25th percentile)."""
    q1, q2, q3 = quartiles(values)
    return q2, q3 - q1


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (readable in a terminal, pasteable into README.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
