"""The paper's claims, one row each, against our runs: paper / ours (95 % CI) / verdict.

Each `Claim` says "row A has a lower (or higher) `metric` than row B" in some sweep, with the
paper's own two numbers (`csoa_nb.report.paper`). `claims_table(frame)` measures every claim on
our runs (`csoa_nb.engine.results.runs_frame` of the sweeps), as the paired difference A - B over
seeds with its 95 % confidence interval (`csoa_nb.report.stats.difference`), and writes the
verdict from it, the claims of the table being one family whose p-values are adjusted together
(Holm, `csoa_nb.report.stats.verdicts`):

- **reproduced**: the adjusted p-value is below 5 % and the difference on the paper's side;
- **opposite**: the same, on the other side;
- **suggested**: only the unadjusted p-value is below 5 % (its interval excludes 0, but the
  difference does not survive the adjustment for the family's other tests);
- **not shown**: the unadjusted interval contains 0 (these runs cannot tell A from B);
- **not testable here**: the rows are not in the frame (e.g. real data, a GPU) or one seed.

Rows marked `ours=True` test our extension (the Eq. 10 fix of chapter 04) against the paper's
claim for the module it fixes; they are labelled as ours and sit beside the as-written rows.
Nothing here is typed from a result: every number comes from the frame or the paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from csoa_nb.methods import ROWS, label, row_key
from csoa_nb.report.paper import paper_table
from csoa_nb.report.stats import (
    Difference,
    Verdict,
    Wording,
    bootstrap_difference,
    difference,
    interval_text,
    signed,
    verdict_words,
    verdicts,
)
from csoa_nb.report.vocabulary import column_label, higher_is_better, metric_prose

VERDICTS = ("reproduced", "opposite", "suggested", "not shown", "not testable here")
#: A claim's verdict in words (`claim_word`): "reproduced (Holm, 17 tests)", "suggested (the
#: paper's direction; unadjusted p = 0.048)", "not shown", "not testable here".
CLAIM_WORDS = Wording("reproduced", "opposite",
                      suggested="suggested ({side}; unadjusted p = {p:.3f})",
                      suggested_sides=("the paper's direction", "the opposite direction"),
                      one_seed="not testable here")
#: A claim's verdict as its kind, one of `VERDICTS` (`verdict_kind`): no numbers.
CLAIM_KINDS = Wording("reproduced", "opposite", holm=False, suggested="suggested",
                      one_seed="not testable here")
#: A change in either direction (`differences_frame`, `describe_differences`): "shown (Holm,
#: 3 tests)", "suggested (unadjusted p = 0.031)", "not shown", "one seed".
CHANGE_WORDS = Wording("shown", "shown", suggested="suggested (unadjusted p = {p:.3f})")


@dataclass(frozen=True)
class Claim:
    """"`a` has a lower `metric` than `b`" (or higher, `lower=False`) in the rows where
    `where` holds; the paper's numbers are rows `paper_a` / `paper_b` of its table `table`,
    column `paper_column`."""

    text: str
    metric: str
    a: str
    b: str
    table: str
    paper_a: str
    paper_b: str
    paper_column: str
    by: str = "method"
    where: tuple[tuple[str, object], ...] = (("regime", "pretrained"), ("feature_block", 4))
    lower: bool = True
    ours: bool = False


def _t1(text: str, a: str, b: str, paper_a: str, paper_b: str, metric: str = "top1_loc_err",
        column: str = "Top-1 loc. err", ours: bool = False) -> Claim:
    return Claim(text, metric, a, b, "1", paper_a, paper_b, column, ours=ours)


#: The paper's claims this benchmark can test (Tables 1-3 and Sec. 4.3), in reading order.
CLAIMS: tuple[Claim, ...] = (
    _t1("ConfSeg lowers the top-1 loc. error of the base CAM", "confseg", "cam",
        "VGGnet-ConfSeg", "VGGnet-base"),
    _t1("CoAug lowers the top-1 loc. error of the base CAM", "coaug", "cam",
        "VGGnet-CoAug", "VGGnet-base"),
    _t1("CoAug lowers the top-1 loc. error of the base CAM", "coaug_fix", "cam",
        "VGGnet-CoAug", "VGGnet-base", ours=True),
    _t1("CSoA lowers the top-1 loc. error of the base CAM", "csoa", "cam",
        "VGGnet-CSoA", "VGGnet-base"),
    _t1("CSoA lowers the top-1 loc. error of the base CAM", "csoa_fix", "cam",
        "VGGnet-CSoA", "VGGnet-base", ours=True),
    _t1("CSoA lowers the top-1 loc. error of ConfSeg alone", "csoa", "confseg", "VGGnet-CSoA",
        "VGGnet-ConfSeg"),
    _t1("CSoA lowers the top-1 loc. error of CoAug alone", "csoa", "coaug", "VGGnet-CSoA",
        "VGGnet-CoAug"),
    _t1("CSoA lowers the top-1 loc. error of CoAug alone", "csoa_fix", "coaug_fix",
        "VGGnet-CSoA", "VGGnet-CoAug", ours=True),
    _t1("CSoA lowers the top-1 cls. error of the base CAM", "csoa", "cam", "VGGnet-CSoA",
        "VGGnet-base", metric="top1_cls_err", column="Top-1 cls. err"),
    _t1("CSoA lowers the top-1 cls. error of the base CAM", "csoa_fix", "cam", "VGGnet-CSoA",
        "VGGnet-base", metric="top1_cls_err", column="Top-1 cls. err", ours=True),
    Claim("W_F after block 4 beats block 3 (Table 2)", "top1_loc_err", "4", "3", "2",
          "CSoA-4-5", "CSoA-3-5", "Top-1 loc. err", by="feature_block",
          where=(("regime", "pretrained"), ("method", "csoa"))),
    Claim("W_F after block 4 beats block 5 (Table 2)", "top1_loc_err", "4", "5", "2",
          "CSoA-4-5", "CSoA-5-5", "Top-1 loc. err", by="feature_block",
          where=(("regime", "pretrained"), ("method", "csoa"))),
)


def _paper_numbers(claim: Claim) -> tuple[float, float]:
    table = paper_table(claim.table)
    return (float(table.loc[claim.paper_a, claim.paper_column]),
            float(table.loc[claim.paper_b, claim.paper_column]))


def _rows(frame: pd.DataFrame, claim: Claim, key: str) -> pd.DataFrame:
    selected = frame
    for column, value in claim.where:
        if column in selected:
            selected = selected[selected[column] == value]
    return selected[selected[claim.by].astype(str) == key]


def by_seed(rows: pd.DataFrame, metric: str) -> pd.Series:
    """`metric` of `rows` indexed by their seeds: one side of a paired difference."""
    return pd.Series(rows[metric].to_numpy(dtype=float), index=rows["seed"].to_numpy())


def measure(frame: pd.DataFrame, claim: Claim) -> tuple[Difference | None, pd.DataFrame]:
    """The paired difference A - B of `claim` on `frame` (None when a side has no run), and
    the runs it used."""
    rows_a, rows_b = _rows(frame, claim, claim.a), _rows(frame, claim, claim.b)
    used = pd.concat([rows_a, rows_b])
    if rows_a.empty or rows_b.empty or claim.metric not in frame:
        return None, used
    return difference(by_seed(rows_a, claim.metric), by_seed(rows_b, claim.metric)), used


def verdict_kind(judged: Verdict | None) -> str:
    """One of `VERDICTS` for a claim's verdict (None: not measured)."""
    return verdict_words(judged, CLAIM_KINDS)


