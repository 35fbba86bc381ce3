"""Shared pieces of the dataset readers: the error type, image/mask loading, batching.

Every reader returns the sample dict fixed in DESIGN.md::

    {"image": FloatTensor 3xHxW (ImageNet-normalised), "label": int (0-based),
     "boxes": FloatTensor Kx4 (x0, y0, x1, y1; pixels of the returned image; x1/y1 exclusive),
     "mask": FloatTensor 1xHxW in {0, 1} (only when the dataset has masks), "index": int}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

#: How far (pixels) a box may stick out of its image before it counts as an error; real
#: annotations (CUB, ILSVRC) are rounded and sometimes end one pixel past the border.
BOX_TOLERANCE = 1.0


class DataError(ValueError):
    """A dataset on disk is missing, malformed or inconsistent.

    The message names the file (absolute path) or value at fault and says what to do.
    """


def abspath(path: str | os.PathLike[str]) -> Path:
    """`path` as an absolute, user-expanded `Path` (for error messages and lookups)."""
    return Path(path).expanduser().absolute()


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open `path`, decode it fully and return an RGB `PIL.Image`.

    Raises `DataError` naming the absolute path when the file is missing, truncated, corrupt or
    not an image (decoding is forced with `Image.load()`, so truncation shows up here and not
    later inside a DataLoader worker). 16-bit images are reduced to 8 bit first (`to_8bit`).
    """
    return _decode(path, "RGB", "image", "image",
                   "re-download the dataset or fix its file list")


def wrap_index(index: int, length: int, what: str) -> int:
    """`index` of a dataset of `length` items as a non-negative position (negative counts
    from the end, like a list); out of range -> `IndexError` naming `what`."""
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for {length} {what}")
    return index % length


def _decode(path: str | os.PathLike[str], mode: str, name: str, kind: str,
            missing_fix: str) -> Image.Image:
    """Open `path`, decode it fully (`Image.load()`) and convert it to `mode`; a missing file
    is "<name> <path> does not exist: <missing_fix>", an undecodable one "<path> is not a
    readable <kind> ...", both `DataError`s naming the absolute path."""
    p = abspath(path)
    if not p.is_file():
        raise DataError(f"{name} {p} does not exist: {missing_fix}")
    try:
        with Image.open(p) as img:
            img.load()
            return to_8bit(img).convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{p} is not a readable {kind} (corrupt or truncated?): re-download/replace it "
            f"({type(exc).__name__}: {exc})"
        ) from exc


#: PIL modes of integer images wider than 8 bit: "I;16*" (16-bit grey, e.g. `Image.fromarray`
#: of a uint16 array) and "I" (32-bit signed; what most Pillow versions open a 16-bit grey PNG,
#: TIFF or PGM as). PIL's own `convert("RGB"/"L")` clips these at 255, so a 16-bit image
#: decodes to almost pure white; `to_8bit` scales them first.
WIDE_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def to_8bit(img: Image.Image) -> Image.Image:
    """`img` with a 16-bit integer mode (`WIDE_INT_MODES`) scaled to an 8-bit "L" image.

    The 16-bit value v becomes `v >> 8` (its high byte: 0 -> 0, 32768 -> 128, 65535 -> 255),
    the same reduction Pillow applies when it opens a 16-bit RGB PNG as "RGB". Mode "I" holds
    32-bit integers but in practice 16-bit data (Pillow opens 16-bit grey PNG/TIFF/PGM files as
    "I"), so it is read in the same 0..65535 range: negative values become 0 and values above
    65535 become 255. Every other mode (all 8-bit images) is returned unchanged, so 8-bit
    JPEG/PNG files decode exactly as before.
    """
    if img.mode not in WIDE_INT_MODES:
        return img
    values = np.asarray(img).astype(np.int64)
    return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))


