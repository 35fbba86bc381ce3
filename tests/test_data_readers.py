"""Readers (CUB200, ILSVRCLoc, WSOLMetadata) and the common helpers on tiny real-format data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_data import (
    CUB_CLASSES,
    ILSVRC_VAL,
    META_BOXES,
    WNIDS,
    H,
    W,
    build_cub,
    build_ilsvrc,
    build_metadata,
    voc_xml,
    write_jpeg,
)
from torch.utils.data import DataLoader

from csoa_nb.data import (
    CUB200,
    DataError,
    ILSVRCLoc,
    WSOLMetadata,
    WSOLTransform,
    check_num_classes,
    collate_wsol,
    load_image,
)


def boxes_of(sample: dict) -> list[list[float]]:
    return sample["boxes"].tolist()


# ------------------------------------------------------------------ common
def test_load_image_missing_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    path = tmp_path / "cut.jpg"
    write_jpeg(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable image") as info:
        load_image(path)
    assert str(path.absolute()) in str(info.value)
    good = tmp_path / "good.jpg"
    write_jpeg(good, 7, 5)
    img = load_image(good)
    assert img.mode == "RGB" and img.size == (7, 5)


def test_check_num_classes() -> None:
    check_num_classes(5, 5, "here")
    with pytest.raises(DataError, match=r"here.*3 classes.*7.*num_classes=3"):
        check_num_classes(3, 7, "here")


def test_collate_wsol_stacks_and_keeps_boxes() -> None:
    items = [
        {
            "image": torch.full((3, 4, 4), float(i)),
            "label": i,
            "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]] * (i + 1)),
            "mask": torch.ones(1, 4, 4),
            "index": 10 + i,
        }
        for i in range(3)
    ]
    batch = collate_wsol(items)
    assert batch["image"].shape == (3, 3, 4, 4)
    assert batch["image"][2].max().item() == 2.0
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 1, 2]
    assert batch["index"].tolist() == [10, 11, 12]
    assert [b.shape[0] for b in batch["boxes"]] == [1, 2, 3]
    assert batch["mask"].shape == (3, 1, 4, 4)
    del items[1]["mask"]
    assert "mask" not in collate_wsol(items)
    items[0]["image"] = torch.zeros(3, 5, 4)
    with pytest.raises(DataError, match="crop_size"):
        collate_wsol(items)


# ------------------------------------------------------------------ CUB
def test_cub_reads_labels_and_boxes(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "CUB_200_2011")
    train = CUB200(root, "train")
    test = CUB200(root, "test", num_classes=2)
    assert train.num_classes == 2 and train.class_names == CUB_CLASSES
    assert len(train) == 2 and len(test) == 2
    assert not train.has_masks
    assert train.labels == [0, 1] and test.labels == [0, 1]
    s0, s1 = train[0], train[1]
    assert s0["image"].shape == (3, H, W) and s0["label"] == 0 and s0["index"] == 0
    # (x, y, w, h) = (2, 3, 10, 8) -> (2, 3, 12, 11)
    assert boxes_of(s0) == [[2.0, 3.0, 12.0, 11.0]]
    assert boxes_of(s1) == [[0.0, 0.0, 20.0, 16.0]] and s1["label"] == 1
    # (5.5, 1, 6, 12) -> (5.5, 1, 11.5, 13)
    assert boxes_of(test[1]) == [[5.5, 1.0, 11.5, 13.0]]
    assert "mask" not in s0
    with pytest.raises(IndexError):
        train[2]


def test_cub_test_transform_scales_boxes(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    ds = CUB200(root, "test", transform=WSOLTransform(False, 10, 10))
    # image 2: (4, 2, 12, 10) on 20x16; resize to 10x10: x * 10/20, y * 10/16
    # -> (2, 1.25, 6, 6.25)
    sample = ds[0]
    assert sample["image"].shape == (3, 10, 10)
    assert boxes_of(sample) == [[2.0, 1.25, 6.0, 6.25]]


@pytest.mark.parametrize("folder", ["masks", "segmentations"])
def test_cub_masks(tmp_path: Path, folder: str) -> None:
    root = build_cub(tmp_path / "cub", masks=folder)
    ds = CUB200(root, "train")
    assert ds.has_masks and ds.mask_dir == root / folder
    sample = ds[0]
    assert sample["mask"].shape == (1, H, W)
    assert set(sample["mask"].unique().tolist()) == {0.0, 1.0}
    assert sample["mask"].sum().item() == 10 * 8  # the rectangle of box (2, 3, 12, 11)
    assert sample["mask"][0, 3:11, 2:12].min().item() == 1.0
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_wsol)))
    assert batch["mask"].shape == (2, 1, H, W) and batch["label"].tolist() == [0, 1]


def test_cub_missing_mask_named(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub", masks="masks")
    (root / "masks" / "001.Alpha" / "alpha_1.png").unlink()
    with pytest.raises(DataError, match="alpha_1.png"):
        CUB200(root, "train")


def test_cub_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CUB root .*nowhere does not exist.*images.txt"):
        CUB200(tmp_path / "nowhere", "train")


def test_cub_missing_images_txt_hints_nested(tmp_path: Path) -> None:
    build_cub(tmp_path / "CUB_200_2011")
    with pytest.raises(DataError, match=r"images.txt is missing \(did you mean .*CUB_200_2011"):
        CUB200(tmp_path, "train")
    (tmp_path / "CUB_200_2011" / "images.txt").unlink()
    with pytest.raises(DataError, match="images.txt is missing"):
        CUB200(tmp_path / "CUB_200_2011", "train")


@pytest.mark.parametrize(
    "name",
    ["image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt"],
)
def test_cub_each_missing_txt_named(tmp_path: Path, name: str) -> None:
    root = build_cub(tmp_path / "cub")
    (root / name).unlink()
    with pytest.raises(DataError, match=f"{name} is missing"):
        CUB200(root, "train")


def test_cub_wrong_column_count_names_line(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "bounding_boxes.txt"
    lines = path.read_text().splitlines()
    lines[2] = "3 0.0 0.0 20.0"  # 4 columns instead of 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bounding_boxes.txt, line 3: expected 5 columns, found 4"):
        CUB200(root, "test")


def test_cub_label_out_of_range(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "image_class_labels.txt"
    path.write_text(path.read_text().replace("4 2\n", "4 3\n"))
    with pytest.raises(DataError, match=r"labels.txt, line 4: label 3 is outside 1...2"):
        CUB200(root, "train")


def test_cub_non_numeric_value(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "image_class_labels.txt"
    path.write_text(path.read_text().replace("2 1\n", "2 one\n"))
    with pytest.raises(DataError, match=r"image_class_labels.txt, line 2: value 'one'"):
        CUB200(root, "train")


@pytest.mark.parametrize("box", ["2 4.0 2.0 0.0 8.0", "2 4.0 2.0 8.0 -1.0", "2 -3.0 2.0 8.0 8.0"])
def test_cub_box_bad_size_checked_upfront(tmp_path: Path, box: str) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "bounding_boxes.txt"
    path.write_text(path.read_text().replace("2 4.0 2.0 8.0 8.0", box))
    with pytest.raises(DataError, match=r"bounding_boxes.txt, line 2: box"):
        CUB200(root, "train")  # the bad box is a test image: still checked up front


def test_cub_box_outside_image_on_load(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "bounding_boxes.txt"
    path.write_text(path.read_text().replace("2 4.0 2.0 8.0 8.0", "2 4.0 2.0 30.0 8.0"))
    ds = CUB200(root, "test")
    with pytest.raises(DataError, match=r"bounding_boxes.txt, line 2: box .* outside the 20x16"):
        ds[0]
    # one pixel of rounding slack is tolerated and clipped
    path.write_text(path.read_text().replace("2 4.0 2.0 30.0 8.0", "2 4.0 2.0 17.0 8.0"))
    assert boxes_of(CUB200(root, "test")[0]) == [[4.0, 2.0, 20.0, 10.0]]


def test_cub_inconsistent_ids(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "train_test_split.txt"
    path.write_text("1 1\n2 0\n3 1\n")
    with pytest.raises(DataError, match=r"train_test_split.txt has no line for image id 4"):
        CUB200(root, "train")
    path.write_text("1 1\n2 0\n3 1\n4 0\n9 1\n")
    with pytest.raises(DataError, match=r"train_test_split.txt, line 5: image id 9 is not in"):
        CUB200(root, "train")


def test_cub_corrupt_jpeg_names_path(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    path = root / "images" / "002.Beta" / "beta_1.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    ds = CUB200(root, "train")
    ds[0]  # the intact image still loads
    with pytest.raises(DataError, match=r"beta_1.jpg is not a readable image"):
        ds[1]


def test_cub_missing_image_and_class_mismatch(tmp_path: Path) -> None:
    root = build_cub(tmp_path / "cub")
    with pytest.raises(DataError, match=r"has 2 classes but 200 were requested"):
        CUB200(root, "train", num_classes=200)
    with pytest.raises(DataError, match="split 'val'"):
        CUB200(root, "val")
    (root / "images" / "001.Alpha" / "alpha_1.jpg").unlink()
    with pytest.raises(DataError, match=r"alpha_1.jpg \(images.txt, line 1\) does not exist"):
        CUB200(root, "train")


# ------------------------------------------------------------------ ILSVRC
def test_ilsvrc_train_and_val(tmp_path: Path) -> None:
    root = build_ilsvrc(tmp_path / "ilsvrc")
    train = ILSVRCLoc(root, "train", num_classes=2)
    assert train.wnids == WNIDS and train.class_names[0] == "tench, Tinca tinca"
    assert len(train) == 3 and train.labels == [0, 0, 1]
    # no XML -> the whole image; with XML -> its box
    assert boxes_of(train[0]) == [[0.0, 0.0, 20.0, 16.0]]
    assert boxes_of(train[2]) == [[3.0, 4.0, 15.0, 14.0]] and train[2]["label"] == 1
    val = ILSVRCLoc(root, "val")
    assert len(val) == 2 and val.labels == [1, 0]
    assert boxes_of(val[0]) == [[1.0, 2.0, 9.0, 12.0]]
    assert boxes_of(val[1]) == [[0.0, 0.0, 10.0, 8.0], [12.0, 4.0, 20.0, 16.0]]
    # with a test transform 20x16 -> 10x10: (12, 4, 20, 16) -> (6, 2.5, 10, 10)
    val_t = ILSVRCLoc(root, "val", transform=WSOLTransform(False, 10, 10))
    assert boxes_of(val_t[1]) == [[0.0, 0.0, 5.0, 5.0], [6.0, 2.5, 10.0, 10.0]]


def test_ilsvrc_classes_from_folders_and_xml_next_to_image(tmp_path: Path) -> None:
    root = build_ilsvrc(tmp_path / "ilsvrc", mapping=False)
    stem = next(iter(ILSVRC_VAL))
    (root / "bbox_val" / f"{stem}.xml").rename(root / "val" / f"{stem}.xml")
    val = ILSVRCLoc(root, "val")
    assert val.wnids == sorted(WNIDS) and val.labels == [1, 0]


def test_ilsvrc_missing_xml(tmp_path: Path) -> None:
    root = build_ilsvrc(tmp_path / "ilsvrc")
    (root / "bbox_val" / "ILSVRC2012_val_00000002.xml").unlink()
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000002.xml of image .* is missing"):
        ILSVRCLoc(root, "val")


def test_ilsvrc_unknown_wnid(tmp_path: Path) -> None:
    root = build_ilsvrc(tmp_path / "ilsvrc")
    stem = "ILSVRC2012_val_00000001"
    (root / "bbox_val" / f"{stem}.xml").write_text(voc_xml(stem, [("n99999999", (1, 1, 5, 5))]))
    with pytest.raises(DataError, match=rf"{stem}.xml, object 1: unknown wnid 'n99999999'"):
        ILSVRCLoc(root, "val")
    (root / "train" / "n99999999").mkdir()
    with pytest.raises(DataError, match=r"n99999999: unknown wnid"):
        ILSVRCLoc(root, "train")


def test_ilsvrc_malformed_xml_and_missing_root(tmp_path: Path) -> None:
    root = build_ilsvrc(tmp_path / "ilsvrc")
    (root / "bbox_val" / "ILSVRC2012_val_00000001.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000001.xml is not valid XML"):
        ILSVRCLoc(root, "val")
    with pytest.raises(DataError, match="ILSVRC root .* does not exist"):
        ILSVRCLoc(tmp_path / "none", "val")
    with pytest.raises(DataError, match="has 2 classes but 1000"):
        ILSVRCLoc(root, "train", num_classes=1000)


# ------------------------------------------------------------------ wsolevaluation metadata
def test_metadata_boxes(tmp_path: Path) -> None:
    images, meta = build_metadata(tmp_path)
    ds = WSOLMetadata(images, meta, "test")
    assert len(ds) == 2 and ds.labels == [0, 2] and ds.num_classes == 3
    assert not ds.has_masks
    assert boxes_of(ds[0]) == [[1.0, 2.0, 11.0, 12.0]]
    assert boxes_of(ds[1]) == [[0.0, 0.0, 5.0, 5.0], [10.0, 6.0, 20.0, 16.0]]
    assert WSOLMetadata(images, meta, "test", num_classes=200).num_classes == 200
    with pytest.raises(DataError, match=r"label 2, outside 0..1"):
        WSOLMetadata(images, meta, "test", num_classes=2)


def test_metadata_masks_give_union_and_boxes(tmp_path: Path) -> None:
    images, meta = build_metadata(tmp_path, masks=True)
    ds = WSOLMetadata(images, meta, "test")
    assert ds.has_masks
    sample = ds[1]
    # two rectangles (0,0,5,5) and (10,6,20,16): one tight box each, union mask 25 + 100 px
    assert boxes_of(sample) == [[0.0, 0.0, 5.0, 5.0], [10.0, 6.0, 20.0, 16.0]]
    assert sample["mask"].sum().item() == 25 + 100
    assert len(META_BOXES) == len(ds)


def test_metadata_missing_localization(tmp_path: Path) -> None:
    images, meta = build_metadata(tmp_path)
    (meta / "test" / "localization.txt").unlink()
    with pytest.raises(DataError, match=r"localization.txt is missing: the test split .* add them"):
        WSOLMetadata(images, meta, "test")
    ds = WSOLMetadata(images, meta, "test", require_localization=False)
    assert boxes_of(ds[0]) == [[0.0, 0.0, 20.0, 16.0]]


def test_metadata_bad_inputs(tmp_path: Path) -> None:
    images, meta = build_metadata(tmp_path)
    with pytest.raises(DataError, match=r"metadata folder .*train does not exist"):
        WSOLMetadata(images, meta, "train")
    loc = meta / "test" / "localization.txt"
    text = loc.read_text()
    loc.write_text(text + "test/zzz.jpg,1,1,2,2\n")
    with pytest.raises(DataError, match=r"localization.txt, line 4: image 'test/zzz.jpg' is not"):
        WSOLMetadata(images, meta, "test")
    loc.write_text(text.replace("1,2,11,12", "1,2,40,12"))
    with pytest.raises(DataError, match=r"localization.txt, line 1: box .* outside the 20x16"):
        WSOLMetadata(images, meta, "test")
    loc.write_text(text)
    sizes = meta / "test" / "image_sizes.txt"
    sizes.write_text(sizes.read_text().replace(f"{W},{H}", "30,16", 1))
    ds = WSOLMetadata(images, meta, "test")
    with pytest.raises(DataError, match=r"image_sizes.txt, line 1: says 30x16"):
        ds[0]
