"""Chapter 14's frames: the rows of the comparison, the protocol frame, the search frame and the
differences from a base row with their verdicts (the package docstring describes each).

Only `protocol_frame` reads run folders (and `csoa_nb.report.wsol.figures.sample_maps`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from csoa_nb import methods
from csoa_nb.engine.baselines import TRIVIAL_KINDS, trivial_protocol
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.posthoc_runs import posthoc_scores
from csoa_nb.engine.protocol import ProtocolScores, read_protocol
from csoa_nb.engine.runs import RunResult
from csoa_nb.engine.sweeps import regime_of
from csoa_nb.methods.posthoc import POSTHOC_KINDS
from csoa_nb.report.findings import by_seed
from csoa_nb.report.stats import (
    Difference,
    Verdict,
    Wording,
    difference,
    one_sample,
    verdict_words,
    verdicts,
)
from csoa_nb.report.vocabulary import MISSING, higher_is_better

#: The rows of the comparison that are no method of the registry: label and colour.
EXTRA_ROWS: dict[str, tuple[str, str]] = {
    "full_image": ("full-image box", "#525252"),
    "center_gaussian": ("centred Gaussian", "#000000"),
    "gradcam": ("Grad-CAM", "#637939"),
    "gradcampp": ("Grad-CAM++", "#bd9e39"),
    "scorecam": ("Score-CAM", "#ad494a"),
}
#: Table order: the trivial baselines, CAM and its post-hoc maps, the other WSOL methods
#: (`methods.WSOL_SPECS`), CSoA as written and with our fix of Eq. 10.
ROW_ORDER: tuple[str, ...] = (
    *TRIVIAL_KINDS, "cam", *POSTHOC_KINDS, *(spec.key for spec in methods.WSOL_SPECS),
    "csoa", "csoa_fix",
)
#: What made each kind of row's map.
FAMILIES = ("trivial", "post-hoc", "trained")
#: The row every other row is compared with, and the trivial bar a method should clear.
BASE = "cam"
GAUSSIAN = "center_gaussian"
#: The columns of the main table: Choe et al.'s headline metrics (threshold-free), the top-1
#: loc. error at the chosen theta, the classification error.
MAIN_METRICS = ("max_box_acc_v2", "pxap", "top1_loc_err", "top1_cls_err")
#: The metrics the verdict paragraph reads (Choe et al.'s headline).
HEADLINE_METRICS = ("max_box_acc_v2", "pxap")
#: The box errors, which depend on the CAM threshold theta (their headers name it; not
#: `csoa_nb.core.scores.THETA_METRICS`, which also holds the classification errors).
BOX_ERRORS = ("top1_loc_err", "gt_known_loc_err")
#: A method's setting (a `RunConfig` field), as the grid table names it: the label on its
#: settings class (`csoa_nb.methods.settings_table`).
SETTING_LABELS = {name: item.label for name, item in methods.settings_table().items()}
#: Verdicts of a difference row − base, within the family of one regime's table (Holm,
#: `stats.verdicts`): shown better / worse after the adjustment; suggested (only the
#: unadjusted interval excludes 0); not shown; no interval (one seed); no number (a trivial map
#: has no classification error).
VERDICT_WORDS = ("better", "worse", "suggested better", "suggested worse", "not shown",
                 "one seed", "n/a")
#: The words of those verdicts (`verdict_word`): "better" / "worse" as in
#: `stats.BETTER_WORSE`, without the family's size or the p-value.
KIND_WORDS = Wording(holm=False, suggested="suggested {side}")


# ------------------------------------------------------------------------------ row names
def row_label(key: str) -> str:
    """The label of a row of the comparison (the registry's for a method: "CSoA+fix (ours)")."""
    return EXTRA_ROWS[key][0] if key in EXTRA_ROWS else methods.label(key)


def row_color(key: str) -> str:
    """The colour of a row in every figure (the registry's for a method)."""
    if key in EXTRA_ROWS:
        return EXTRA_ROWS[key][1]
    return methods.ROWS[key].color if key in methods.ROWS else "#1f77b4"


def family(key: str) -> str:
    """"trivial" (looks at no image), "post-hoc" (maps of the trained CAM network) or
    "trained" (a method of the registry)."""
    if key in TRIVIAL_KINDS:
        return "trivial"
    return "post-hoc" if key in POSTHOC_KINDS else "trained"


def ordered(keys: Iterable[str]) -> list[str]:
    """`keys` in `ROW_ORDER`, unknown keys after them in their first order."""
    keys = list(dict.fromkeys(keys))
    return [k for k in ROW_ORDER if k in keys] + [k for k in keys if k not in ROW_ORDER]


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


# ------------------------------------------------------------------------------ the frames
def protocol_record(
    key: str, regime: str, seed: int | None, run_hash: str, scores: ProtocolScores,
    sigma: float | None = None,
) -> dict[str, Any]:
    """One row of the protocol frame: the map `key` of a run (or a trivial baseline, `seed`
    None) in `regime`, scored under the protocol. Metrics in percent, NaN where not computed
    (PxAP without masks; a trivial map's classification errors)."""
    test = scores.test
    return {
        "method": key,
        "family": family(key),
        "regime": regime,
        "seed": math.nan if seed is None else float(seed),
        "hash": run_hash,
        "theta": float(scores.theta),
        "max_box_acc_v2": _nan(test.max_box_acc_v2),
        "pxap": _nan(test.pxap),
        "top1_loc_err": _nan(test.top1_loc_err),
        "top1_cls_err": _nan(test.top1_cls_err),
        "gt_known_loc_err": _nan(test.gt_known_loc_err),
        "val_max_box_acc_v2": _nan(scores.val.max_box_acc_v2),
        "sigma": _nan(sigma),
    }


def protocol_frame(runs: Sequence[RunResult], *, trivial: bool = True) -> pd.DataFrame:
    """The protocol frame (`csoa_nb.report.wsol`'s docstring) of the runs of the "wsol"
    sweep: each run's `protocol.json`; each CAM run's post-hoc maps (`posthoc_scores`: read,
    or made when missing, about a minute per run at the cpu preset); with `trivial`, the two
    trivial baselines once per regime (on the data of that regime's first CAM run)."""
    rows, cam_configs = [], {}
    for run in runs:
        config = run.config
        key, regime = methods.row_key(config), regime_of(config)
        rows.append(protocol_record(key, regime, config.seed, config.hash,
                                    read_protocol(run.run_dir)))
        if config.method == BASE:
            cam_configs.setdefault(regime, config)
            for kind, scores in posthoc_scores(run.run_dir).items():
                rows.append(protocol_record(kind, regime, config.seed, config.hash, scores))
    if trivial:
        for regime, config in cam_configs.items():
            for kind in TRIVIAL_KINDS:
                scores, sigma = trivial_protocol(config, kind)
                rows.append(protocol_record(kind, regime, None, "", scores, sigma))
    return pd.DataFrame(rows)


def search_frame(
    entries: Iterable[tuple[RunConfig, ProtocolScores]],
    chosen: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per run of the "wsol_search" grid: `method`, `setting` (the searched field),
    `value`, `seed`, `val_max_box_acc_v2` and `theta` on the validation split, `chosen` (the
    value is that of `chosen[method]`, i.e. `sweeps.chosen_settings`), `hash`.

    Raises:
        ValueError: a method's spec searches no field, or several (the grid table shows one).
    """
    rows = []
    for config, scores in entries:
        grid = methods.method_spec(config.method).search
        if len(grid) != 1:
            raise ValueError(f"method {config.method!r} searches {list(grid)}: the grid table "
                             "shows exactly one searched field per method")
        (setting,) = grid
        value = getattr(config, setting)
        rows.append({
            "method": config.method, "setting": setting, "value": value, "seed": config.seed,
            "val_max_box_acc_v2": _nan(scores.val.max_box_acc_v2), "theta": scores.theta,
            "chosen": chosen.get(config.method, {}).get(setting) == value,
            "hash": config.hash,
        })
    return pd.DataFrame(rows)


#: The words of a search's margin (`search_margins`): whether the seeds resolve the choice.
MARGIN_WORDS = Wording(positive="resolved", negative="resolved",
                       suggested="not resolved (unadjusted p = {p:.3f})",
                       not_shown="not resolved", one_seed="one seed")


def search_margins(search: pd.DataFrame) -> pd.DataFrame:
    """How clearly each method's search chose (one row per method, in `search`'s order): the
    chosen value and the runner-up (the second-best mean validation MaxBoxAccV2 over the
    search seeds), the margin between them with its 95 % t interval paired by seed
    (`stats.difference`) and `word`: "resolved" when the margin is shown, the p-values
    Holm-adjusted over the methods (`stats.verdicts`, `MARGIN_WORDS`), else "not resolved".
    Columns: `method`, `setting`, `chosen`, `runner_up`, `margin`, `low`, `high`, `p`, `word`.
    """
    rows, diffs = [], []
    for method, runs in search.groupby("method", sort=False):
        means = runs.groupby("value", sort=False)["val_max_box_acc_v2"].mean()
        (chosen,) = runs.loc[runs["chosen"], "value"].unique()
        runner_up = means.drop(chosen).dropna().idxmax()

        def by_seed_of(value: Any, runs: pd.DataFrame = runs) -> pd.Series:
            point = runs[runs["value"] == value]
            return point.set_index("seed")["val_max_box_acc_v2"]

        diff = difference(by_seed_of(chosen), by_seed_of(runner_up))
        diffs.append(diff)
        rows.append({"method": method, "setting": runs["setting"].iloc[0], "chosen": chosen,
                     "runner_up": runner_up, "margin": diff.mean, "low": diff.low,
                     "high": diff.high, "p": diff.p})
    judged = verdicts(diffs, [True] * len(diffs))
    for row, verdict in zip(rows, judged, strict=True):
        row["word"] = verdict_words(verdict, MARGIN_WORDS)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ differences
def verdict_word(judged: Verdict, mean: float) -> str:
    """One of `VERDICT_WORDS` for a difference row − base and its verdict in the family
    (`stats.verdicts`; the direction of "better" from `vocabulary.higher_is_better`): "n/a"
    without a number; otherwise `stats.verdict_words` in `KIND_WORDS`."""
    if math.isnan(mean):
        return "n/a"
    return verdict_words(judged, KIND_WORDS)


def _seeded(rows: pd.DataFrame) -> bool:
    return bool(len(rows)) and bool(rows["seed"].notna().all())


_NONE = Difference(math.nan, math.nan, math.nan, 0, False)


def _compare(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[Difference, str]:
    """The difference a − b of `metric` (`stats.Difference`) and the test that made it."""
    if _seeded(a) and _seeded(b):
        va, vb = by_seed(a, metric).dropna(), by_seed(b, metric).dropna()
        if va.empty or vb.empty:
            return _NONE, "–"
        diff = difference(va, vb)
        return diff, "paired t" if diff.paired else "Welch t"
    # one side is a trivial map: one exact value, no seed noise; the interval is the other
    # side's (a one-sample t interval of its per-seed differences from that value)
    if _seeded(a):
        values = a[metric].astype(float) - float(b[metric].astype(float).mean())
    else:
        values = float(a[metric].astype(float).mean()) - b[metric].astype(float)
    values = values.dropna()
    if values.empty:
        return _NONE, "–"
    return one_sample(values), "one-sample t"


def differences(
    frame: pd.DataFrame, regime: str, *, base: str = BASE,
    metrics: Sequence[str] = MAIN_METRICS,
) -> pd.DataFrame:
    """Every row of `regime` minus `base`, one line per (row, metric): `method`, `family`,
    `metric`, `mean`, `low`, `high` (unadjusted 95 % CI, points), `n`, `test`, `p` (the t
    test's), `p_holm` and `tests` (Holm over the frame's lines, which are one family: the
    printed table), `verdict` (`verdict_word`) and `word` (`stats.verdict_words`).

    Rows with seeds against a base with seeds: paired by seed (`stats.difference`; Welch's
    t if the seeds differ). A trivial row against a base with seeds, or a row with seeds
    against a trivial base: the trivial map's one exact value against the other side's
    per-seed values, a one-sample t interval ("unpaired"). Two trivial rows are not compared
    (no seeds on either side, nothing to put an interval on).

    Raises:
        ValueError: `base` has no row in `regime`.
    """
    chosen = frame[frame["regime"] == regime]
    base_rows = chosen[chosen["method"] == base]
    if base_rows.empty:
        raise ValueError(f"no {base!r} row in regime {regime!r}; present: "
                         f"{sorted(set(chosen['method']))}")
    lines = []
    for key in ordered(chosen["method"]):
        rows = chosen[chosen["method"] == key]
        if key == base or not (_seeded(rows) or _seeded(base_rows)):
            continue
        lines += [(key, metric, *_compare(rows, base_rows, metric)) for metric in metrics]
    judged = verdicts([diff for *_, diff, _ in lines],
                      [higher_is_better(metric) for _, metric, *_ in lines])
    out = [{"method": key, "family": family(key), "base": base, "metric": metric,
            "mean": diff.mean, "low": diff.low, "high": diff.high, "n": diff.n, "test": test,
            "p": diff.p, "p_holm": verdict_.p_adjusted, "tests": verdict_.family,
            "verdict": verdict_word(verdict_, diff.mean),
            "word": MISSING if math.isnan(diff.mean) else verdict_words(verdict_)}
           for (key, metric, diff, test), verdict_ in zip(lines, judged, strict=True)]
    return pd.DataFrame(out, columns=["method", "family", "base", "metric", "mean", "low",
                                      "high", "n", "test", "p", "p_holm", "tests", "verdict",
                                      "word"])