def load_mask(path: str | os.PathLike[str], threshold: int = 128) -> Image.Image:
    """Load a segmentation mask as a binary `PIL.Image` of mode "L" with values 0/255.

    A pixel is foreground when its grey value is `>= threshold` (128 for CUB's soft
    segmentations and our synthetic masks; 1 for OpenImages' binary masks). A 16-bit mask is
    first reduced to 8 bit (`to_8bit`: v >> 8), so the threshold is always on the 0..255 scale.
    """
    grey = np.asarray(_decode(path, "L", "mask", "mask image",
                              "re-download the masks or remove the mask folder"))
    return Image.fromarray(((grey >= threshold) * 255).astype(np.uint8))


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box `(x0, y0, x1, y1)` in whole pixels (x1/y1 exclusive) of a boolean HxW mask;
    empty -> zeros."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def check_boxes_in_image(boxes: torch.Tensor, width: int, height: int, where: str) -> torch.Tensor:
    """Check that every box of `boxes` (Kx4) lies inside a `width` x `height` image.

    Boxes may exceed the border by `BOX_TOLERANCE` pixels (then they are clipped); anything
    further out raises `DataError` naming `where` (the annotation file and line).
    """
    if boxes.numel():
        x0, y0, x1, y1 = boxes.unbind(dim=1)
        outside = (
            (x0 < -BOX_TOLERANCE)
            | (y0 < -BOX_TOLERANCE)
            | (x1 > width + BOX_TOLERANCE)
            | (y1 > height + BOX_TOLERANCE)
        )
        if bool(outside.any()):
            bad = boxes[outside][0].tolist()
            raise DataError(
                f"{where}: box (x0, y0, x1, y1) = {tuple(round(v, 2) for v in bad)} lies outside "
                f"the {width}x{height} image: fix or remove this annotation"
            )
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def check_num_classes(dataset_classes: int, model_classes: int, where: str) -> None:
    """Raise `DataError` when a dataset's class count differs from the model's/config's."""
    if int(dataset_classes) != int(model_classes):
        raise DataError(
            f"{where}: the dataset has {dataset_classes} classes but {model_classes} were "
            f"requested: set num_classes={dataset_classes} (or point to the dataset with "
            f"{model_classes} classes)"
        )


def collate_wsol(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: stack `image`, `label`, `index` (and `mask` if every item has one).

    `boxes` stays a list of `Kx4` float tensors (K differs between images). Images of different
    sizes raise `DataError` (use a `WSOLTransform` with a fixed `crop_size`).
    """
    if len(items) == 0:
        raise DataError("collate_wsol got an empty list of samples: use a non-empty batch")
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) != 1:
        raise DataError(
            f"collate_wsol: images in one batch have different shapes {sorted(shapes)}: pass a "
            "WSOLTransform with a fixed crop_size to the dataset"
        )
    batch: dict[str, Any] = {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.as_tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.as_tensor([int(item["index"]) for item in items], dtype=torch.long),
        "boxes": [torch.as_tensor(item["boxes"], dtype=torch.float32) for item in items],
    }
    if all(item.get("mask") is not None for item in items):
        batch["mask"] = torch.stack([item["mask"] for item in items])
    return batch


def read_table(
    path: Path,
    ncols: int | tuple[int, ...],
    *,
    sep: str | None = None,
    fix: str,
    maxsplit: int = -1,
) -> list[tuple[int, list[str]]]:
    """Read a whitespace- (`sep=None`) or `sep`-separated text table.

    Returns `(line_number, fields)` for every non-blank line (line numbers start at 1). A line
    whose column count is not in `ncols` raises `DataError` naming the file and line; `fix`
    ends every message (what the user should do), e.g. "re-extract CUB_200_2011.tgz".

    Leading and trailing whitespace of every line and every field is dropped (trailing spaces,
    tabs, Windows CRLF line ends, a UTF-8 byte-order mark), so the last field of a
    `maxsplit`-limited line, e.g. a CUB image path, never ends in blanks; whitespace inside a
    field (a path with a space, with `maxsplit=1`) is kept.
    """
    allowed = (ncols,) if isinstance(ncols, int) else ncols
    if not path.is_file():
        raise DataError(f"{path} is missing: {fix}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read ({exc}): {fix}") from exc
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if sep is None:
            fields = line.split(None, maxsplit)
        else:
            fields = [f.strip() for f in line.split(sep, maxsplit)]
        if len(fields) not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise DataError(
                f"{path}, line {number}: expected {want} columns, found {len(fields)} "
                f"({line!r}): {fix}"
            )
        rows.append((number, fields))
    return rows


def parse_number(text: str, kind: type, path: Path, line: int, what: str, fix: str) -> Any:
    """`kind(text)` (int or float), or `DataError` naming `path`, `line` and `what`."""
    try:
        if kind is int:
            return int(text)
        value = float(text)
        if not np.isfinite(value):
            raise ValueError(text)
        return value
    except ValueError:
        raise DataError(
            f"{path}, line {line}: {what} {text!r} is not a valid {kind.__name__}: {fix}"
        ) from None
