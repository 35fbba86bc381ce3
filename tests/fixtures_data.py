"""Builders of tiny datasets in the real on-disk formats (CUB, ILSVRC, wsolevaluation).

All images are 20 x 16 (W x H) JPEGs unless stated; boxes are known exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 20, 16

# CUB fixture: (id, relpath, label 1-based, is_train, (x, y, w, h))
CUB_ROWS = [
    (1, "001.Alpha/alpha_1.jpg", 1, 1, (2.0, 3.0, 10.0, 8.0)),
    (2, "001.Alpha/alpha_2.jpg", 1, 0, (4.0, 2.0, 8.0, 8.0)),
    (3, "002.Beta/beta_1.jpg", 2, 1, (0.0, 0.0, 20.0, 16.0)),
    (4, "002.Beta/beta_2.jpg", 2, 0, (5.5, 1.0, 6.0, 12.0)),
]
CUB_CLASSES = ["001.Alpha", "002.Beta"]


def write_jpeg(path: Path, width: int = W, height: int = H, seed: int = 0) -> None:
    """A random-noise RGB JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def write_rect_mask(path: Path, box: tuple[float, ...], width: int = W, height: int = H) -> None:
    """A 0/255 PNG mask that is 255 inside `box` = (x0, y0, x1, y1) (integers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(path, format="PNG")


def build_cub(root: Path, masks: str | None = None) -> Path:
    """Write the CUB fixture into `root` (masks: None, "masks" or "segmentations")."""
    root.mkdir(parents=True, exist_ok=True)
    for image_id, rel, _, _, (x, y, w, h) in CUB_ROWS:
        write_jpeg(root / "images" / rel, seed=image_id)
        if masks is not None:
            box = (int(x), int(y), int(x + w), int(y + h))
            write_rect_mask((root / masks / rel).with_suffix(".png"), box)
    (root / "images.txt").write_text("".join(f"{r[0]} {r[1]}\n" for r in CUB_ROWS))
    (root / "image_class_labels.txt").write_text("".join(f"{r[0]} {r[2]}\n" for r in CUB_ROWS))
    (root / "train_test_split.txt").write_text("".join(f"{r[0]} {r[3]}\n" for r in CUB_ROWS))
    (root / "bounding_boxes.txt").write_text(
        "".join(f"{r[0]} {r[4][0]} {r[4][1]} {r[4][2]} {r[4][3]}\n" for r in CUB_ROWS)
    )
    (root / "classes.txt").write_text(
        "".join(f"{i + 1} {name}\n" for i, name in enumerate(CUB_CLASSES))
    )
    return root


WNIDS = ["n01440764", "n01443537"]
VOC_TEMPLATE = """<annotation>
  <folder>val</folder>
  <filename>{stem}</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>
"""
OBJECT_TEMPLATE = """  <object>
    <name>{wnid}</name>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>
