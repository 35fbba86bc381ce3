"""Datasets for WSOL: CUB-200-2011, ILSVRC, wsolevaluation metadata, and the synthetic benchmark.

Every reader returns the sample dict of DESIGN.md; `collate_wsol` batches them.
"""

from __future__ import annotations

from csoa_nb.data.common import DataError, check_num_classes, collate_wsol, load_image
from csoa_nb.data.cub import CUB200
from csoa_nb.data.ilsvrc import ILSVRCLoc
from csoa_nb.data.synthetic import Difficulty, make_dataset
from csoa_nb.data.transforms import IMAGENET_MEAN, IMAGENET_STD, WSOLTransform, denormalize
from csoa_nb.data.wsol_metadata import WSOLMetadata

__all__ = [
    "DataError",
    "collate_wsol",
    "load_image",
    "check_num_classes",
    "WSOLTransform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "denormalize",
    "CUB200",
    "ILSVRCLoc",
    "WSOLMetadata",
    "Difficulty",
    "make_dataset",
]
