"""Worker processes that die with their parent (`make results`' pool).

A `ProcessPoolExecutor`'s workers outlive a parent killed with SIGKILL (no handler runs): they
are re-parented and keep their memory (a training run's) for good, and the pool's resource
tracker waits for them. Each worker of `worker_pool` runs a daemon thread that checks every
`PARENT_POLL_S` seconds whether its parent is still the process that made the pool, and
exits at once when it is not; the resource tracker then sees its last user gone and ends too.
A thread rather than Linux's `PR_SET_PDEATHSIG`: that signal follows the parent *thread*
that started the worker, and works on Linux only.

Standard library only, so that a worker starts without importing torch for it.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

#: Seconds between a worker's checks of its parent.
PARENT_POLL_S = 0.5
#: The exit status of a worker whose parent is gone.
ORPHAN_EXIT = 70


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of `jobs` fresh ("spawn") worker processes, each ending when this process ends,
    however it ends (`exit_with_parent`)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1 (worker processes), got {jobs}")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def exit_with_parent(parent: int) -> None:
    """In a worker: start the daemon thread that ends this process once `parent` is no longer
    its parent (it died; the worker was re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(ORPHAN_EXIT)  # no cleanup: the work is lost with the parent anyway

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