"""


def voc_xml(stem: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """PASCAL-VOC XML text in the layout of the ILSVRC2012 bbox release."""
    body = "".join(
        OBJECT_TEMPLATE.format(wnid=w, x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for w, b in objects
    )
    return VOC_TEMPLATE.format(stem=stem, w=W, h=H, objects=body)


# ILSVRC val fixture: stem -> objects
ILSVRC_VAL = {
    "ILSVRC2012_val_00000001": [(WNIDS[1], (1, 2, 9, 12))],
    "ILSVRC2012_val_00000002": [(WNIDS[0], (0, 0, 10, 8)), (WNIDS[0], (12, 4, 20, 16))],
}


def build_ilsvrc(root: Path, mapping: bool = True) -> Path:
    """Two classes; train: 2 + 1 images (one with a box XML); val: 2 images with XML."""
    root.mkdir(parents=True, exist_ok=True)
    if mapping:
        (root / "LOC_synset_mapping.txt").write_text(
            f"{WNIDS[0]} tench, Tinca tinca\n{WNIDS[1]} goldfish, Carassius auratus\n"
        )
    write_jpeg(root / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG", seed=1)
    write_jpeg(root / "train" / WNIDS[0] / f"{WNIDS[0]}_2.JPEG", seed=2)
    write_jpeg(root / "train" / WNIDS[1] / f"{WNIDS[1]}_1.JPEG", seed=3)
    xml = root / "train_boxes" / WNIDS[1] / f"{WNIDS[1]}_1.xml"
    xml.parent.mkdir(parents=True)
    xml.write_text(voc_xml(f"{WNIDS[1]}_1", [(WNIDS[1], (3, 4, 15, 14))]))
    (root / "bbox_val").mkdir()
    for i, (stem, objects) in enumerate(ILSVRC_VAL.items()):
        write_jpeg(root / "val" / f"{stem}.JPEG", seed=10 + i)
        (root / "bbox_val" / f"{stem}.xml").write_text(voc_xml(stem, objects))
    return root


# wsolevaluation fixture (box format): image_id -> (label, [boxes])
META_BOXES = {
    "test/a/img1.jpg": (0, [(1, 2, 11, 12)]),
    "test/b/img2.jpg": (2, [(0, 0, 5, 5), (10, 6, 20, 16)]),
}


def build_metadata(root: Path, masks: bool = False) -> tuple[Path, Path]:
    """Images under `root/images`, metadata under `root/metadata/test`; returns both roots.

    masks=False: box-format localization.txt with image_sizes.txt. masks=True: OpenImages-style
    "image_id,mask_path,ignore_path" lines, rectangle masks, no image_sizes.txt.
    """
    images, meta = root / "images", root / "metadata"
    split = meta / "test"
    split.mkdir(parents=True)
    ids, labels, sizes, loc = [], [], [], []
    for i, (image_id, (label, boxes)) in enumerate(META_BOXES.items()):
        write_jpeg(images / image_id, seed=20 + i)
        ids.append(f"{image_id}\n")
        labels.append(f"{image_id},{label}\n")
        sizes.append(f"{image_id},{W},{H}\n")
        for j, box in enumerate(boxes):
            if masks:
                mask_rel = image_id.replace(".jpg", f"_m{j}.png")
                write_rect_mask(images / mask_rel, box)
                ignore = image_id.replace(".jpg", "_ignore.png") if j == 0 else ""
                loc.append(f"{image_id},{mask_rel},{ignore}\n")
            else:
                loc.append(f"{image_id},{box[0]},{box[1]},{box[2]},{box[3]}\n")
    (split / "image_ids.txt").write_text("".join(ids))
    (split / "class_labels.txt").write_text("".join(labels))
    if not masks:
        (split / "image_sizes.txt").write_text("".join(sizes))
    (split / "localization.txt").write_text("".join(loc))
    return images, meta


def add_train_split(images: Path, meta: Path, seed: int = 40) -> Path:
    """A train split beside `build_metadata`'s test split, in its format, listing images of its
    own (`train/...`: one image in two splits is a leak the reader refuses); returns it."""
    train = meta / "train"
    shutil.copytree(meta / "test", train)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        path = train / name
        path.write_text(path.read_text().replace("test/", "train/"))
    for i, image_id in enumerate(META_BOXES):
        write_jpeg(images / image_id.replace("test/", "train/"), seed=seed + i)
    return train


def square_objects(classes: int = 4, per_class: int = 4, size: int = 32):
    """A seeded batch for Eq. 12 on fixed maps: noisy backgrounds (a random tint each) with one
    square object per image in its class's colour. Returns images (N x 3 x size x size),
    ground-truth masks (N x size x size), boxes (a 1 x 4 tensor per image; x1/y1 exclusive) and
    labels (N)."""
    import torch

    g = torch.Generator().manual_seed(0)
    colours = torch.rand(classes, 3, generator=g) * 4 - 2
    images, masks, boxes = [], [], []
    for c in range(classes):
        for _ in range(per_class):
            image = torch.randn(3, size, size, generator=g)
            image = image + torch.rand(3, 1, 1, generator=g) * 4 - 2
            side = int(torch.randint(8, 14, (1,), generator=g))
            x, y = (int(v) for v in torch.randint(0, size - side, (2,), generator=g))
            mask = torch.zeros(size, size)
            mask[y:y + side, x:x + side] = 1
            images.append(image * (1 - mask) + colours[c].view(3, 1, 1) * mask)
            masks.append(mask)
            boxes.append(torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32))
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.stack(images), torch.stack(masks), boxes, labels
