"""Reader for CUB-200-2011 in its official on-disk layout (also written by `synthetic`).

Layout (the folder that `CUB_200_2011.tgz` extracts to)::

    images.txt              "<image_id> <relative/path.jpg>"
    image_class_labels.txt  "<image_id> <label>"          labels 1-based
    train_test_split.txt    "<image_id> <is_train>"       1 = train, 0 = test
    bounding_boxes.txt      "<image_id> <x> <y> <w> <h>"  floats, pixels
    classes.txt             "<class_id> <name>"
    images/<relative/path.jpg>
    masks/<relative/path.png>          optional, our synthetic benchmark
    segmentations/<relative/path.png>  optional, the official CUB segmentation release

A box `(x, y, w, h)` becomes `(x, y, x + w, y + h)` (x1/y1 exclusive, DESIGN.md). A mask pixel is
foreground when its grey value is >= 128. Every path of images.txt must lie inside `images/` and
name its image once (`common.ListedFiles`); classes.txt must list at least 2 classes
(`common.check_min_classes`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from csoa_nb.data.common import (
    DataError,
    ListedFiles,
    abspath,
    check_boxes_in_image,
    check_min_classes,
    check_num_classes,
    load_image,
    load_mask,
    parse_number,
    read_table,
    wrap_index,
)
from csoa_nb.data.transforms import WSOLTransform, make_sample

SPLITS = ("train", "test")
CUB_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)
_FIX = "re-extract CUB_200_2011.tgz (or regenerate the synthetic dataset)"


class CUB200(Dataset):
    """CUB-200-2011 (or a dataset in the same layout) for WSOL.

    Args:
        root: the folder that contains `images.txt` (e.g. `.../CUB_200_2011`).
        split: "train" or "test" (from `train_test_split.txt`).
        transform: a `WSOLTransform`; None returns the image at its original size (normalised)
            with boxes in original pixels.
        num_classes: if given, must equal the number of lines of `classes.txt`.

    Attributes: `root`, `split`, `num_classes`, `class_names`, `has_masks`, `mask_dir`,
    `labels` (0-based label of every item, for samplers), `image_paths`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        transform: WSOLTransform | None = None,
        num_classes: int | None = None,
    ):
        self.root = abspath(root)
        if not self.root.is_dir():
            raise DataError(
                f"CUB root {self.root} does not exist: download CUB_200_2011.tgz from the "
                "Caltech-UCSD Birds page, extract it, and pass the folder that contains "
                "images.txt"
            )
        if split not in SPLITS:
            raise DataError(f"CUB split {split!r} is not one of {SPLITS}: pick one of them")
        if not (self.root / "images.txt").is_file():
            nested = self.root / "CUB_200_2011" / "images.txt"
            hint = f" (did you mean {nested.parent}?)" if nested.is_file() else ""
            raise DataError(
                f"CUB file {self.root / 'images.txt'} is missing{hint}: pass the folder that "
                f"contains images.txt, or {_FIX}"
            )
        self.split = split
        self.transform = transform

        classes = self._classes()
        self.class_names = [name for _, name in classes]
        self.num_classes = len(self.class_names)
        check_min_classes(
            self.num_classes, f"{self.root / 'classes.txt'} lists {self.num_classes} class", _FIX
        )
        if num_classes is not None:
            check_num_classes(self.num_classes, num_classes, where=f"CUB200({self.root})")

        paths = self._id_table("images.txt", 2, str)
        labels = self._id_table("image_class_labels.txt", 2, int)
        is_train = self._id_table("train_test_split.txt", 2, int)
        boxes = self._id_table("bounding_boxes.txt", 5, float)
        self._check_ids(paths, labels, is_train, boxes)

        self.mask_dir: Path | None = None
        for name in ("masks", "segmentations"):
            if (self.root / name).is_dir():
                self.mask_dir = self.root / name
                break
        self.has_masks = self.mask_dir is not None

        want = 1 if split == "train" else 0
        self.image_paths: list[Path] = []
        self.labels: list[int] = []
        self._boxes: list[tuple[float, float, float, float]] = []
        self._box_where: list[str] = []
        self._mask_paths: list[Path] = []
        labels_file = self.root / "image_class_labels.txt"
        split_file = self.root / "train_test_split.txt"
        boxes_file = self.root / "bounding_boxes.txt"
        # every line, of both splits: a path outside images/ or an image listed twice (a
        # train/test leak when one line is a training and the other a test image) is refused
        listed = ListedFiles(self.root / "images.txt", self.root / "images", "image path", _FIX)
        for image_id, (line, relpath) in paths.items():
            flag_line, flag = is_train[image_id]
            if flag not in (0, 1):
                raise DataError(
                    f"{split_file}, line {flag_line}: is_train must be 1 or 0, got {flag}: {_FIX}"
                )
            label_line, label = labels[image_id]
            if not 1 <= label <= self.num_classes:
                raise DataError(
                    f"{labels_file}, line {label_line}: label {label} is outside 1..."
                    f"{self.num_classes} (classes.txt has {self.num_classes} lines): {_FIX}"
                )
            box_line, (x, y, w, h) = boxes[image_id]
            if w <= 0 or h <= 0 or x < 0 or y < 0:
                raise DataError(
                    f"{boxes_file}, line {box_line}: box (x, y, w, h) = ({x}, {y}, {w}, {h}) "
                    f"needs x, y >= 0 and w, h > 0: {_FIX}"
                )
            listed.add(relpath, line, SPLITS[1 - flag])
            if flag != want:
                continue
            image_path = self.root / "images" / relpath
            if not image_path.is_file():
                raise DataError(
                    f"image {image_path} (images.txt, line {line}) does not exist: {_FIX}"
                )
            self.image_paths.append(image_path)
            self.labels.append(label - 1)
            self._boxes.append((x, y, x + w, y + h))
            self._box_where.append(f"{boxes_file}, line {box_line}")
            if self.mask_dir is not None:
                mask_path = (self.mask_dir / relpath).with_suffix(".png")
                if not mask_path.is_file():
                    raise DataError(
                        f"mask {mask_path} of image {image_path} does not exist: restore it, or "
                        f"move {self.mask_dir} away to use the dataset without masks"
                    )
                self._mask_paths.append(mask_path)
        if not self.image_paths:
            raise DataError(
                f"{split_file} lists no {split} images: check the is_train column ({_FIX})"
            )

    # -- parsing helpers ---------------------------------------------------------------------
    def _classes(self) -> list[tuple[int, str]]:
        path = self.root / "classes.txt"
        rows = read_table(path, 2, fix=_FIX, maxsplit=1)
        out: list[tuple[int, str]] = []
        for number, (cid, name) in rows:
            class_id = parse_number(cid, int, path, number, "class id", _FIX)
            if class_id != len(out) + 1:
                raise DataError(
                    f"{path}, line {number}: class ids must run 1, 2, 3, ... in order; "
                    f"expected {len(out) + 1}, found {class_id}: {_FIX}"
                )
            out.append((class_id, name))
        if not out:
            raise DataError(f"{path} lists no classes: {_FIX}")
        return out

    def _id_table(self, name: str, ncols: int, kind: type) -> dict[int, tuple[int, Any]]:
        """`{image_id: (line_number, value)}`; value is a str/int or a tuple of floats."""
        path = self.root / name
        rows = read_table(path, ncols, fix=_FIX, maxsplit=1 if kind is str else -1)
        table: dict[int, tuple[int, Any]] = {}
        for number, fields in rows:
            image_id = parse_number(fields[0], int, path, number, "image id", _FIX)
            if image_id in table:
                raise DataError(
                    f"{path}, line {number}: image id {image_id} already appeared on line "
                    f"{table[image_id][0]}: {_FIX}"
                )
            if kind is str:
                value: Any = fields[1]
            elif ncols == 2:
                value = parse_number(fields[1], kind, path, number, "value", _FIX)
            else:
                value = tuple(
                    parse_number(f, kind, path, number, "value", _FIX) for f in fields[1:]
                )
            table[image_id] = (number, value)
        return table

    def _check_ids(self, paths: dict, *others: dict) -> None:
        names = CUB_FILES[1:4]
        for name, table in zip(names, others, strict=True):
            missing = paths.keys() - table.keys()
            extra = table.keys() - paths.keys()
            if missing:
                image_id = min(missing)
                raise DataError(
                    f"{self.root / name} has no line for image id {image_id} (images.txt, line "
                    f"{paths[image_id][0]}; {len(missing)} ids missing in all): {_FIX}"
                )
            if extra:
                image_id = min(extra)
                raise DataError(
                    f"{self.root / name}, line {table[image_id][0]}: image id {image_id} is not "
                    f"in images.txt: {_FIX}"
                )

    # -- Dataset -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = wrap_index(index, len(self), f"CUB {self.split} images")
        image, boxes, mask = self.load_raw(index)
        return make_sample(self.transform, image, boxes, mask, self.labels[index], index)

    def load_raw(self, index: int) -> tuple[Image.Image, torch.Tensor, Image.Image | None]:
        """Item `index` before the transform: decoded image, boxes in its pixels, mask."""
        image = load_image(self.image_paths[index])
        boxes = torch.tensor([self._boxes[index]], dtype=torch.float32)
        boxes = check_boxes_in_image(boxes, *image.size, where=self._box_where[index])
        mask = None
        if self.has_masks:
            mask = load_mask(self._mask_paths[index], threshold=128)
            if mask.size != image.size:
                raise DataError(
                    f"mask {self._mask_paths[index]} is {mask.size[0]}x{mask.size[1]} but its "
                    f"image is {image.size[0]}x{image.size[1]}: replace the mask"
                )
        return image, boxes, mask

    def __repr__(self) -> str:
        return (
            f"CUB200(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"num_classes={self.num_classes}, has_masks={self.has_masks})"
        )
