"""Which rows of the paper's Tables 1, 4, 5 and 6 our rows stand for (`methods.paper_rows`, one
place), our rows beside them, and the sentence that sets the two orders side by side
(`prose.orders_beside`). The paper's numbers are those of `paper_tables.json`; ours are made up
so that every mean can be checked by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from csoa_nb import methods
from csoa_nb.methods.posthoc import POSTHOC_KINDS
from csoa_nb.report import prose, tables, vocabulary
from csoa_nb.report.paper import paper_table


def test_the_comparison_tables_match_only_the_vgg_rows_we_re_implement():
    assert methods.paper_rows(4) == {
        "VGGnet-GAP": "cam", "VGGnet-ACoL": "acol", "VGGnet-ADL": "adl", "VGGnet-Ours": "csoa",
    }
    # Table 5's CSoA row is GoogLeNet's; its Grad-CAM row is post-hoc, not a row of ours
    assert methods.paper_rows(5) == {
        "VGGnet-GAP": "cam", "VGGnet-ACoL": "acol", "VGGnet-ADL": "adl",
    }
    # Table 6: GAP and HaS with AlexNet / GoogLeNet, "SPG" and "ADL" with no backbone
    assert methods.paper_rows("6") == {"VGGnet-ACoL": "acol"}
    assert methods.posthoc_paper_rows(5) == {"VGGnet-Grad": "gradcam"}
    assert methods.posthoc_paper_rows(4) == methods.posthoc_paper_rows(6) == {}
    # Table 1 as before; Tables 2 and 3 are settings of CSoA, not methods
    assert methods.paper_rows(1) == {
        "VGGnet-base": "cam", "VGGnet-ConfSeg": "confseg", "VGGnet-CoAug": "coaug",
        "VGGnet-CSoA": "csoa",
    }
    assert methods.paper_rows(2) == methods.paper_rows(3) == methods.posthoc_paper_rows(1) == {}
    assert vocabulary.paper_row_map(4) == {
        "VGGnet-GAP": "CAM (base)", "VGGnet-ACoL": "ACoL", "VGGnet-ADL": "ADL",
        "VGGnet-Ours": "CSoA (as written)",
    }


@pytest.mark.parametrize("table", [1, 4, 5, 6])
def test_matched_rows_are_vgg_rows_of_the_papers_table_in_its_order(table):
    paper = list(paper_table(table).index)
    rows, posthoc = methods.paper_rows(table), methods.posthoc_paper_rows(table)
    assert list(rows) == [row for row in paper if row in rows]
    assert set(posthoc) <= set(paper)
    assert all(row.startswith("VGGnet-") for row in (*rows, *posthoc))
    assert set(rows.values()) <= set(methods.ROWS)
    assert set(posthoc.values()) <= set(POSTHOC_KINDS)
    # a row of ours (e.g. the Eq. 10 fix) never stands for a row of the paper
    assert not any(methods.ROWS[key].ours for key in rows.values())


@pytest.mark.parametrize("table", [0, 7, "seven", None, 2.5, True])
def test_a_table_the_paper_lacks_is_refused(table):
    with pytest.raises(ValueError, match="Tables 1-6"):
        methods.paper_rows(table)
    with pytest.raises(ValueError, match="Tables 1-6"):
        methods.posthoc_paper_rows(table)


# method: (top-1 loc. err, top-5 loc. err, top-1 cls. err) of seeds 0 and 1
OURS = {
    "cam": ((49, 40, 6), (51, 40, 6)),  # top-1 50.00 ± 1.41
    "acol": ((45, 42, 7), (45, 42, 7)),
    "adl": ((52, 10, 8), (52, 10, 8)),
    "csoa": ((40, 30, 5), (40, 30, 5)),
    "csoa_fix": ((30, 20, 4), (30, 20, 4)),  # ours: no row of the paper
}


@pytest.fixture
def ours4() -> pd.DataFrame:
    frame = pd.DataFrame([
        {"method": key, "regime": "pretrained", "seed": seed, "top1_loc_err": top1,
         "top5_loc_err": top5, "top1_cls_err": cls}
        for key, runs in OURS.items() for seed, (top1, top5, cls) in enumerate(runs)
    ])
    return tables.ours_table(frame, ["top1_loc_err", "top5_loc_err", "top1_cls_err"],
                             regime="pretrained")


def test_our_rows_beside_the_matching_rows_of_table_4(ours4):
    paper4 = paper_table(4)
    matched = paper4[paper4.index.isin(methods.paper_rows(4))]
    out = tables.side_by_side(matched, ours4, "ours, test", row_map=vocabulary.paper_row_map(4))
    paper = paper4.attrs["label"]
    assert list(out.index) == ["CAM (base)", "ACoL", "ADL", "CSoA (as written)",
                               "CSoA+fix (ours)"]
    assert list(out[(paper, "paper row")]) == ["VGGnet-GAP", "VGGnet-ACoL", "VGGnet-ADL",
                                               "VGGnet-Ours", ""]
    assert list(out[(paper, "Top-1 loc. err")]) == ["55.85", "54.08", "47.64", "37.69", ""]
    assert out.loc["ADL", (paper, "Top-5 loc. err")] == vocabulary.MISSING
    assert list(out[("ours, test", "Top-1 loc. err")]) == [
        "50.0 ± 1.4", "45.0 ± 0.0", "52.0 ± 0.0", "40.0 ± 0.0", "30.0 ± 0.0"]


def test_our_rows_stacked_below_the_matching_rows_of_table_4(ours4):
    paper4 = paper_table(4)
    matched = paper4[paper4.index.isin(methods.paper_rows(4))]
    out = tables.side_by_side(matched, ours4, "ours, test", row_map=vocabulary.paper_row_map(4),
                              stacked=True)
    paper = paper4.attrs["label"]
    names = ["CAM (base)", "ACoL", "ADL", "CSoA (as written)"]
    assert out.index.names == ["source", "Method"]
    # the paper's rows named as ours; ours in the order of the rows they stand for (not the
    # registry's: CAM, CSoA, the fix, ACoL, ADL), then the fix, which stands for none
    assert list(out.index) == ([(paper, name) for name in names]
                               + [("ours, test", name) for name in names]
                               + [("ours, test", "CSoA+fix (ours)")])
    assert list(out.columns) == ["paper row", "Top-1 loc. err", "Top-5 loc. err",
                                 "Top-1 cls. err", "Top-5 cls. err"]
    assert list(out["paper row"]) == ["VGGnet-GAP", "VGGnet-ACoL", "VGGnet-ADL", "VGGnet-Ours",
                                      "", "", "", "", ""]
    assert list(out["Top-1 loc. err"]) == ["55.85", "54.08", "47.64", "37.69", "50.0 ± 1.4",
                                           "45.0 ± 0.0", "52.0 ± 0.0", "40.0 ± 0.0",
                                           "30.0 ± 0.0"]
    assert out.loc[(paper, "ADL"), "Top-5 loc. err"] == vocabulary.MISSING
    assert out.loc[("ours, test", "ADL"), "Top-5 cls. err"] == ""  # a column ours lacks


def test_orders_beside_counts_the_pairs_on_which_the_orders_agree(ours4):
    paper4, row_map = paper_table(4), vocabulary.paper_row_map(4)
    # paper: CSoA 37.69 < ADL 47.64 < ACoL 54.08 < CAM 55.85; ours: CSoA 40 < ACoL 45 < CAM 50
    # < ADL 52. Of the 6 pairs, ADL-ACoL and ADL-CAM are ordered the other way: 4 agree.
    assert prose.orders_beside(paper4, ours4, "top1_loc_err", row_map) == (
        "By top-1 loc. error, best first: the paper's rows CSoA (as written) 37.69, ADL 47.64, "
        "ACoL 54.08, CAM (base) 55.85; ours CSoA (as written) 40.00, ACoL 45.00, "
        "CAM (base) 50.00, ADL 52.00. The two orders agree on 4 of the 6 pairs of methods.")
    # top-5: the paper has no number for ADL ("–"), so ADL is left out; paper CSoA 26.49 <
    # ACoL 43.49 < CAM 47.84, ours CSoA 30 < CAM 40 < ACoL 42: ACoL-CAM disagrees, 2 of 3
    assert prose.orders_beside(paper4, ours4, "top5_loc_err", row_map) == (
        "By top-5 loc. error, best first: the paper's rows CSoA (as written) 26.49, "
        "ACoL 43.49, CAM (base) 47.84; ours CSoA (as written) 30.00, CAM (base) 40.00, "
        "ACoL 42.00. The two orders agree on 2 of the 3 pairs of methods.")
    # top-1 cls: paper Ours 21.4 < GAP 23.4 < ACoL 28.1 < ADL 34.7, ours 5 < 6 < 7 < 8
    assert prose.orders_beside(paper4, ours4, "top1_cls_err", row_map).endswith(
        "the paper's rows CSoA (as written) 21.4, CAM (base) 23.4, ACoL 28.1, ADL 34.7; ours "
        "CSoA (as written) 5.00, CAM (base) 6.00, ACoL 7.00, ADL 8.00. The two orders are the "
        "same.")


def test_orders_beside_a_tie_does_not_agree(ours4):
    paper4, row_map = paper_table(4), vocabulary.paper_row_map(4)
    tied = ours4.copy()
    tied.attrs = {**ours4.attrs, "mean": ours4.attrs["mean"].copy()}
    tied.attrs["mean"].loc["ACoL", "Top-1 loc. err"] = 50.0  # ties CAM (base)
    # pairs as above, but ACoL-CAM is now a tie: 3 of 6
    assert prose.orders_beside(paper4, tied, "top1_loc_err", row_map).endswith(
        "The two orders agree on 3 of the 6 pairs of methods.")


def test_orders_beside_with_one_matched_row_and_bad_columns():
    frame = pd.DataFrame([{"method": "acol", "regime": "pretrained", "seed": 0,
                           "gt_known_loc_err": 20.0},
                          {"method": "cam", "regime": "pretrained", "seed": 0,
                           "gt_known_loc_err": 30.0}])
    ours6 = tables.ours_table(frame, ["gt_known_loc_err"], regime="pretrained")
    assert prose.orders_beside(paper_table(6), ours6, "gt_known_loc_err",
                               vocabulary.paper_row_map(6)) == (
        "By GT-known loc. error, only ACoL stands in both the paper's table and ours: there is "
        "no order to compare.")
    with pytest.raises(ValueError, match="no column 'Top-1 loc. err'"):
        prose.orders_beside(paper_table(6), ours6, "top1_loc_err", vocabulary.paper_row_map(6))
    with pytest.raises(ValueError, match="our table has no column 'Top-1 loc. err'"):
        prose.orders_beside(paper_table(4), ours6, "top1_loc_err", vocabulary.paper_row_map(4))
