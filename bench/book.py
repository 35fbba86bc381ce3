"""Wall time and peak memory of `make test` and `make book` from a fresh clone.

Clones the repository (committed state only: uncommitted edits are not in a clone) into an
empty folder and runs, one after the other:

1. `make .venv/.stamp`: the clone's own environment (`python -m venv` + `pip install -e
   '.[book,test]'`; downloads the dependencies unless pip's cache holds them), timed apart
   because it is not part of the two targets;
2. `make test`: ruff, pytest (notebooks with the smoke preset), the strict HTML build;
3. `make book`: every notebook with the cpu preset (reads the committed `results/runs/`,
   trains the runs the chapters need that are not committed, builds the HTML).

Each command's process tree (make, pytest, papermill kernels, training workers) is sampled
with psutil twice a second: the peak of the summed RSS of the tree is reported, and the peak
of its largest single process beside it (a process that lives less than half a second can be
missed).

    python bench/book.py --dry-run            # print the commands, run nothing
    python bench/book.py                      # all three (tens of minutes on 2 cores)
    python bench/book.py --only test --keep   # make test alone, keep the clone

Targets: make test <= 10 min, make book <= 25 min, peak RSS <= 6 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    from bench._common import REPO_ROOT, format_table, print_machine
except ModuleNotFoundError:  # run as `python bench/book.py`
    from _common import REPO_ROOT, format_table, print_machine  # type: ignore

try:
    import psutil
except ImportError:  # ipykernel depends on it, so the book environment has it
    psutil = None

GIB = 1024**3
#: step name -> (make target, target wall time in seconds or None)
STEPS: dict[str, tuple[str, float | None]] = {
    "install": (".venv/.stamp", None),
    "test": ("test", 10 * 60),
    "book": ("book", 25 * 60),
}
RSS_TARGET = 6 * GIB
SAMPLE_S = 0.5


@dataclass
class Measurement:
    step: str
    command: str
    returncode: int
    wall_s: float
    peak_tree_rss: int  # bytes, 0 when psutil is missing
    peak_process_rss: int  # bytes


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """Summed and largest resident memory (bytes) of `root` and all its descendants."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    sizes = []
    for process in processes:
        try:
            sizes.append(process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sum(sizes), max(sizes, default=0)


def measure(step: str, command: list[str], cwd: Path, log: Path) -> Measurement:
    """Run `command` in `cwd` (output to `log`), sampling its process tree's memory.

    Without psutil the largest process comes from `getrusage(RUSAGE_CHILDREN).ru_maxrss`,
    which on Linux also counts the pages a child shared with this process when it was forked
    (an over-estimate by this process's own size)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    peak_tree = peak_single = 0
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        handle = psutil.Process(process.pid) if psutil is not None else None
        while process.poll() is None:
            if handle is not None:
                total, largest = tree_rss(handle)
                peak_tree, peak_single = max(peak_tree, total), max(peak_single, largest)
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - started
    if handle is None:  # ru_maxrss: KiB on Linux, the largest descendant so far
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_single = after * 1024 if after > before else 0
    return Measurement(step, " ".join(command), process.returncode, wall, peak_tree, peak_single)


def fmt_gib(value: int) -> str:
    return f"{value / GIB:.2f}" if value else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--only", nargs="+", choices=tuple(STEPS), default=list(STEPS),
                        help="steps to run (default: install test book)")
    parser.add_argument("--source", default=str(REPO_ROOT), help="repository to clone")
    parser.add_argument("--clone-dir", default=None, help="default: a new temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    parser.add_argument("--quick", action="store_true", help="the same as --dry-run")
    args = parser.parse_args(argv)

    clone = Path(args.clone_dir) if args.clone_dir else Path(
        tempfile.mkdtemp(prefix="csoa-book-bench-")) / "clone"
    make = shutil.which("make") or "make"
    clone_cmd = ["git", "clone", "--quiet", args.source, str(clone)]
    plan = [(step, [make, STEPS[step][0]]) for step in STEPS if step in args.only]
    if "install" not in args.only:  # `make test` / `make book` build the stamp themselves
        print("note: without the install step its time is counted in the first target")
    print_machine()
    print(f"$ {' '.join(clone_cmd)}")
    logs = {step: clone.parent / f"bench-{step}.log" for step, _ in plan}
    for step, command in plan:
        print(f"$ cd {clone} && {' '.join(command)}    # {step}, log: {logs[step]}")
    if psutil is None:
        print("note: psutil is missing: only the largest single process is measured (roughly)")
    if args.dry_run or args.quick:
        print("(dry run: nothing was executed)")
        if not args.clone_dir:
            clone.parent.rmdir()
        return 0

    if clone.exists() and any(clone.iterdir()):
        raise SystemExit(f"{clone} is not empty: pass an empty or new --clone-dir")
    subprocess.run(clone_cmd, check=True)
    results = []
    for step, command in plan:
        print(f"running {step} ...", flush=True)
        result = measure(step, command, clone, logs[step])
        results.append(result)
        print(f"  {step}: exit {result.returncode}, {result.wall_s / 60:.1f} min", flush=True)
        if result.returncode:
            print(f"  {step} failed: see {logs[step]} (the clone is kept)")
            break
    rows = []
    for r in results:
        target = STEPS[r.step][1]
        time_ok = "-" if target is None else ("met" if r.wall_s <= target else "NOT met")
        rss_ok = "met" if max(r.peak_tree_rss, r.peak_process_rss) <= RSS_TARGET else "NOT met"
        rows.append([
            r.step, str(r.returncode), f"{r.wall_s / 60:.1f}",
            "-" if target is None else f"{target / 60:.0f}", time_ok,
            fmt_gib(r.peak_tree_rss), fmt_gib(r.peak_process_rss), rss_ok,
        ])
    print(format_table(
        ["step", "exit", "wall min", "target min", "time", "peak RSS tree GiB",
         "largest process GiB", f"RSS <= {RSS_TARGET / GIB:.0f} GiB"],
        rows,
    ))
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (inherited by make)")
    ok = all(r.returncode == 0 for r in results)
    if args.keep or not ok:
        print(f"clone kept at {clone}")
    elif not args.clone_dir:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
