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
    """Fully decoded RGB `PIL.Image` of `path` (so truncation shows here, not in a DataLoader
    worker); 16-bit and float images go to 8 bit (`to_8bit`). Raises `DataError` naming the
    absolute path when the file is missing, truncated, corrupt or not an image."""
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
            return to_8bit(img, where=f"{name} {p}").convert(mode)
    except DataError:
        raise  # to_8bit's own message (a float image out of range) says what to do
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
#: PIL's mode of 32-bit float images (a grey float TIFF). PIL's own `convert` truncates its
#: values to integers, so an image in [0, 1] decodes to black; `to_8bit` scales it first.
FLOAT_MODE = "F"


def to_8bit(img: Image.Image, where: str = "image") -> Image.Image:
    """`img` with a 16-bit integer mode (`WIDE_INT_MODES`) or a float mode (`FLOAT_MODE`)
    scaled to an 8-bit "L" image.

    The 16-bit value v becomes `v >> 8` (its high byte: 0 -> 0, 32768 -> 128, 65535 -> 255),
    the same reduction Pillow applies when it opens a 16-bit RGB PNG as "RGB". Mode "I" holds
    32-bit integers but in practice 16-bit data (Pillow opens 16-bit grey PNG/TIFF/PGM files as
    "I"), so it is read in the same 0..65535 range: negative values become 0 and values above
    65535 become 255.

    A float image is assumed to hold intensities in [0, 1] (the usual convention of float
    image data): v becomes `round(v * 255)` (0.5 -> 128). A float image with a value outside
    [0, 1] (e.g. 0..255 stored as float) or a NaN/infinite value is ambiguous: `DataError`
    naming `where` and the range found, saying how to convert it. Every other mode (all 8-bit
    images) is returned unchanged, so 8-bit JPEG/PNG files decode exactly as before.
    """
    if img.mode == FLOAT_MODE:
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(
                f"{where} is a 32-bit float image with NaN or infinite values: replace them, or "
                "save the image as 8-bit (uint8) instead"
            )
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{where} is a 32-bit float image with values in [{low:g}, {high:g}], but float "
                "images are read as intensities in [0, 1]: rescale it to [0, 1], or save it as "
                "an 8-bit (uint8) image"
            )
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8))
    if img.mode not in WIDE_INT_MODES:
        return img
    values = np.asarray(img).astype(np.int64)
    return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))


def load_mask(path: str | os.PathLike[str], threshold: int = 128) -> Image.Image:
    """Binary mode-"L" `PIL.Image` (0/255) of a mask: foreground where grey ``>= threshold`` on the
    0..255 scale after `to_8bit` (128: CUB's soft masks, synthetic; 1: OpenImages' binary masks)."""
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


#: The fewest classes a data set may have: with one class the classifier has nothing to learn
#: (its loss is 0 and its classification error 0 % from the first step). The synthetic
#: benchmark refuses `num_classes` < 2 alike (`csoa_nb.data.synthetic.dataset_spec`).
MIN_CLASSES = 2


def check_min_classes(num_classes: int, source: str, fix: str) -> None:
    """`DataError` when a data set has fewer than `MIN_CLASSES` classes.

    `source` says where the count comes from and is the start of the message, e.g.
    "<path>/classes.txt lists 1 class"; `fix` ends it.
    """
    if int(num_classes) < MIN_CLASSES:
        raise DataError(
            f"{source}: WSOL needs at least {MIN_CLASSES} classes (with one class the classifier "
            "has nothing to learn: its loss is 0 and its classification error 0 % from the first "
            f"step; the synthetic benchmark refuses num_classes < {MIN_CLASSES} alike): use a data "
            f"set of at least {MIN_CLASSES} classes ({fix})"
        )


def _escape(top: str, relpath: str) -> tuple[str, str]:
    """`(normpath(top/relpath), why it leaves top or "")` for a normalised absolute `top`."""
    if os.path.isabs(relpath):
        return relpath, "an absolute path"
    joined = os.path.normpath(os.path.join(top, relpath))
    if joined != top and not joined.startswith(top.rstrip(os.sep) + os.sep):
        return joined, "its '..' steps leave it"
    if ".." in relpath and ".." in Path(relpath).parts:
        real_top = os.path.realpath(top)
        real = os.path.realpath(os.path.join(top, relpath))  # links first, then the '..'
        if real != real_top and not real.startswith(real_top.rstrip(os.sep) + os.sep):
            return joined, "its '..' steps leave it through a link"
    return joined, ""


def _outside_error(
    where: str, what: str, relpath: str, base: Path, why: str, fix: str
) -> DataError:
    return DataError(
        f"{where}: {what} {relpath!r} lies outside {base} ({why}): list paths relative to that "
        f"folder and inside it ({fix})"
    )


def inside(base: Path, relpath: str, where: str, what: str, fix: str) -> Path:
    """`base / relpath` (not normalised) for a path read from a list file; `DataError` (`where`,
    `what` ... `fix`) when its text (`os.path.normpath`) leaves `base` (absolute or `..` steps), or
    a `..` path leaves it once links are resolved. Nothing is opened, so a list cannot name
    `/etc/passwd` whatever exists there; symbolic links inside `base` stay allowed."""
    _, why = _escape(os.path.normpath(base), relpath)
    if why:
        raise _outside_error(where, what, relpath, base, why, fix)
    return base / relpath


class ListedFiles:
    """The files named by the lines of one list file, each checked once as it is read.

    `add` refuses (`DataError`) a path outside `base` (`inside`) and a file listed twice,
    however spelled (`a/x.jpg`, `./a//x.jpg`, `a/../a/x.jpg`: one normalised path), naming both
    lines; when the two lines belong to different groups (a training and a test image) the
    message calls it a leak. The readers of CUB (`images.txt`) and of wsolevaluation metadata
    (`image_ids.txt`) share it. About 2 us a line (ILSVRC's 1.28 M training ids: under 3 s).
    """

    def __init__(self, listing: Path, base: Path, what: str, fix: str):
        self.listing, self.base, self.what, self.fix = listing, base, what, fix
        self._top = os.path.normpath(base)
        self._first: dict[str, tuple[int, str, str]] = {}  # normalised path -> line, text, group

    def line_of(self, key: str) -> int | None:
        """The line that listed the file of normalised path `key` (`add`'s value), or None."""
        first = self._first.get(key)
        return None if first is None else first[0]

    def add(self, relpath: str, line: int, group: str = "") -> str:
        """`relpath` (read on `line` of the listing; `group` e.g. "train"/"test") normalised and
        made absolute, once it is known to lie inside `base` and to be new."""
        key, why = _escape(self._top, relpath)
        if why:
            where = f"{self.listing}, line {line}"
            raise _outside_error(where, self.what, relpath, self.base, why, self.fix)
        first = self._first.get(key)
        if first is not None:
            first_line, text, first_group = first
            spelled = f" (as {text!r})" if text != relpath else ""
            leak = ""
            if first_group != group:
                leak = (
                    f"; line {first_line} is a {first_group} image and line {line} a {group} "
                    f"image: a {first_group}/{group} leak, the same image would be trained and "
                    "tested on"
                )
            raise DataError(
                f"{self.listing}, line {line}: {self.what} {relpath!r} is already listed on line "
                f"{first_line}{spelled}{leak}: keep one line per image ({self.fix})"
            )
        self._first[key] = (line, relpath, group)
        return key


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
