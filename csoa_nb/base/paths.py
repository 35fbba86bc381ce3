"""Relative paths in a config (`data_root`, `output_dir`, `results_dirs`) mean the project root.

papermill runs chapters from the repository root, JupyterLab starts kernels in `book/`, and the
command line runs wherever the user is. So a relative path is taken from the nearest folder at
or above the working directory that holds `_toc.yml` and `csoa_nb/` (the book's root), and from
the working directory when there is none (an installed package used elsewhere).
"""

from __future__ import annotations

import errno
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "csoa_nb").is_dir():
            return folder
    return here


def project_path(path: str | Path) -> Path:
    """`path` itself if absolute, else `path` under `project_root()`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def display_path(path: str | Path) -> str:
    """A path as the book and the messages print it, without the building machine's folders:
    relative to the project root when inside it (``data/synthetic-...``), else with the home
    folder as ``~`` (``~/.cache/torch/hub``), else as given."""
    path = Path(path).expanduser()
    absolute = path if path.is_absolute() else project_root() / path
    for base, shown in ((project_root(), None), (Path.home(), "~")):
        try:
            rel = absolute.resolve().relative_to(base.resolve())
        except ValueError:
            continue
        return rel.as_posix() if shown is None else f"{shown}/{rel.as_posix()}"
    return path.as_posix()


def disk_full_error(error: OSError, folder: Path, what: str, then: str) -> OSError:
    """The one message of every write of the project on a full disk: an `OSError` (ENOSPC)
    naming `folder` and `what` was being written, and `then`, what a second try does; any
    other `error` is returned as it is."""
    if error.errno != errno.ENOSPC:
        return error
    return OSError(errno.ENOSPC, f"no space left on the disk of {folder} while writing {what}: "
                                 f"free some space and run the same command again ({then})")
