"""The offline benchmark: a synthetic WSOL dataset written in the CUB-200-2011 on-disk format.

Why it is a real WSOL problem: every object is a LARGE body whose shape, colour and texture are
shared by all classes, plus a SMALL class-discriminative part (a coloured, patterned shape with
`part_fraction` of the object's area) near one end of the body's major axis. A classifier only
needs the part, so plain CAM lights the part and under-covers the object, exactly the failure
CSoA addresses. The background is cluttered (low-frequency colour noise, striped texture
patches) and holds distractor bodies without a part, so "everything that is not background" is
not a shortcut either.

`Difficulty` sets the knobs; `family="pretrain"` gives a disjoint family of designs (rounded
rectangle bodies with a checker texture, other part shapes/colours) used as the ImageNet
analogue for pretraining, so pretraining never sees the benchmark's classes.

On disk (`make_dataset`), in `root/synthetic-<family>-<hash12>/`::

    images.txt image_class_labels.txt train_test_split.txt bounding_boxes.txt classes.txt
    images/<class>/<name>.jpg   JPEG quality 95, 4:4:4 chroma (keeps the small part's colour)
    masks/<class>/<name>.png    object mask (body + part), 0/255
    parts/<class>/<name>.png    part mask, 0/255 (empty when the part is occluded)
    part_boxes.txt              "<image_id> <x> <y> <w> <h>" of the part (zeros if occluded)
    manifest.json               arguments, hash, class designs; written last

The validation split (`make_val_dataset`; Choe et al.'s "train-fullsup": a few images per
class with boxes and masks, on which hyperparameters and theta are chosen) is a folder of its
own next to it, `root/synthetic-<family>-val-<hash12>`, in the same format with every image
marked as test (`is_train` 0; read it as CUB200's "test" split). Its images are keyed by
another split id, so they are none of the train or test images, and the benchmark's folder,
spec and hash are the same with or without it.

Every image comes from its own `np.random.default_rng([seed, split_id, index])`, so the output
is deterministic and independent of generation order. The modules: `spec` (the knobs, splits
and canonical spec), `designs` (the families' looks), `render` (one image with its masks and
boxes), `store` (a dataset's folder, written crash-safely). CLI (`__main__.py`)::

    python -m csoa_nb.data.synthetic --root data [--preset smoke|cpu] [--num-classes N ...]
"""

from __future__ import annotations

from csoa_nb.data.synthetic.designs import DESIGNS, FamilyDesign, class_design, class_folder
from csoa_nb.data.synthetic.render import render_sample
from csoa_nb.data.synthetic.spec import (
    FAMILIES,
    GENERATOR_VERSION,
    SPLITS,
    VAL_PER_CLASS,
    VAL_SPLIT,
    Difficulty,
    dataset_spec,
    spec_hash,
    split_id,
    val_spec,
)
from csoa_nb.data.synthetic.store import (
    JPEG_QUALITY,
    STALE_TMP_SECONDS,
    clean_stale_tmp,
    make_dataset,
    make_val_dataset,
    part_area_ratios,
)

__all__ = [
    "DESIGNS",
    "FAMILIES",
    "GENERATOR_VERSION",
    "JPEG_QUALITY",
    "SPLITS",
    "STALE_TMP_SECONDS",
    "VAL_PER_CLASS",
    "VAL_SPLIT",
    "Difficulty",
    "FamilyDesign",
    "class_design",
    "class_folder",
    "clean_stale_tmp",
    "dataset_spec",
    "make_dataset",
    "make_val_dataset",
    "part_area_ratios",
    "render_sample",
    "spec_hash",
    "split_id",
    "val_spec",
]
