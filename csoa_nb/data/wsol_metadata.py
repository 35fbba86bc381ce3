"""Reader for the clovaai/wsolevaluation metadata format (CUB, ILSVRC, OpenImages).

`metadata_dir/<split>/` holds::

    image_ids.txt      "<image_id>"                      one relative image path per line
    class_labels.txt   "<image_id>,<label>"              0-based labels
    image_sizes.txt    "<image_id>,<w>,<h>"              optional (absent for OpenImages)
    localization.txt   "<image_id>,<x0>,<y0>,<x1>,<y1>"  boxes, several lines per image, or
                       "<image_id>,<mask_path>,<ignore_path>"  masks (OpenImages), several
                       lines per image; the ignore path only on the first

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
    abspath,
    check_boxes_in_image,
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
        require_localization: when False, a split without `localization.txt` (OpenImages'
            train split) is accepted and every box is the whole image.
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
        require_localization: bool = True,
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
        self.image_ids = [f[0] for _, f in read_table(ids_file, 1, sep="\n", fix=_FIX)]
        if not self.image_ids:
            raise DataError(f"{ids_file} lists no images: {_FIX}")
        if len(set(self.image_ids)) != len(self.image_ids):
            raise DataError(f"{ids_file} lists an image id twice: {_FIX}")
        known = set(self.image_ids)

        labels_file = meta / "class_labels.txt"
        label_of: dict[str, int] = {}
        for number, (image_id, text) in read_table(labels_file, 2, sep=",", fix=_FIX):
            label_of[image_id] = parse_number(text, int, labels_file, number, "label", _FIX)
            if label_of[image_id] < 0:
                raise DataError(f"{labels_file}, line {number}: negative label: {_FIX}")
        missing = [i for i in self.image_ids if i not in label_of]
        if missing:
            raise DataError(f"{labels_file} has no label for image {missing[0]!r}: {_FIX}")
        self.labels = [label_of[i] for i in self.image_ids]
        inferred = max(self.labels) + 1
        if num_classes is None:
            self.num_classes = inferred
        else:
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
                self._sizes[image_id] = (
                    parse_number(w, int, sizes_file, number, "width", _FIX),
                    parse_number(h, int, sizes_file, number, "height", _FIX),
                    number,
                )

        loc_file = meta / "localization.txt"
        self.has_masks = False
        self._boxes: dict[str, list[tuple[list[float], int]]] = {}
        self._masks: dict[str, list[Path]] = {}
        if not loc_file.is_file():
            if require_localization:
                raise DataError(
                    f"{loc_file} is missing: {_FIX}; for a training split without "
                    "localization pass require_localization=False (boxes become the whole image)"
                )
        else:
            self._read_localization(loc_file, known)
        self._loc_file = loc_file

        for image_id in self.image_ids:
            path = self.root / image_id
            if not path.is_file():
                raise DataError(f"image {path} (listed in {ids_file}) does not exist: {_FIX}")

    def _read_localization(self, loc_file: Path, known: set[str]) -> None:
        rows = read_table(loc_file, (3, 5), sep=",", fix=_FIX)
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
                self._masks.setdefault(image_id, []).append(self.mask_root / fields[1])
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
