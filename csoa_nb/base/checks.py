"""Validators shared by every layer: each raises `ValueError` naming the argument and the fix.

One home for the checks that several modules need: the choice among named options, Eq. 13's
threshold ratio theta, image-sized maps and sizes, a folder to write into. A module's own
checks of its own inputs stay in it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: theta of Eq. 13 as a function: any ratio in [0, 1] (0: every pixel above the minimum; 1:
#: none, nothing is above the maximum).
THETA_BOUNDS = (0.0, 1.0)


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`; else "unknown <name> <value>; valid choices: ..."."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
    return value


def check_theta(theta: object, name: str = "theta") -> float:
    """Eq. 13's threshold ratio as a float in `THETA_BOUNDS` (the closed interval)."""
    if isinstance(theta, bool) or not isinstance(theta, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1]; got {theta!r}")
    value = float(theta)
    if not THETA_BOUNDS[0] <= value <= THETA_BOUNDS[1]:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1] (Eq. 13 threshold ratio); got {theta!r}")
    return value


def check_run_theta(theta: float) -> float:
    """A run's or a report's theta: strictly inside (0, 1), where Eq. 13 gives a real box."""
    if not THETA_BOUNDS[0] < theta < THETA_BOUNDS[1]:  # also rejects NaN
        raise ValueError(f"theta must lie in (0, 1), got {theta} (Eq. 13's threshold ratio)")
    return theta


def as_tensor(x: object, name: str) -> Tensor:
    """`x` as a tensor (a numpy array is wrapped, not copied)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{name} must be a torch.Tensor (or numpy array); got {type(x).__name__}")


def check_map(
    x: object, name: str, *, ndim: int | None = None, min_ndim: int | None = None
) -> Tensor:
    """Tensor with the required rank, numeric, no NaN/inf; ints/bools become float32."""
    t = as_tensor(x, name)
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims; got shape {tuple(t.shape)}")
    if min_ndim is not None and t.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dims (..., h, w); got shape {tuple(t.shape)}"
        )
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued; got dtype {t.dtype}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # ints, bools, float16, bfloat16: computed in float32
    # a sum is NaN/inf whenever a value is (and rarely by overflow): the cheap test first
    if t.numel() and not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "inf"
        raise ValueError(f"{name} contains {bad} values; check the model output / input data")
    if t.shape[-2:].numel() == 0 and t.ndim >= 2:
        raise ValueError(f"{name} has an empty spatial size {tuple(t.shape[-2:])}")
    return t


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """A pair of positive ints (H, W)."""
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or not all(int(s) > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a pair of positive ints (H, W); got {size!r}")
    return int(size[0]), int(size[1])


class FolderError(ValueError, OSError):
    """A folder that cannot be used, refused before any work: bad input (a `ValueError`, which
    the command lines print as one line) that is also the `OSError` that writing into it would
    have raised, so that a caller catching either sees it."""


def check_writable_folder(folder: str | os.PathLike[str], name: str, fix: str) -> Path:
    """`folder` (absolute) when files can be written into it, creating nothing: it is a
    writable folder, or the nearest existing folder above it is, and each missing name fits
    the file system's limits. Else `FolderError` "<name> <folder> <reason>: <fix>", so that an
    output folder on a read-only mount, under a file or over the file-name limit is named
    before any work rather than by an `OSError` traceback when the first file is written."""
    path = Path(folder).expanduser().absolute()

    def refuse(reason: str) -> FolderError:
        return FolderError(f"{name} {folder} {reason}: {fix}")

    anchor, missing = path, []
    while anchor.parent != anchor:
        try:
            if anchor.exists():
                break
        except OSError:  # e.g. a name over the limit: checked below, as a missing name
            pass
        missing.append(anchor.name)
        anchor = anchor.parent
    if not anchor.is_dir():
        if anchor == path:
            raise refuse("is a file, not a folder")
        raise refuse(f"lies under {anchor}, a file, not a folder")
    name_max = os.pathconf(anchor, "PC_NAME_MAX")
    too_long = [part for part in missing if len(os.fsencode(part)) > name_max]
    if too_long:
        raise refuse(f"has a name longer than the file system's limit of {name_max} bytes "
                     f"({too_long[0][:16]}..., {len(os.fsencode(too_long[0]))} bytes)")
    path_max = os.pathconf(anchor, "PC_PATH_MAX")
    if len(os.fsencode(str(path))) >= path_max:
        raise refuse(f"is longer than the file system's limit of {path_max} bytes for a path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        reason = "is not writable (a read-only mount, or no write permission)"
        raise refuse(reason if anchor == path else f"cannot be created: {anchor} {reason}")
    return path
