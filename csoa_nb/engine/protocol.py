"""Choe et al.'s protocol: choose on a held-out split with boxes, score the test split once.

Choe, Oh, Lee, Chun, Akata and Shim, "Evaluating Weakly Supervised Object Localization
Methods Right", CVPR 2020, Sec. 4-5: a method's hyperparameters and its CAM threshold are
chosen on a small split with full supervision ("train-fullsup"; here the synthetic benchmark's
validation split, `csoa_nb.engine.datasets.build_val_set`, five images per class, disjoint
from the test split), and the test split is scored once, with those choices. The headline
metrics are threshold-free (MaxBoxAccV2, PxAP); the top-1 localization error is reported at
the threshold chosen on the validation split, not at a threshold fixed in advance (the paper's
protocol, theta = `RunConfig.theta`, stays as the other view).

What a finished run keeps for it (written by the trainer's finalize step,
`csoa_nb.engine.train.finalize_run`, or for an older run from its final weights by
`python -m csoa_nb.engine.posthoc_runs backfill`):

| file | holds |
| --- | --- |
| `val_maps.npz` | the validation split's maps, as `eval_maps.npz` (`csoa_nb.engine.arrays`) |
| `protocol.json` | `theta` chosen on the validation split; `val` and `test` scores there |

The choices, all on the validation split:

* theta: the CAM threshold, on a grid of 0.01 steps (`THETA_GRID`), at which the validation
  split's GT-known localization error is lowest under the box rule the top-1 loc. error is
  reported with: Eq. 13's box around the largest connected component, correct at IoU >= 0.5
  (`theta_curve`, `choose_theta`). MaxBoxAcc's own best threshold is taken over the boxes of
  *all* contours, so a map whose largest blob is off the object would get a theta there that
  the top-1 loc. error then scores under another rule;
* hyperparameters: among the points of a method's grid (`MethodSpec.search`, the sweep
  "wsol_search" of `csoa_nb.engine.sweeps`, each point trained with the preset's search
  seeds), the one with the highest mean validation MaxBoxAccV2 (`choose_best`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from csoa_nb.core.scores import MapSet, Scores
from csoa_nb.engine.arrays import FILES
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import has_val_split
from csoa_nb.engine.evaluate import score_maps
from csoa_nb.engine.runs import RunStoreError, load_arrays, read_json, save_arrays, write_json

__all__ = [
    "PROTOCOL_FILE",
    "THETA_GRID",
    "THETA_FLOOR",
    "VAL_MAPS_FILE",
    "ProtocolScores",
    "choose_best",
    "choose_theta",
    "lacks_protocol",
    "protocol_scores",
    "read_protocol",
    "theta_curve",
    "write_protocol",
]

#: The validation split's maps in a run folder.
VAL_MAPS_FILE = FILES["val"]
#: The protocol's scores in a run folder.
PROTOCOL_FILE = "protocol.json"
#: Theta stays in [THETA_FLOOR, 1 - THETA_FLOOR]: Eq. 13 needs 0 < theta < 1.
THETA_FLOOR = 0.01
#: The thresholds theta is chosen from: THETA_FLOOR to 1 - THETA_FLOOR in steps of 0.01.
THETA_GRID = tuple(round(step / 100, 2) for step in range(1, 100))

T = TypeVar("T")


@dataclass(frozen=True)
class ProtocolScores:
    """One run (or one post-hoc map of a run) under the protocol.

    Attributes:
        theta: the CAM threshold chosen on the validation split (`choose_theta`).
        val: the validation split's scores (at theta).
        test: the test split's scores at theta; its MaxBoxAccV2 and PxAP are threshold-free.
    """

    theta: float
    val: Scores
    test: Scores

    def to_record(self) -> dict[str, Any]:
        return {"theta": self.theta, "val": self.val.to_record(), "test": self.test.to_record()}

    @classmethod
    def from_record(cls, record: Any) -> ProtocolScores:
        """The scores of a record written by `to_record`.

        Raises:
            ValueError: not such a record: not an object, a theta that is no number in
                ``[THETA_FLOOR, 1 - THETA_FLOOR]``, a split that is not an object of metrics,
                or a metric missing or not a number (`Scores.from_record`).
        """
        if not isinstance(record, dict):
            raise ValueError(f"a protocol record is an object, not {type(record).__name__}")
        theta = record.get("theta")
        if (isinstance(theta, bool) or not isinstance(theta, (int, float))
                or not THETA_FLOOR <= theta <= 1 - THETA_FLOOR):
            raise ValueError(f"theta is {theta!r}, not a threshold in [{THETA_FLOOR}, "
                             f"{1 - THETA_FLOOR:g}]")
        for split in ("val", "test"):
            if not isinstance(record.get(split), dict):
                raise ValueError(f"{split!r} is {record.get(split)!r}, not an object of metrics")
        theta = float(theta)
        return cls(theta, Scores.from_record(record["val"], theta),
                   Scores.from_record(record["test"], theta))


def theta_curve(val_maps: MapSet, config: RunConfig) -> dict[float, float]:
    """The validation split's GT-known loc. error (percent) at each theta of `THETA_GRID`,
    under the rule the top-1 loc. error is reported with (Eq. 13's largest-component box,
    IoU >= 0.5): one pass of the evaluator over every threshold."""
    scores = score_maps(val_maps, config, thetas=THETA_GRID, full=False)
    return {theta: scores.at(theta).gt_known_loc_err for theta in THETA_GRID}


def choose_theta(curve: dict[float, float]) -> float:
    """The CAM threshold chosen on the validation split: the theta of `curve` (`theta_curve`)
    with the lowest GT-known loc. error; on a tie, the lowest such theta.

    Raises:
        ValueError: `curve` is empty or has no finite error.
    """
    finite = {theta: error for theta, error in curve.items() if math.isfinite(error)}
    if not finite:
        raise ValueError("no threshold with a finite validation error to choose theta from")
    lowest = min(finite.values())
    return min(theta for theta, error in finite.items() if error == lowest)


def protocol_scores(
    val_maps: MapSet, test_maps: MapSet, config: RunConfig
) -> ProtocolScores:
    """Choose theta on `val_maps` (`theta_curve`), then score both splits there with the full
    metrics (maps in `collect_maps`' form, with masks for PxAP)."""
    theta = choose_theta(theta_curve(val_maps, config))
    val = score_maps(val_maps, config, thetas=(theta,), full=True)
    test = score_maps(test_maps, config, thetas=(theta,), full=True)
    return ProtocolScores(theta, val, test)


def write_protocol(
    run_dir: Path, config: RunConfig, val_maps: MapSet, test_maps: MapSet
) -> ProtocolScores:
    """Score a run under the protocol and write `val_maps.npz` and `protocol.json` into it."""
    scores = protocol_scores(val_maps, test_maps, config)
    save_arrays(run_dir, "val", {k: v for k, v in val_maps.items() if k != "masks"})
    write_json(run_dir / PROTOCOL_FILE, scores.to_record())
    return scores


def read_protocol(run_dir: str | Path) -> ProtocolScores:
    """The protocol's scores of a finished run.

    Raises:
        RunStoreError: the run has no readable `protocol.json` (the message says how to make it).
    """
    path = Path(run_dir) / PROTOCOL_FILE
    if not path.is_file():
        raise RunStoreError(
            f"{path} does not exist: the run was finished before the protocol's files were "
            "written; make them from its final weights with `python -m "
            f"csoa_nb.engine.posthoc_runs backfill {Path(run_dir)}`"
        )
    record = read_json(path, "protocol scores", ("theta", "val", "test"))
    try:
        return ProtocolScores.from_record(record)
    except ValueError as error:
        raise RunStoreError(
            f"{path} is not a record of the protocol's scores ({error}): delete it and make it "
            f"again from the run's final weights with `python -m csoa_nb.engine.posthoc_runs "
            f"backfill {Path(run_dir)}`") from None


def lacks_protocol(run_dir: str | Path, config: RunConfig) -> bool:
    """True for a run of data with a validation split whose folder has no `protocol.json` yet."""
    return has_val_split(config) and not (Path(run_dir) / PROTOCOL_FILE).is_file()


def load_val_maps(run_dir: str | Path) -> MapSet:
    """The validation split's maps of a finished run (`val_maps.npz`)."""
    return load_arrays(run_dir, "val")


def choose_best(candidates: Sequence[tuple[T, float]]) -> T:
    """The candidate with the highest validation score (MaxBoxAccV2): ``(item, score)`` pairs,
    in grid order; a tie keeps the first. NaN (or infinite) scores never win.

    Raises:
        ValueError: no candidate, or none with a finite score.
    """
    finite = [(item, score) for item, score in candidates if math.isfinite(score)]
    if not finite:
        raise ValueError("no candidate with a finite validation score to choose from")
    best = max(score for _, score in finite)
    return next(item for item, score in finite if score == best)
