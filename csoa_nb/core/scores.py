"""A run's scores as data: one typed record, and its flat form in `results.json`.

`Scores` is what `csoa_nb.core.metrics.LocalizationEvaluator` and
`csoa_nb.engine.evaluate.score_maps` return, what a loaded run holds
(`csoa_nb.engine.runs.RunResult.scores`) and what every table and figure reads, by field:

- per theta (Eq. 13's threshold): `ThetaErrors` (top-1 / top-5 / GT-known loc. errors and the
  two classification errors, Sec. 4.2), in `by_theta` (theta -> errors) and, at the run's own
  theta `theta`, in `errors` (also read as `scores.top1_loc_err`, ...);
- per IoU level (an int percentage, 30 / 50 / 70): `gt_known_loc_acc` at the run's theta, and
  MaxBoxAcc with its best CAM threshold (`max_box_acc`, `best_threshold`; Choe et al.,
  CVPR 2020);
- theta-free: MaxBoxAccV2, PxAP, the number of images and the collapse monitors
  (`csoa_nb.core.monitors`).

`to_record` / `from_record` are the one home of the flat form that `results.json`,
`metrics.jsonl` (prefixed `val_`) and `python -m csoa_nb.engine.evaluate --json` hold: the five
errors without suffix at the run's theta, `top1_loc_err@0.2` ... at each theta of `by_theta`,
`gt_known_loc_acc@iou50`, `max_box_acc@50`, `best_threshold@50`, `max_box_acc_v2`, `pxap`,
`num_images` (a float), `box_mass_ratio`, `cam_nonpositive`, `fg_saturated`. Those keys are
also the columns of `csoa_nb.engine.results.runs_frame`; `split_key` names the parts of one.

The maps that are scored travel as typed dicts: `MapSet` (every image of a split, the form
`csoa_nb.engine.evaluate.score_maps` scores) and `SampleCams` (a few images with the maps of
all classes, for figures). Both are plain dicts at run time; the types name their keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor

__all__ = ["THETA_METRICS", "THETA_FRAME_METRICS", "IOU_METRICS", "ThetaErrors", "Scores",
           "split_key", "MapSet", "SampleCams"]

#: The metrics of one Eq. 13 threshold, in the order of `ThetaErrors`.
THETA_METRICS = ("top1_loc_err", "top5_loc_err", "gt_known_loc_err", "top1_cls_err",
                 "top5_cls_err")
#: The columns the book's theta frame gives by default (`csoa_nb.report.tables.theta_frame`,
#: chapter 08): `THETA_METRICS` without `top5_cls_err`, which no theta table or chart reads
#: (a classification error does not depend on theta; the top-1 one stays beside the top-1
#: loc. error, which it bounds from below).
THETA_FRAME_METRICS = tuple(m for m in THETA_METRICS if m != "top5_cls_err")
#: The metrics of one IoU level, and how the flat form names that level ("@iou50", "@50").
IOU_METRICS = {"gt_known_loc_acc": "iou", "max_box_acc": "", "best_threshold": ""}
#: Theta-free metrics the flat form may hold, besides `num_images`.
OPTIONAL_METRICS = ("max_box_acc_v2", "pxap", "box_mass_ratio", "cam_nonpositive",
                    "fg_saturated")


@dataclass(frozen=True)
class ThetaErrors:
    """The errors of Sec. 4.2 (percent) with Eq. 13's boxes at one theta. The classification
    errors do not depend on theta; the record repeats them at every theta, as the paper's
    tables do."""

    top1_loc_err: float
    top5_loc_err: float
    gt_known_loc_err: float
    top1_cls_err: float
    top5_cls_err: float

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in THETA_METRICS}


@dataclass(frozen=True)
class Scores:
    """Every metric of one scored test set (see the module docstring).

    `theta` is the run's own threshold; `errors` are the errors there (the unsuffixed keys of
    the record); `by_theta` the errors at each theta scored as a sweep (it may leave `theta`
    out, e.g. a re-evaluation at other thetas). IoU-indexed fields are keyed by the IoU level
    in percent (30, 50, 70). A metric that was not computed is None (or an empty mapping):
    MaxBoxAccV2 in per-epoch validation, PxAP without masks, monitors outside training.
    """

    theta: float
    errors: ThetaErrors
    by_theta: Mapping[float, ThetaErrors]
    gt_known_loc_acc: Mapping[int, float]
    num_images: int
    max_box_acc_v2: float | None = None
    max_box_acc: Mapping[int, float] = field(default_factory=dict)
    best_threshold: Mapping[int, float] = field(default_factory=dict)
    pxap: float | None = None
    box_mass_ratio: float | None = None
    cam_nonpositive: float | None = None
    fg_saturated: float | None = None

    # ---------------------------------------------------------------- the run's own theta
    @property
    def top1_loc_err(self) -> float:
        return self.errors.top1_loc_err

    @property
    def top5_loc_err(self) -> float:
        return self.errors.top5_loc_err

    @property
    def gt_known_loc_err(self) -> float:
        return self.errors.gt_known_loc_err

    @property
    def top1_cls_err(self) -> float:
        return self.errors.top1_cls_err

    @property
    def top5_cls_err(self) -> float:
        return self.errors.top5_cls_err

    # ---------------------------------------------------------------------- other thetas
    @property
    def thetas(self) -> tuple[float, ...]:
        """The thetas of `by_theta`, in scoring order."""
        return tuple(self.by_theta)

    def _theta_key(self, theta: float) -> float | None:
        theta = float(theta)
        if theta in self.by_theta:
            return theta
        # a theta computed another way (np.arange, np.round) may differ in the last bits
        return next((t for t in self.by_theta if math.isclose(t, theta, abs_tol=1e-9)), None)

    def has_theta(self, theta: float) -> bool:
        """Whether `by_theta` holds `theta`."""
        return self._theta_key(theta) is not None

    def at(self, theta: float) -> ThetaErrors:
        """The errors at `theta`; ValueError naming the thetas scored if it was not."""
        key = self._theta_key(theta)
        if key is not None:
            return self.by_theta[key]
        if math.isclose(float(theta), self.theta, abs_tol=1e-9):
            return self.errors
        scored = ", ".join(f"{t:g}" for t in self.thetas)
        raise ValueError(
            f"theta {theta:g} was not scored (scored: {scored}; the run's theta "
            f"{self.theta:g}); score it from the run's saved maps with "
            "csoa_nb.engine.evaluate.reevaluate(run_dir, thetas)"
        )

    def frame(self) -> pd.DataFrame:
        """`by_theta` as a DataFrame: one row per theta (index "theta"), a column per metric
        of `THETA_METRICS`."""
        import pandas as pd

        rows = [errors.to_dict() for errors in self.by_theta.values()]
        return pd.DataFrame(rows, index=pd.Index(self.thetas, name="theta"),
                            columns=list(THETA_METRICS))

    def only_thetas(self, thetas: tuple[float, ...]) -> Scores:
        """These scores with `by_theta` restricted to `thetas` (each must have been scored)."""
        kept = {float(t): self.at(t) for t in thetas}
        return _replace(self, by_theta=kept)

    def with_values(self, **values: Any) -> Scores:
        """A copy with some fields replaced (e.g. the monitors)."""
        return _replace(self, **values)

    # --------------------------------------------------------------------- the flat form
    def to_record(self) -> dict[str, float]:
        """The flat form of `results.json` (see the module docstring); every value a float."""
        out: dict[str, float] = dict(self.errors.to_dict())
        for theta, errors in self.by_theta.items():
            out.update({join_key(name, theta=theta): v for name, v in errors.to_dict().items()})
        for iou, value in self.gt_known_loc_acc.items():
            out[join_key("gt_known_loc_acc", iou=iou)] = value
        if self.max_box_acc_v2 is not None:
            out["max_box_acc_v2"] = self.max_box_acc_v2
        for iou, value in self.max_box_acc.items():
            out[join_key("max_box_acc", iou=iou)] = value
        for iou, value in self.best_threshold.items():
            out[join_key("best_threshold", iou=iou)] = value
        for name in ("pxap", "box_mass_ratio", "cam_nonpositive", "fg_saturated"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["num_images"] = float(self.num_images)
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any], theta: float) -> Scores:
        """The scores of a flat record written by `to_record` (`results.json`'s "metrics"),
        whose unsuffixed errors are at `theta` (the run's `config.theta`).

        Raises:
            ValueError: a key that is not a metric, a value that is not a number, or a
                metric of `THETA_METRICS` or `num_images` missing; the message names it.
        """
        by_theta: dict[float, dict[str, float]] = {}
        iou_values: dict[str, dict[int, float]] = {name: {} for name in IOU_METRICS}
        plain: dict[str, float] = {}
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metric {key!r} is {value!r}, not a number")
            name, theta_of, iou = split_key(key)
            if theta_of is not None:
                by_theta.setdefault(theta_of, {})[name] = float(value)
            elif iou is not None:
                iou_values[name][iou] = float(value)
            else:
                plain[name] = float(value)
        missing = [k for k in (*THETA_METRICS, "num_images") if k not in plain]
        missing += [f"{n}@{t:g}" for t, errs in by_theta.items() for n in THETA_METRICS
                    if n not in errs]
        if missing:
            raise ValueError(f"the metrics lack {missing}: not a record of Scores.to_record")
        count = plain.pop("num_images")
        if count != int(count):
            raise ValueError(f"num_images is {count}, not a whole number")
        errors = ThetaErrors(*(plain.pop(n) for n in THETA_METRICS))
        return cls(
            theta=float(theta),
            errors=errors,
            by_theta={t: ThetaErrors(*(e[n] for n in THETA_METRICS)) for t, e in by_theta.items()},
            gt_known_loc_acc=iou_values["gt_known_loc_acc"],
            num_images=int(count),
            max_box_acc=iou_values["max_box_acc"],
            best_threshold=iou_values["best_threshold"],
            **{name: plain.get(name) for name in OPTIONAL_METRICS},
        )


def _replace(scores: Scores, **values: Any) -> Scores:
    current = {f.name: getattr(scores, f.name) for f in fields(scores)}
    unknown = sorted(set(values) - set(current))
    if unknown:
        raise ValueError(f"Scores has no fields {unknown}; its fields: {sorted(current)}")
    return Scores(**{**current, **values})


def join_key(name: str, *, theta: float | None = None, iou: int | None = None) -> str:
    """The flat form's key of `name` at `theta` ("top1_loc_err@0.2") or at IoU level `iou`
    ("gt_known_loc_acc@iou50", "max_box_acc@50"), or `name` itself."""
    if theta is not None:
        return f"{name}@{theta:g}"
    if iou is not None:
        return f"{name}@{IOU_METRICS[name]}{iou:g}"
    return name


def split_key(key: str) -> tuple[str, float | None, int | None]:
    """(metric, theta or None, IoU level or None) of a key of the flat form: the one place
    that reads one. ValueError, naming the key and the known metrics, for any other key."""
    name, sep, suffix = key.partition("@")
    known = (*THETA_METRICS, *IOU_METRICS, *OPTIONAL_METRICS, "num_images")
    if not sep and name in known and name not in IOU_METRICS:
        return name, None, None
    try:
        if sep and name in THETA_METRICS:
            return name, float(suffix), None
        if sep and name in IOU_METRICS:
            prefix = IOU_METRICS[name]
            if suffix.startswith(prefix) and suffix[len(prefix):].isdigit():
                return name, None, int(suffix[len(prefix):])
    except ValueError:
        pass
    raise ValueError(
        f"{key!r} is not a metric of a run: known are {', '.join(known)}, a theta metric as "
        "'top1_loc_err@0.2' and an IoU level as 'gt_known_loc_acc@iou50' or 'max_box_acc@50'"
    )


# ----------------------------------------------------------------------------- the maps
class _MapSetKeys(TypedDict):
    cam_last: Tensor
    cam_feature: Tensor | None
    probs: Tensor
    labels: Tensor
    boxes: list[Tensor]
    image_size: list[int]


class MapSet(_MapSetKeys, total=False):
    """The maps of every image of one split: collected from a model
    (`csoa_nb.engine.evaluate.collect_maps`, a baseline's or post-hoc method's maps in the same
    form) or loaded from a run's `eval_maps.npz` / `val_maps.npz`.

    For N images: `cam_last` / `cam_feature` the ground-truth class's raw S_L / S_F
    (``N x h x w`` float16; post-hoc maps ``N x H x W``; `cam_feature` None without W_F),
    `probs` the class scores ``N x C`` (averaged over the heads), `probs_last` y_L's alone,
    `labels` N, `boxes` N tensors ``K_i x 4`` (x0, y0, x1, y1, x1/y1 exclusive), `masks`
    ``N x H x W`` uint8 foreground masks or None, `image_size` [H, W]. `probs_last` and
    `masks` may be missing (a trivial baseline has no y_L; a store leaves out masks of None).
    """

    probs_last: Tensor
    masks: Tensor | None


class _SampleCamsKeys(TypedDict):
    images: Tensor
    labels: Tensor
    indices: Tensor
    boxes: list[Tensor]
    masks: Tensor | None
    cam_last: Tensor
    cam_feature: Tensor | None
    probs: Tensor


class SampleCams(_SampleCamsKeys, total=False):
    """A few test images with the CAMs of all classes, for figures and widgets
    (`csoa_nb.engine.evaluate.sample_cams`, a run's `cams.npz`).

    `images` ``N x H x W x 3`` uint8, `labels` N, `indices` N (positions in the test set),
    `boxes` and `masks` as in `MapSet`, `cam_last` / `cam_feature` raw S_L / S_F of every class
    (``N x C x h x w`` float32; `cam_feature` None without W_F), `probs` ``N x C``. Loaded from
    `cams.npz`, `classes` (``N x 2``) names the two classes per image whose maps were kept;
    the maps of the other classes are NaN.
    """

    classes: Tensor
