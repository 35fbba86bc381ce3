"""Speed of Eq. 13 boxes: ours batched, ours one image at a time, OpenCV contours.

Eq. 13 of CSoA turns two CAMs of an image (S_L, S_F; here 28 x 28, as VGG16 gives at 224 px)
into one box: upsample both to 224 x 224, min-max normalise, binarise at theta, unite, take
the bounding box of the largest connected region. Three implementations of the same steps:

* ours, batched: `csoa_nb.core.localize.csoa_box` on batches of maps (per map: `cv2.resize`,
  each CAM thresholded at the raw value equal to theta on its normalised map, union, OpenCV
  border following with exact pixel counts of the components, see `csoa_nb.core.localize`);
* ours, per image: the same function called with one image at a time (its per-call input
  checks are the difference);
* OpenCV contours, the way WSOL code usually does it (CAM of Zhou et al., wsolevaluation):
  per image, `cv2.resize` (bilinear), min-max normalise, union, threshold,
  `cv2.findContours`, the contour of largest `cv2.contourArea`, its `cv2.boundingRect`.

Agreement: the fraction of maps whose OpenCV box equals ours exactly (x1/y1 exclusive on
both sides). Where they differ it is because "largest" means the polygon area of the contour
for OpenCV and the pixel count for us (a thin or holed region ranks differently), or because
`cv2.resize` and `torch` bilinear upsampling round differently at the threshold; the second
agreement figure gives OpenCV our binary map, so only the first cause remains.

    python bench/localize.py [--quick] [--maps 1000] [--theta 0.3]

Target: ours (batched) at least as fast as the OpenCV contour version.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

try:
    from bench._common import format_table, median_iqr, print_machine, set_threads
except ModuleNotFoundError:  # run as `python bench/localize.py`
    from _common import format_table, median_iqr, print_machine, set_threads  # type: ignore

from csoa_nb.core.localize import binarize, csoa_box, fuse_cams

CAM_SIZE = 28
IMAGE_SIZE = (224, 224)


def synthetic_cams(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` pairs of CAM-like maps (S_L, S_F), float32 `n x 28 x 28`, non-negative.

    S_L: one or two compact blobs (the discriminative part) plus weak noise; S_F: a broader
    blob near the first one plus scattered weaker blobs, so the union of Eq. 13 often has
    several components, as real maps do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:CAM_SIZE, 0:CAM_SIZE].astype(np.float32)

    def blobs(count: int, sigma: tuple[float, float], weight: tuple[float, float]) -> np.ndarray:
        out = np.zeros((CAM_SIZE, CAM_SIZE), np.float32)
        for _ in range(count):
            cy, cx = rng.uniform(3, CAM_SIZE - 3, size=2)
            sy, sx = rng.uniform(*sigma, size=2)
            out += rng.uniform(*weight) * np.exp(-((yy - cy) ** 2 / sy**2 + (xx - cx) ** 2 / sx**2))
        return out

    last = np.empty((n, CAM_SIZE, CAM_SIZE), np.float32)
    feature = np.empty_like(last)
    for i in range(n):
        noise = rng.normal(0.0, 0.05, size=(2, CAM_SIZE, CAM_SIZE)).astype(np.float32)
        last[i] = blobs(int(rng.integers(1, 3)), (1.5, 4.0), (0.5, 1.0)) + noise[0]
        feature[i] = blobs(int(rng.integers(2, 5)), (2.0, 7.0), (0.2, 1.0)) + noise[1]
    return torch.from_numpy(np.maximum(last, 0)), torch.from_numpy(np.maximum(feature, 0))


# ----------------------------------------------------------------------------- the three ways
def ours_batched(last: torch.Tensor, feature: torch.Tensor, theta: float,
                 batch: int) -> np.ndarray:
    boxes = [
        csoa_box(last[i:i + batch], feature[i:i + batch], theta, IMAGE_SIZE)
        for i in range(0, len(last), batch)
    ]
    return torch.cat(boxes).numpy()


def ours_per_image(last: torch.Tensor, feature: torch.Tensor, theta: float) -> np.ndarray:
    boxes = [
        csoa_box(last[i:i + 1], feature[i:i + 1], theta, IMAGE_SIZE) for i in range(len(last))
    ]
    return torch.cat(boxes).numpy()


def _minmax(score: np.ndarray) -> np.ndarray:
    lo, hi = float(score.min()), float(score.max())
    return (score - lo) / (hi - lo) if hi > lo else np.zeros_like(score)


def contour_box(binary: np.ndarray) -> tuple[int, int, int, int]:
    """Box of the largest external contour (by `cv2.contourArea`) of a uint8 0/255 map,
    as `(x0, y0, x1, y1)` with x1/y1 exclusive; `(0, 0, 0, 0)` when there is none."""
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return (0, 0, 0, 0)
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return (x, y, x + w, y + h)


def opencv_contours(last: np.ndarray, feature: np.ndarray, theta: float) -> np.ndarray:
    """Eq. 13 per image with OpenCV: resize, normalise, unite, threshold, contours."""
    height, width = IMAGE_SIZE
    boxes = np.zeros((len(last), 4), np.float32)
    for i in range(len(last)):
        up_last = _minmax(cv2.resize(last[i], (width, height), interpolation=cv2.INTER_LINEAR))
        up_feature = _minmax(
            cv2.resize(feature[i], (width, height), interpolation=cv2.INTER_LINEAR)
        )
        fused = np.maximum(up_last, up_feature)
        binary = (fused > theta).astype(np.uint8) * 255
        boxes[i] = contour_box(binary)
    return boxes


def opencv_on_our_masks(last: torch.Tensor, feature: torch.Tensor, theta: float) -> np.ndarray:
    """OpenCV's contour box on our binary union map (isolates the "largest" rule)."""
    masks = binarize(fuse_cams(last, feature, IMAGE_SIZE), theta).numpy().astype(np.uint8) * 255
    return np.array([contour_box(m) for m in masks], dtype=np.float32)