def claim_word(judged: Verdict | None) -> str:
    """The verdict of a claim in words (`CLAIM_WORDS`; None: not measured)."""
    return verdict_words(judged, CLAIM_WORDS)


def _label(claim: Claim, key: str) -> str:
    if claim.by == "method":
        return label(key)
    return f"W_F after block {key}"


def claims_table(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """One row per claim of `CLAIMS`: the claim, the metric and the theta its runs were
    scored at, the paper's A - B, ours (mean and unadjusted 95 % CI of A - B, points), the
    verdict (the claims are one family: Holm over those with a test), its kind (`VERDICTS`)
    and the provenance (runs, seeds, trained or loaded, wall time)."""
    measured = [measure(frame, claim) for claim in CLAIMS]
    tested = [(k, diff) for k, (diff, _) in enumerate(measured) if diff is not None]
    judged_list = verdicts([d for _, d in tested], [not CLAIMS[k].lower for k, _ in tested])
    judged: dict[int, Verdict] = {k: v for (k, _), v in zip(tested, judged_list, strict=True)}
    rows = []
    for k, claim in enumerate(CLAIMS):
        pa, pb = _paper_numbers(claim)
        diff, used = measured[k]
        label_a, label_b = _label(claim, claim.a), _label(claim, claim.b)
        if diff is None:
            ours = "–"
        else:
            ours = f"{signed(diff.mean, digits)} {diff.interval(digits)}"
        cached = used["cached"].all() if "cached" in used and len(used) else None
        provenance = (
            f"{len(used)} runs ({'loaded from results/runs' if cached else 'trained'}; "
            f"{used['wall_time_s'].sum() / 60:.0f} min of training), "
            f"{diff.how() if diff else 'no runs'}" if len(used) else "no runs"
        )
        rows.append({
            "claim": claim.text + (" (our Eq. 10 fix)" if claim.ours else ""),
            "compared": f"{label_a} − {label_b}",
            "metric": claim.metric,
            "theta": _thetas(used),
            "paper (A − B)": signed(pa - pb, digits),
            "ours (A − B, 95 % CI)": ours,
            "verdict": claim_word(judged.get(k)),
            "kind": verdict_kind(judged.get(k)),
            "provenance": provenance,
            "hashes": " ".join(sorted(used["hash"])) if "hash" in used else "",
        })
    return pd.DataFrame(rows)


def _thetas(used: pd.DataFrame) -> str:
    """The theta(s) of the runs a claim used ("0.3"; "0.25/0.3" if they differ; "–" if none)."""
    if "theta" not in used or not len(used):
        return "–"
    return "/".join(f"{t:g}" for t in sorted(set(used["theta"])))


def claim_sentence(table: pd.DataFrame, claim: str, compared: str) -> str:
    """A claim of `claims_table` as the book states it: its verdict, then our difference with
    its metric, theta and 95 % CI beside the paper's, e.g. "opposite (Holm, 12 tests): +20.2
    [+14.0, +26.4] points of top-1 loc. error at θ = 0.3 (the paper: -12.6)"."""
    rows = table[(table["claim"] == claim) & (table["compared"] == compared)]
    if rows.empty:
        return "not testable here"
    row = rows.iloc[0]
    if row["ours (A − B, 95 % CI)"] == "–":
        return row["verdict"]
    return (f"{row['verdict']}: {row['ours (A − B, 95 % CI)']} points of "
            f"{metric_prose(row['metric'])} at θ = {row['theta']} (the paper: "
            f"{row['paper (A − B)']})")


def headline(table: pd.DataFrame) -> dict[str, list[str]]:
    """The claims (text, as-written rows and ours apart) grouped by the kind of their verdict
    (`VERDICTS`)."""
    out: dict[str, list[str]] = {v: [] for v in VERDICTS}
    for _, row in table.iterrows():
        out[row["kind"]].append(f"{row['claim']} ({row['compared']})")
    return out


# ------------------------------------------------------------------ re-scored without retraining
def head_ablation(results: list) -> pd.DataFrame:
    """Two-head runs re-scored from their saved test-set maps (no retraining), one row per run:

    - `top1_cls_err` with the class scores averaged over y_L and y_F (how every run is scored,
      Sec. 4.1's two heads) and `top1_cls_err_last` with y_L alone;
    - `max_box_acc_v2` and `gt_known_loc_err` with Eq. 13's union of S_F and S_L, and the
      `_last` versions with S_L alone (the union dropped).

    `results`: `RunResult`s (e.g. `results.run_sweep(...)`); runs without S_F are skipped.
    """
    from csoa_nb.engine.evaluate import score_maps

    rows = []
    for result in results:
        maps = result.eval_maps()
        if maps.get("cam_feature") is None or "probs_last" not in maps:
            continue
        config = result.config
        both = score_maps(maps, config, thetas=(config.theta,), full=True)
        last = score_maps({**maps, "cam_feature": None, "probs": maps["probs_last"]}, config,
                          thetas=(config.theta,), full=True)
        row = {"method": row_key(config), "seed": config.seed, "hash": config.hash}
        for key in ("top1_cls_err", "max_box_acc_v2", "gt_known_loc_err", "top1_loc_err"):
            row[key] = getattr(both, key)
            row[f"{key}_last"] = getattr(last, key)
        rows.append(row)
    return pd.DataFrame(rows)



def _change_verdicts(candidates: dict[str, Difference]) -> dict[str, Verdict]:
    """The candidates as one family (Holm); "shown" means a change (either direction)."""
    judged = verdicts(list(candidates.values()), [True] * len(candidates))
    return dict(zip(candidates, judged, strict=True))


def differences_frame(candidates: dict[str, Difference], metric: str,
                      digits: int = 2) -> pd.DataFrame:
    """One row per named difference: mean, unadjusted 95 % CI, how it was paired, the
    verdict (the candidates are one family: Holm)."""
    judged = _change_verdicts(candidates)
    return pd.DataFrame([
        {"change": name, f"Δ {metric} (points)": diff.mean, "95 % CI": diff.interval(digits),
         "test": diff.how(), "verdict": verdict_words(judged[name], CHANGE_WORDS)}
        for name, diff in candidates.items()
    ])


def describe_differences(candidates: dict[str, Difference], metric: str,
                         digits: int = 1) -> str:
    """Markdown bullets written from the differences (one family, Holm): which changes move
    `metric` beyond their interval after the adjustment, which only before it, which do not,
    and the largest shown one."""
    judged = _change_verdicts(candidates)
    lines = []
    for name, diff in candidates.items():
        word = verdict_words(judged[name], CHANGE_WORDS)
        said = f"- {name}, {metric}: {signed(diff.mean, digits)} points"  # names its metric
        if judged[name].strength == "one seed":
            lines.append(f"{said}, one seed, no interval.")
        elif judged[name].strength == "not shown":
            lines.append(f"{said}, 95 % CI {diff.interval(digits)} contains 0: not shown.")
        else:
            lines.append(f"{said}, 95 % CI {diff.interval(digits)}: {word}.")
    shown = {k: d for k, d in candidates.items() if judged[k].strength == "shown"}
    if shown:
        largest = max(shown, key=lambda k: abs(shown[k].mean))
        lines.append(f"- The largest change of the {metric} that these runs show (Holm over "
                     f"the {judged[largest].family} changes): **{largest}** "
                     f"({signed(shown[largest].mean, digits)} points).")
    else:
        hinted = [k for k in candidates if judged[k].strength == "suggested"]
        said = ("; only suggested, before the adjustment: " + ", ".join(
            f"**{k}** ({signed(candidates[k].mean, digits)} points)" for k in hinted)
            if hinted else "")
        lines.append(f"- No change of the {metric} is shown once adjusted for the "
                     f"{len(candidates)} changes tested together (Holm){said}.")
    return "\n".join(lines)


# ------------------------------------------------------------------ every row against the base
#: What `versus_base` compares: the threshold-free localization metrics first (the headline of
#: Choe et al., CVPR 2020), then the paper's theta-fixed error and the classification error.
VERSUS_METRICS = ("max_box_acc_v2", "pxap", "top1_loc_err", "top1_cls_err")


def versus_cells(frame: pd.DataFrame, regime: str, *, base: str = "cam",
                 metrics: tuple[str, ...] = VERSUS_METRICS) -> pd.DataFrame:
    """Every Table 1 row of `regime` (W_F after block 4) against `base`, one row per (row,
    metric): the paired difference row − base over seeds (`mean`, its unadjusted 95 % CI
    `low`, `high`, in points; `seeds`), and its verdict `word` in the family of all the cells
    (Holm, `stats.verdicts`; "better" from `vocabulary.higher_is_better`) and its `strength`.
    The numbers of chapter 15's row-vs-CAM tables, the abstract and the forest plot."""
    chosen = frame[(frame["regime"] == regime) & (frame["feature_block"] == 4)]
    if base not in set(chosen["method"]):
        raise ValueError(f"no {base!r} run in regime {regime!r}; present: "
                         f"{sorted(set(chosen['method']))}")
    base_runs = chosen[chosen["method"] == base]
    keys = [k for k in ROWS if k != base and k in set(chosen["method"])]
    cells = [(key, metric, difference(by_seed(chosen[chosen["method"] == key], metric),
                                      by_seed(base_runs, metric)))
             for key in keys for metric in metrics]
    judged = verdicts([d for _, _, d in cells], [higher_is_better(m) for _, m, _ in cells])
    return pd.DataFrame([
        {"row": key, "regime": regime, "metric": metric, "mean": diff.mean, "low": diff.low,
         "high": diff.high, "seeds": int(len(chosen[chosen["method"] == key])),
         "strength": verdict_.strength, "word": verdict_words(verdict_)}
        for (key, metric, diff), verdict_ in zip(cells, judged, strict=True)])


def versus_base(frame: pd.DataFrame, regime: str, *, base: str = "cam",
                metrics: tuple[str, ...] = VERSUS_METRICS, digits: int = 1) -> pd.DataFrame:
    """`versus_cells` as a table: a row per Table 1 row, a column per metric ("+1.2 [−0.3,
    +2.7] not shown"), the table's cells one family (Holm). Rows with one seed get no
    interval."""
    cells = versus_cells(frame, regime, base=base, metrics=metrics)
    rows = []
    for key, row_cells in cells.groupby("row", sort=False):
        row = {"row": label(key), "seeds": int(row_cells["seeds"].iloc[0])}
        for cell in row_cells.itertuples():
            row[column_label(cell.metric)] = (
                f"{signed(cell.mean, digits)} {interval_text(cell.low, cell.high, digits)} "
                f"{cell.word}")
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the headline, two intervals
#: The headline claims: each Table 1 row whose CoAug the paper or our fix changes, against CAM.
HEADLINE_KEYS = ("coaug", "csoa", "coaug_fix", "csoa_fix")


def two_intervals(results: list, regime: str = "pretrained", *, base: str = "cam",
                  keys: tuple[str, ...] = HEADLINE_KEYS, replicates: int = 2000,
                  digits: int = 1) -> pd.DataFrame:
    """The headline claims on MaxBoxAccV2 with two intervals: the paired t interval over
    seeds with its verdict (that of `versus_cells`, Holm over the regime's whole row-vs-CAM
    table, so the claim has one word on every page) and a hierarchical bootstrap over seeds
    and test images (`stats.bootstrap_difference`, from each run's saved maps: `box_hits`).

    `results`: `RunResult`s of Table 1's sweep (W_F after block 4 in `regime` is used).
    """
    from csoa_nb.engine.evaluate import box_hits
    from csoa_nb.engine.results import runs_frame
    from csoa_nb.engine.sweeps import regime_of

    chosen = [r for r in results if regime_of(r.config) == regime
              and r.config.feature_block == 4]
    by_row: dict[str, dict[int, Any]] = {}  # row -> seed -> RunResult
    for result in chosen:
        by_row.setdefault(row_key(result.config), {})[result.config.seed] = result
    if base not in by_row:
        raise ValueError(f"no {base!r} run in regime {regime!r}")
    hits = {key: {seed: box_hits(run.eval_maps()) for seed, run in runs.items()}
            for key, runs in by_row.items() if key in (base, *keys)}
    cells = versus_cells(runs_frame(chosen), regime, base=base).set_index(["row", "metric"])
    rows = []
    for key in (k for k in keys if k in hits):
        cell = cells.loc[(key, "max_box_acc_v2")]
        boot = bootstrap_difference(hits[key], hits[base], replicates=replicates)
        rows.append({
            "row − CAM": f"{label(key)} − {label(base)}",
            "seeds": int(cell["seeds"]),
            "Δ MaxBoxAccV2 (points)": signed(cell["mean"], digits),
            "t interval over seeds (95 %)": interval_text(cell["low"], cell["high"], digits),
            "verdict (t, Holm)": cell["word"],
            "bootstrap, seeds and images (95 %)": boot.interval(digits),
        })
    return pd.DataFrame(rows)
