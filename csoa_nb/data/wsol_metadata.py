"""Reader for the clovaai/wsolevaluation metadata format (CUB, ILSVRC, OpenImages).

`metadata_dir/<split>/` holds::

    image_ids.txt      "<image_id>"                      one relative image path per line
    class_labels.txt   "<image_id>,<label>"              0-based labels
    image_sizes.txt    "<image_id>,<w>,<h>"              optional (absent for OpenImages)
    localization.txt   "<image_id>,<x0>,<y0>,<x1>,<y1>"  boxes, several lines per image, or
                       "<image_id>,<mask_path>,<ignore_path>"  masks (OpenImages), several
                       lines per image; the ignore path only on the first

`localization.txt` may be absent or empty for the train split (WSOL trains from labels; each
item then gets the whole image as its box); val/test need it. Every image id appears once in
image_ids.txt, class_labels.txt and image_sizes.txt (a repeated id is an error naming both
lines; in image_ids.txt two spellings of one file, `a/x.jpg` and `a/./x.jpg`, are a repeat).
Image ids and mask paths must lie inside `root` / `mask_root` (no absolute paths, no `..` that
leaves it: `common.inside`). The data set needs at least 2 classes (`common.check_min_classes`).

Images live at `root/<image_id>`, masks at `mask_root/<mask_path>` (`mask_root` defaults to
`root`). Box format: one box per line, x1/y1 taken as exclusive. Mask format: the item's mask
is the union of its instance masks (foreground: grey value >= 1, as in wsolevaluation), and
one tight box per non-empty instance mask. The ignore mask of OpenImages is not loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from csoa_nb.data.common import (
    DataError,
    ListedFiles,
    abspath,
    check_boxes_in_image,
    check_min_classes,
    inside,
    load_image,
    load_mask,
    mask_box,
    parse_number,
    read_table,
    wrap_index,
)
from csoa_nb.data.transforms import WSOLTransform, make_sample

SPLITS = ("train", "val", "test")
_FIX = "re-download the metadata folder of clovaai/wsolevaluation (or regenerate it)"


class WSOLMetadata(Dataset):
    """A dataset described by wsolevaluation metadata files.

    Args:
        root: the image root; images are `root/<image_id>`.
        metadata_dir: the folder holding `train/`, `val/`, `test/` (e.g. `metadata/CUB`).
        split: "train", "val" or "test".
        transform: a `WSOLTransform`; None returns original size and original-pixel boxes.
        num_classes: the class count; labels must lie in `0..num_classes-1`. When None it is
            inferred as `max(label) + 1`.
        require_localization: whether the split must have a non-empty `localization.txt`.
            The default (None) requires it for "val"/"test" (evaluation needs boxes or masks)
            and not for "train" (WSOL trains from class labels only; the published ILSVRC and
            OpenImages train splits ship an empty file). Every item of a split without
            localization gets the whole image `(0, 0, W, H)` as its one box (the sample
            contract keeps K >= 1, as ILSVRC training images without an XML do).
        mask_root: where the mask paths of a mask-format `localization.txt` are resolved
            (default: `root`).

    Attributes: `root`, `split`, `num_classes`, `class_names`, `has_masks`, `labels`,
    `image_ids`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        metadata_dir: str | os.PathLike[str],
        split: str,
        transform: WSOLTransform | None = None,
        num_classes: int | None = None,
        *,
        require_localization: bool | None = None,
        mask_root: str | os.PathLike[str] | None = None,
    ):
        self.root = abspath(root)
        self.mask_root = abspath(mask_root) if mask_root is not None else self.root
        if split not in SPLITS:
            raise DataError(f"metadata split {split!r} is not one of {SPLITS}: pick one of them")
        if not self.root.is_dir():
            raise DataError(
                f"image root {self.root} does not exist: pass the folder the image ids in "
                "image_ids.txt are relative to"
            )
        meta = abspath(metadata_dir) / split
        if not meta.is_dir():
            raise DataError(
                f"metadata folder {meta} does not exist: pass the folder that holds "
                f"train/, val/ and test/ (e.g. wsolevaluation/metadata/CUB), or {_FIX}"
            )
        self.split = split
        self.transform = transform
        self.metadata_dir = meta

        ids_file = meta / "image_ids.txt"
        # an id outside the image root, or naming a file already listed, is refused unopened
        listed = ListedFiles(ids_file, self.root, "image id", _FIX)
        self.image_ids = []
        for number, (image_id,) in read_table(ids_file, 1, sep="\n", fix=_FIX):
            listed.add(image_id, number)
            self.image_ids.append(image_id)
        if not self.image_ids:
            raise DataError(f"{ids_file} lists no images: {_FIX}")
        self._check_other_splits(abspath(metadata_dir), listed)
        known = set(self.image_ids)

        labels_file = meta / "class_labels.txt"
        label_of: dict[str, tuple[int, int]] = {}  # image id -> (label, line)
        for number, (image_id, text) in read_table(labels_file, 2, sep=",", fix=_FIX):
            label = parse_number(text, int, labels_file, number, "label", _FIX)
            if image_id in label_of:
                first, first_line = label_of[image_id]
                detail = f" (label {first} there, label {label} here)"
                _reject_repeat(labels_file, number, image_id, first_line, detail)
            if label < 0:
                raise DataError(f"{labels_file}, line {number}: negative label: {_FIX}")
            label_of[image_id] = (label, number)
        missing = [i for i in self.image_ids if i not in label_of]
        if missing:
            raise DataError(f"{labels_file} has no label for image {missing[0]!r}: {_FIX}")
        self.labels = [label_of[i][0] for i in self.image_ids]
        inferred = max(self.labels) + 1
        if num_classes is None:
            self.num_classes = inferred
            check_min_classes(
                inferred,
                f"{labels_file} gives {inferred} class (its largest label is {inferred - 1}; "
                "pass num_classes if the data set has more)",
                _FIX,
            )
        else:
            check_min_classes(num_classes, f"WSOLMetadata({meta}): num_classes={num_classes}", _FIX)
            if inferred > num_classes:
                bad = self.image_ids[self.labels.index(max(self.labels))]
                raise DataError(
                    f"{labels_file}: image {bad!r} has label {inferred - 1}, outside "
                    f"0..{num_classes - 1}: set num_classes={inferred} or fix the labels"
                )
            self.num_classes = int(num_classes)
        self.class_names = [str(i) for i in range(self.num_classes)]

        self._sizes: dict[str, tuple[int, int, int]] = {}
        sizes_file = meta / "image_sizes.txt"
        if sizes_file.is_file():
            for number, (image_id, w, h) in read_table(sizes_file, 3, sep=",", fix=_FIX):
                if image_id in self._sizes:
                    _reject_repeat(sizes_file, number, image_id, self._sizes[image_id][2])
                self._sizes[image_id] = (
                    parse_number(w, int, sizes_file, number, "width", _FIX),
                    parse_number(h, int, sizes_file, number, "height", _FIX),
                    number,
                )

        loc_file = meta / "localization.txt"
        self.has_masks = False
        self._boxes: dict[str, list[tuple[list[float], int]]] = {}
        self._masks: dict[str, list[Path]] = {}
        if require_localization is None:
            require_localization = split != "train"
        # the published ILSVRC and OpenImages train splits ship an empty localization.txt
        rows = read_table(loc_file, (3, 5), sep=",", fix=_FIX) if loc_file.is_file() else []
        if rows:
            self._read_localization(loc_file, rows, known)
        elif require_localization:
            state = "is empty" if loc_file.is_file() else "is missing"
            raise DataError(
                f"{loc_file} {state}: the {split} split is evaluated and needs the boxes or masks "
                "of its images; add them to that file, one per line, as "
                "'<image_id>,<x0>,<y0>,<x1>,<y1>' or '<image_id>,<mask_path>,<ignore_path>' "
                f"(or {_FIX})"
            )
        self._loc_file = loc_file

        for image_id in self.image_ids:
            path = self.root / image_id
            if not path.is_file():
                raise DataError(f"image {path} (listed in {ids_file}) does not exist: {_FIX}")

    def _read_localization(
        self, loc_file: Path, rows: list[tuple[int, list[str]]], known: set[str]
    ) -> None:
        widths = {len(f) for _, f in rows}
        if len(widths) > 1:
            raise DataError(
                f"{loc_file} mixes box lines (5 columns) and mask lines (3 columns): {_FIX}"
            )
        self.has_masks = widths == {3}
        for number, fields in rows:
            image_id = fields[0]
            if image_id not in known:
                raise DataError(
                    f"{loc_file}, line {number}: image {image_id!r} is not in image_ids.txt: {_FIX}"
                )
            if self.has_masks:
                where = f"{loc_file}, line {number}"
                mask = inside(self.mask_root, fields[1], where, "mask path", _FIX)
                self._masks.setdefault(image_id, []).append(mask)
                continue
            x0, y0, x1, y1 = (
                parse_number(f, float, loc_file, number, "coordinate", _FIX) for f in fields[1:]
            )
            if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0:
                raise DataError(
                    f"{loc_file}, line {number}: box (x0, y0, x1, y1) = ({x0}, {y0}, {x1}, {y1}) "
                    f"needs 0 <= x0 < x1 and 0 <= y0 < y1: {_FIX}"
                )
            if image_id in self._sizes:
                w, h, _ = self._sizes[image_id]
                check_boxes_in_image(
                    torch.tensor([[x0, y0, x1, y1]]), w, h, where=f"{loc_file}, line {number}"
                )
            self._boxes.setdefault(image_id, []).append(([x0, y0, x1, y1], number))
        table = self._masks if self.has_masks else self._boxes
        missing = [i for i in self.image_ids if i not in table]
        if missing:
            raise DataError(f"{loc_file} has no line for image {missing[0]!r}: {_FIX}")
        if self.has_masks:
            for paths in self._masks.values():
                for path in paths:
                    if not path.is_file():
                        raise DataError(
                            f"mask {path} (listed in {loc_file}) does not exist: {_FIX}"
                        )

    def _check_other_splits(self, metadata_dir: Path, listed: ListedFiles) -> None:
        """Refuse an image that another split of the metadata lists too (a train/test leak: the
        same image trained and tested on), naming both files and lines; reads only the other
        splits' image_ids.txt (about 2 us a line)."""
        for other in SPLITS:
            other_ids = metadata_dir / other / "image_ids.txt"
            if other == self.split or not other_ids.is_file():
                continue
            theirs = ListedFiles(other_ids, self.root, "image id", _FIX)
            for number, (image_id,) in read_table(other_ids, 1, sep="\n", fix=_FIX):
                mine = listed.line_of(theirs.add(image_id, number))
                if mine is not None:
                    raise DataError(
                        f"{metadata_dir / self.split / 'image_ids.txt'}, line {mine}, and "
                        f"{other_ids}, line {number}, both list {image_id!r}: a {self.split}/"
                        f"{other} leak, the same image would be trained and tested on; keep "
                        f"each image in one split ({_FIX})")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = wrap_index(index, len(self), "images")
        image_id = self.image_ids[index]
        image = load_image(self.root / image_id)
        if image_id in self._sizes:
            w, h, number = self._sizes[image_id]
            if (w, h) != image.size:
                raise DataError(
                    f"{self.metadata_dir / 'image_sizes.txt'}, line {number}: says {w}x{h} but "
                    f"{self.root / image_id} is {image.size[0]}x{image.size[1]}: the metadata "
                    "belongs to other images; fix root or the metadata"
                )
        mask = None
        if self.has_masks:
            union = np.zeros((image.size[1], image.size[0]), dtype=bool)
            box_list = []
            for path in self._masks[image_id]:
                instance = np.asarray(load_mask(path, threshold=1)) > 0
                if instance.shape != union.shape:
                    raise DataError(
                        f"mask {path} is {instance.shape[1]}x{instance.shape[0]} but its image "
                        f"is {image.size[0]}x{image.size[1]}: replace the mask"
                    )
                union |= instance
                if instance.any():
                    box_list.append(mask_box(instance))
            boxes = torch.tensor(box_list or [(0.0, 0.0, 0.0, 0.0)], dtype=torch.float32)
            mask = Image.fromarray((union * 255).astype(np.uint8))
        elif image_id in self._boxes:
            boxes = torch.tensor([b for b, _ in self._boxes[image_id]], dtype=torch.float32)
            where = f"{self._loc_file}, line {self._boxes[image_id][0][1]}"
            boxes = check_boxes_in_image(boxes, *image.size, where=where)
        else:
            boxes = torch.tensor([[0.0, 0.0, float(image.size[0]), float(image.size[1])]])
        return make_sample(self.transform, image, boxes, mask, self.labels[index], index)

    def __repr__(self) -> str:
        return (
            f"WSOLMetadata(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"num_classes={self.num_classes}, has_masks={self.has_masks})"
        )


def _reject_repeat(
    path: Path, number: int, image_id: str, first_line: int | None, detail: str = ""
) -> None:
    """`DataError` naming `path` and both lines when `image_id`, read on line `number`, was
    already read on `first_line` (None: first time, nothing to do). A repeated id is rejected
    even when both lines agree, as the CUB reader does: which line is right is the user's call.
    """
    if first_line is not None:
        raise DataError(
            f"{path}, line {number}: image id {image_id!r} already appeared on line "
            f"{first_line}{detail}: keep one line per image ({_FIX})"
        )
