"""Reader for ILSVRC (ImageNet-1k) localisation data in the usual folder layout.

Layout::

    LOC_synset_mapping.txt     optional: "n01440764 tench, Tinca tinca" per line (class order)
    train/<wnid>/*.JPEG        training images; the label is the folder's wnid
    train_boxes/<wnid>/<stem>.xml   optional training boxes (PASCAL-VOC XML)
    val/*.JPEG                 validation images (flat)
    bbox_val/<stem>.xml        validation boxes, the ILSVRC2012_bbox_val_v3 release
                               (the XML may also sit next to its image in val/)

Class order: `LOC_synset_mapping.txt` when present, else the sorted folder names of `train/`.
A training image without an XML gets the whole image as its box (WSOL never trains on boxes;
this keeps the sample contract K >= 1). Validation label = the class of the first `<object>`;
all objects' boxes are kept. XML coordinates are used as given: `(xmin, ymin, xmax, ymax)`
with `xmax`/`ymax` taken as the exclusive end, as in the common WSOL code bases. The class list
must hold at least 2 classes (`common.check_min_classes`).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from csoa_nb.data.common import (
    DataError,
    abspath,
    check_boxes_in_image,
    check_min_classes,
    check_num_classes,
    load_image,
    read_table,
    wrap_index,
)
from csoa_nb.data.transforms import WSOLTransform, make_sample

SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_WNID = re.compile(r"^n\d{8}$")
_FIX = "re-extract the ILSVRC2012 images and the bbox release (ILSVRC2012_bbox_val_v3)"


def parse_voc_xml(path: Path, known: dict[str, int]) -> tuple[list[int], list[tuple[float, ...]]]:
    """Labels (indices into `known`) and boxes of every `<object>` of a PASCAL-VOC XML file."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"annotation {path} is not valid XML ({exc}): {_FIX}") from exc
    labels: list[int] = []
    boxes: list[tuple[float, ...]] = []
    for number, obj in enumerate(tree.getroot().iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if name not in known:
            raise DataError(
                f"annotation {path}, object {number}: unknown wnid {name!r} (not in the class "
                f"list of {len(known)} wnids): fix the XML or add the class to "
                "LOC_synset_mapping.txt"
            )
        box_el = obj.find("bndbox")
        try:
            if box_el is None:
                raise ValueError("no <bndbox>")
            coords = tuple(
                float(box_el.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError as exc:
            raise DataError(
                f"annotation {path}, object {number}: <bndbox> needs numeric xmin, ymin, xmax, "
                f"ymax ({exc}): {_FIX}"
            ) from None
        if coords[2] <= coords[0] or coords[3] <= coords[1]:
            raise DataError(
                f"annotation {path}, object {number}: box {coords} has xmax <= xmin or "
                f"ymax <= ymin: {_FIX}"
            )
        labels.append(known[name])
        boxes.append(coords)
    if not labels:
        raise DataError(f"annotation {path} has no <object>: {_FIX}")
    return labels, boxes


class ILSVRCLoc(Dataset):
    """ILSVRC localisation (train: folders of wnids; val: flat images + VOC XML boxes).

    Args:
        root: the folder holding `train/`, `val/`, `bbox_val/` (and `LOC_synset_mapping.txt`).
        split: "train" or "val".
        transform: a `WSOLTransform`; None returns original size and original-pixel boxes.
        num_classes: if given, must equal the number of classes found.

    Attributes: `root`, `split`, `wnids`, `class_names`, `num_classes`, `labels`,
    `image_paths`, `has_masks` (always False).
    """

    has_masks = False

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
                f"ILSVRC root {self.root} does not exist: pass the folder that holds train/, "
                "val/ and bbox_val/ (see the csoa_nb.data.ilsvrc docstring for the layout)"
            )
        if split not in SPLITS:
            raise DataError(f"ILSVRC split {split!r} is not one of {SPLITS}: pick one of them")
        self.split = split
        self.transform = transform
        self.wnids, self.class_names, source = self._classes()
        self.num_classes = len(self.wnids)
        check_min_classes(self.num_classes, source, _FIX)
        if num_classes is not None:
            check_num_classes(self.num_classes, num_classes, where=f"ILSVRCLoc({self.root})")
        self._index = {w: i for i, w in enumerate(self.wnids)}

        self.image_paths: list[Path] = []
        self.labels: list[int] = []
        self._xml: list[Path | None] = []
        self._boxes: list[list[tuple[float, ...]] | None] = []
        if split == "train":
            self._scan_train()
        else:
            self._scan_val()
        if not self.image_paths:
            folder = self.root / split
            raise DataError(f"no images (*.JPEG) found under {folder}: {_FIX}")

    def _classes(self) -> tuple[list[str], list[str], str]:
        """wnids, class names, and where they come from (for messages)."""
        mapping = self.root / "LOC_synset_mapping.txt"
        if mapping.is_file():
            rows = read_table(mapping, (1, 2), fix=f"repair {mapping.name}", maxsplit=1)
            wnids, names = [], []
            for number, fields in rows:
                if not _WNID.match(fields[0]):
                    raise DataError(
                        f"{mapping}, line {number}: {fields[0]!r} is not a wnid like "
                        f"n01440764: repair {mapping.name}"
                    )
                wnids.append(fields[0])
                names.append(fields[1] if len(fields) > 1 else fields[0])
            if len(set(wnids)) != len(wnids):
                raise DataError(f"{mapping} lists a wnid twice: repair it")
            if wnids:
                return wnids, names, f"{mapping} lists {len(wnids)} class"
        train = self.root / "train"
        if not train.is_dir():
            raise DataError(
                f"ILSVRC: neither {mapping} nor {train} exists, so the class list is unknown: "
                "add LOC_synset_mapping.txt (from the ILSVRC devkit / Kaggle LOC release) or the "
                "train/ folders"
            )
        wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not wnids:
            raise DataError(f"{train} has no class folders: {_FIX}")
        return wnids, list(wnids), f"{train} has {len(wnids)} class folder"

    def _scan_train(self) -> None:
        train = self.root / "train"
        if not train.is_dir():
            raise DataError(f"ILSVRC train folder {train} does not exist: {_FIX}")
        for folder in sorted(p for p in train.iterdir() if p.is_dir()):
            if folder.name not in self._index:
                raise DataError(
                    f"{folder}: unknown wnid {folder.name!r} (not in the class list of "
                    f"{self.num_classes} wnids): remove the folder or add it to "
                    "LOC_synset_mapping.txt"
                )
        for wnid in self.wnids:
            folder = train / wnid
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                xml = self.root / "train_boxes" / wnid / f"{path.stem}.xml"
                self.image_paths.append(path)
                self.labels.append(self._index[wnid])
                self._xml.append(xml if xml.is_file() else None)
                self._boxes.append(None)

    def _scan_val(self) -> None:
        val = self.root / "val"
        if not val.is_dir():
            raise DataError(f"ILSVRC val folder {val} does not exist: {_FIX}")
        for path in sorted(val.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            candidates = (self.root / "bbox_val" / f"{path.stem}.xml", path.with_suffix(".xml"))
            xml = next((c for c in candidates if c.is_file()), None)
            if xml is None:
                raise DataError(
                    f"annotation {candidates[0]} of image {path} is missing (also looked for "
                    f"{candidates[1]}): {_FIX}"
                )
            labels, boxes = parse_voc_xml(xml, self._index)
            self.image_paths.append(path)
            self.labels.append(labels[0])
            self._xml.append(xml)
            self._boxes.append(boxes)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = wrap_index(index, len(self), "ILSVRC images")
        image = load_image(self.image_paths[index])
        boxes_list = self._boxes[index]
        xml = self._xml[index]
        if boxes_list is None and xml is not None:
            _, boxes_list = parse_voc_xml(xml, self._index)
        if boxes_list is None:
            boxes = torch.tensor([[0.0, 0.0, float(image.size[0]), float(image.size[1])]])
        else:
            boxes = torch.tensor(boxes_list, dtype=torch.float32)
            boxes = check_boxes_in_image(boxes, *image.size, where=f"annotation {xml}")
        return make_sample(self.transform, image, boxes, None, self.labels[index], index)

    def __repr__(self) -> str:
        return (
            f"ILSVRCLoc(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"num_classes={self.num_classes})"
        )
