"""The arrays of a run folder on disk (format 2 of the run store): small, exact, shared once.

A finished run keeps four sets of arrays, each one `.npz` file in its folder:

| kind | file | the run's own | shared by the runs of one data set |
| --- | --- | --- | --- |
| `test` | `eval_maps.npz` | `cam_last`, `cam_feature`, `probs`, `probs_last` | `labels`, `boxes` |
| `val` | `val_maps.npz` | as `test`, for the validation split | as `test` |
| `sample` | `cams.npz` | maps of 2 classes per image (`classes`), `probs` | `images`, `masks` |
| `posthoc` | `posthoc_cams.npz` | the post-hoc maps of the sample images, by kind | nothing |

`test` and `val` hold the ground-truth class's maps of every image (float16) and the class
scores (`probs_last`, y_L's alone, only where it differs from `probs`); the sample holds, for
a few test images, the maps of the ground-truth class and of the highest-scoring other class
(float32), which are what the figures and widgets show.

What the data set fixes is stored once, content-addressed: `<store>/shared/<kind>-<sha>.npz`
beside the run folders (`<store>` is the folder that holds the run's folder), named by the
SHA-256 of its arrays, so two runs share a file only when their arrays are equal bit for bit.

An `.npz` is a zip of `.npy` arrays, here compressed with LZMA and written with fixed
timestamps (the same arrays give the same bytes); `numpy.load(path)` reads it without pickle.
Float arrays are stored exactly, as byte planes of the differences of their bit patterns along
the last axis (codec `planes`): a map's neighbouring cells have close bit patterns, so the
high bytes compress well; decoding sums the differences back (modulo 2^bits) and gives the
same bits. `__manifest__` (a JSON string) records each array's dtype, shape and codec.
Neither numpy's own `savez_compressed` (zlib, timestamps of the moment) nor a pickle gives
this: the planes cut the committed store by a further ~15 % over zlib on the raw bytes.

`split_arrays` / `join_arrays` turn a run's dict (the form `csoa_nb.engine.evaluate` makes:
tensors, a list of per-image box tensors, `image_size` as a list) into the stored parts and
back; `npz_bytes` / `read_npz` are the container. Writing files and naming errors is
`csoa_nb.engine.runs`' job.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np
import torch

from csoa_nb.core.scores import MapSet, SampleCams

__all__ = [
    "FILES",
    "FORMAT",
    "LEGACY_FILES",
    "SHARED_DIR",
    "join_arrays",
    "npz_bytes",
    "read_npz",
    "shared_name",
    "split_arrays",
]

#: The run store's array format (1: the `.pt` files of `LEGACY_FILES`, torch pickles).
FORMAT = 2
#: The file of each kind of arrays in a run folder.
FILES = {"test": "eval_maps.npz", "val": "val_maps.npz", "sample": "cams.npz",
         "posthoc": "posthoc_cams.npz"}
#: The same arrays in format 1 (`python -m csoa_nb.engine.convert_runs` rewrites them).
LEGACY_FILES = {"test": "eval_maps.pt", "val": "val_maps.pt", "sample": "cams.pt",
                "posthoc": "posthoc_cams.pt"}
#: The folder, beside the run folders, of the arrays that the data set fixes.
SHARED_DIR = "shared"
#: Keys of each kind that the data set fixes (stored once, in `SHARED_DIR`).
SHARED_KEYS = {
    "test": ("labels", "boxes", "image_size", "masks"),
    "val": ("labels", "boxes", "image_size", "masks"),
    "sample": ("images", "masks", "labels", "indices", "boxes"),
    "posthoc": (),
}
#: Sample maps kept per image: the ground-truth class and the highest-scoring other class.
SAMPLE_CLASSES = 2

_MANIFEST = "__manifest__"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------------------ the container
def _encode(array: np.ndarray) -> tuple[np.ndarray, str]:
    """`planes` for a float array (exact), `raw` for anything else."""
    if array.dtype.kind != "f" or array.ndim == 0:
        return array, "raw"
    unsigned = np.dtype(f"<u{array.itemsize}")
    bits = np.ascontiguousarray(array).view(unsigned)
    diffs = bits.copy()
    diffs[..., 1:] = bits[..., 1:] - bits[..., :-1]  # unsigned: wraps modulo 2^bits
    planes = diffs.view(np.uint8).reshape(*array.shape, array.itemsize)
    return np.ascontiguousarray(np.moveaxis(planes, -1, 0)), "planes"


def _decode(stored: np.ndarray, dtype: np.dtype, shape: tuple[int, ...], codec: str) -> np.ndarray:
    if codec == "raw":
        return stored
    if codec != "planes":
        raise ValueError(f"unknown codec {codec!r}")
    unsigned = np.dtype(f"<u{dtype.itemsize}")
    diffs = np.ascontiguousarray(np.moveaxis(stored, 0, -1)).view(unsigned).reshape(shape)
    return np.cumsum(diffs, axis=-1, dtype=unsigned).view(dtype)


def npz_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> bytes:
    """An LZMA-compressed `.npz` of `arrays` (float arrays as `planes`), with `meta` and each
    array's dtype, shape and codec in its manifest; the same input gives the same bytes."""
    manifest: dict[str, Any] = {"format": FORMAT, **(meta or {}), "arrays": {}}
    stored = {}
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        stored[name], codec = _encode(array)
        manifest["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                                    "codec": codec}
    stored[_MANIFEST] = np.array(json.dumps(manifest, sort_keys=True))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name in sorted(stored):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_LZMA
            with archive.open(info, "w") as handle:
                np.lib.format.write_array(handle, stored[name], allow_pickle=False)
    return buffer.getvalue()


def read_npz(source: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the manifest of an `.npz` written by `npz_bytes` (a path or a file).

    Raises:
        ValueError: not such a file (no manifest, an unknown codec, a shape that disagrees).
        OSError, zipfile.BadZipFile, EOFError: an unreadable or truncated file.
    """
    with np.load(source, allow_pickle=False) as data:
        if _MANIFEST not in data.files:
            raise ValueError("no __manifest__: not an array file of the csoa_nb run store")
        manifest = json.loads(str(data[_MANIFEST]))
        arrays = {}
        for name, spec in manifest["arrays"].items():
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            array = _decode(data[name], dtype, shape, spec["codec"])
            if array.dtype != dtype or array.shape != shape:
                raise ValueError(f"array {name!r} is {array.dtype} {array.shape}, its manifest "
                                 f"says {dtype} {shape}")
            arrays[name] = array
    return arrays, manifest


def shared_name(kind: str, arrays: dict[str, np.ndarray]) -> str:
    """`<kind>-<sha>`: the content address of the shared arrays of one kind (SHA-256 over
    every array's name, dtype, shape and bytes, first 16 hex digits)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return f"{kind}-{digest.hexdigest()[:16]}"


# ------------------------------------------------------------------------------ dict <-> parts
def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy()


def _other_class(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class that is not the ground truth, per image."""
    others = probs.float().clone()
    others[torch.arange(len(labels)), labels.long()] = float("-inf")
    return others.argmax(1)


def split_arrays(
    kind: str, maps: MapSet | SampleCams | dict[str, torch.Tensor]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`(own, shared)`: the arrays of `maps` that are the run's own and those its data set
    fixes (empty for `posthoc`). `maps` is in the form the run store loads (`join_arrays`);
    `None` values and a `probs_last` equal to `probs` are left out; the sample keeps the
    maps of `SAMPLE_CLASSES` classes per image (`classes`)."""
    if kind not in FILES:
        raise ValueError(f"unknown kind of run arrays {kind!r}: one of {sorted(FILES)}")
    own: dict[str, np.ndarray] = {}
    shared: dict[str, np.ndarray] = {}
    for key, value in maps.items():
        if value is None:
            continue
        target = shared if key in SHARED_KEYS[kind] else own
        if key == "boxes":
            target["box_counts"] = np.array([len(b) for b in value], dtype=np.int64)
            target["boxes"] = (_numpy(torch.cat([b.reshape(-1, 4) for b in value]))
                               if value else np.zeros((0, 4), np.float32))
        elif key == "image_size":
            target[key] = np.asarray(value, dtype=np.int64)
        elif isinstance(value, torch.Tensor):
            target[key] = _numpy(value)
        else:
            raise ValueError(f"{kind} arrays: {key!r} is a {type(value).__name__}, not a tensor")
    probs_last = own.get("probs_last")
    if probs_last is not None and np.array_equal(probs_last, own.get("probs")):
        del own["probs_last"]
    if kind == "sample" and own["cam_last"].ndim == 4:
        labels = maps["labels"].long()
        classes = torch.stack([labels, _other_class(maps["probs"], labels)], 1)
        rows = torch.arange(len(labels))[:, None]
        own["classes"] = _numpy(classes)
        own["num_classes"] = np.array(maps["cam_last"].shape[1], dtype=np.int64)
        for key in ("cam_last", "cam_feature"):
            if maps.get(key) is not None:
                own[key] = _numpy(maps[key][rows, classes])
    return own, shared


def join_arrays(
    kind: str, own: dict[str, np.ndarray], shared: dict[str, np.ndarray]
) -> MapSet | SampleCams | dict[str, torch.Tensor]:
    """The dict a run's code works with, from its stored parts (the inverse of `split_arrays`):
    tensors; `boxes` a list of ``K_i x 4`` tensors; `image_size` a list; `cam_feature` and
    `probs_last` always present (None, or `probs`). In the sample, `cam_last` / `cam_feature`
    are ``N x C x h x w`` with the maps of `classes` and NaN for the classes not kept."""
    arrays = {**shared, **own}
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        if key in ("box_counts", "num_classes", "boxes", "image_size"):
            continue
        out[key] = torch.from_numpy(np.array(value))
    if "boxes" in arrays:
        counts = arrays["box_counts"].tolist()
        boxes = torch.from_numpy(np.array(arrays["boxes"]))
        out["boxes"] = list(torch.split(boxes, counts)) if counts else []
    if "image_size" in arrays:
        out["image_size"] = [int(v) for v in arrays["image_size"]]
    if kind in ("test", "val", "sample"):
        out.setdefault("cam_feature", None)
    if kind in ("test", "val"):
        out.setdefault("probs_last", out["probs"])
    if kind == "sample":
        out.setdefault("masks", None)
        if "classes" in arrays:
            classes = out["classes"].long()
            rows = torch.arange(len(classes))[:, None]
            for key in ("cam_last", "cam_feature"):
                if out.get(key) is not None:
                    kept = out[key]
                    full = kept.new_full((len(classes), int(arrays["num_classes"]),
                                          *kept.shape[2:]), float("nan"))
                    full[rows, classes] = kept
                    out[key] = full
    return out