# ----------------------------------------------------------------------------- measuring
def time_interleaved(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """CPU and wall seconds of each callable, `repeats` times, round-robin (rotating order)."""
    names = list(runs)
    seconds = {name: {"cpu": [], "wall": []} for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            seconds[name]["cpu"].append(time.process_time() - cpu)
            seconds[name]["wall"].append(time.perf_counter() - wall)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 maps, 2 repeats")
    parser.add_argument("--maps", type=int, default=None, help="default 1000 (200 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (2 with --quick)")
    parser.add_argument("--batch", type=int, default=100, help="maps per csoa_box call")
    parser.add_argument("--theta", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print_machine()
    n = args.maps or (200 if args.quick else 1000)
    repeats = args.repeats or (2 if args.quick else 5)
    last, feature = synthetic_cams(n)
    last_np, feature_np = last.numpy(), feature.numpy()
    print(
        f"{n} pairs of {CAM_SIZE}x{CAM_SIZE} CAMs -> {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} boxes, "
        f"theta {args.theta}, {repeats} interleaved repeats, OpenCV {cv2.__version__}"
    )
    runs: dict[str, Callable[[], object]] = {
        f"ours, batched ({args.batch} maps per call)":
            lambda: ours_batched(last, feature, args.theta, args.batch),
        "ours, one image at a time": lambda: ours_per_image(last, feature, args.theta),
    }
    runs["OpenCV contours, one image at a time"] = (
        lambda: opencv_contours(last_np, feature_np, args.theta)
    )
    for run in runs.values():  # warm-up (imports, allocator, caches)
        run()
    seconds = time_interleaved(runs, repeats)
    rates = {name: [n / t for t in values["cpu"]] for name, values in seconds.items()}
    rows = []
    for name, values in seconds.items():
        median, iqr = median_iqr(rates[name])
        wall = median_iqr([n / t for t in values["wall"]])[0]
        rows.append([name, f"{median:,.0f} ± {iqr:,.0f}", f"{wall:,.0f}",
                     f"{1e3 * np.median(values['cpu']) / n:.3f}"])
    print(format_table(
        ["implementation", "maps/s (CPU time)", "maps/s (wall)", "CPU ms per map"], rows
    ))
    print("(median ± IQR over repeats; one thread each: torch and OpenCV)")

    ours = ours_batched(last, feature, args.theta, args.batch)
    same_loop = np.array_equal(ours, ours_per_image(last, feature, args.theta))
    print(f"ours batched == ours per image on every map: {same_loop}")
    theirs = opencv_contours(last_np, feature_np, args.theta)
    agree = np.all(ours == theirs, axis=1).mean()
    on_masks = np.all(ours == opencv_on_our_masks(last, feature, args.theta), axis=1).mean()
    print(f"boxes equal to OpenCV's (full OpenCV pipeline): {100 * agree:.1f}% of maps")
    print(f"boxes equal to OpenCV's (OpenCV contours on our binary map): "
          f"{100 * on_masks:.1f}% of maps")
    batched = np.median(rates[next(iter(rates))])
    contour = np.median(rates["OpenCV contours, one image at a time"])
    verdict = "met" if batched >= contour else "NOT met"
    print(f"target ours batched >= OpenCV contours: {verdict} "
          f"({batched / contour:.2f}x the OpenCV rate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
