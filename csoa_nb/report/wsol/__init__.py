"""CSoA among WSOL methods under Choe et al.'s protocol: chapter 14's frames, tables, sentences
and figures.

Choe, Oh, Lee, Chun, Akata and Shim ("Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020) choose each method's hyperparameter and its CAM threshold on a validation
split with boxes and score the test split once (`csoa_nb.engine.protocol`). This package puts
every map of the comparison under that protocol side by side:

* the **protocol frame** (`protocol_frame`, one row per scored map): the trained runs of the
  "wsol" sweep (`csoa_nb.engine.sweeps`: CAM, CSoA as written and with our fix of Eq. 10,
  HaS, ACoL, ADL, CutMix), the post-hoc maps of each CAM run (Grad-CAM, Grad-CAM++, Score-CAM,
  `csoa_nb.engine.posthoc_runs`) and the two trivial baselines of each regime (full-image box,
  centred Gaussian, `csoa_nb.engine.baselines.trivial_protocol`; they look at no image, so they
  have no seed, and no classifier, so their top-1 errors are NaN). Its columns are those of
  `results.runs_frame` that the tables read (`method`: the row key, `regime`, `seed`, `hash`,
  the metrics) plus `family` ("trivial", "post-hoc", "trained"), `theta` (chosen on the
  validation split), `val_max_box_acc_v2` and `sigma` (the centred Gaussian's, in map cells);
* the **search frame** (`search_frame`): one row per run of the "wsol_search" grid, with its
  validation MaxBoxAccV2 and whether it was chosen (`sweeps.chosen_settings`); from it the
  **margins** (`search_margins`): the chosen value against the runner-up, paired over the
  search seeds, "resolved" or not;
* the **differences** (`differences`): each row minus a base row (CAM, or the centred
  Gaussian), paired by seed with Student's t (`csoa_nb.report.stats.difference`), or, where one
  side is a trivial baseline (one exact value, no seed noise), a one-sample t interval of
  the other side's per-seed values; a verdict from the interval, as `findings.versus_base`.

By kind: `frames` (the rows, the frames, the differences and their verdicts), `tables`
(`search_table`, `margin_table`, `summary_table`, `versus_table`, `fixed_theta_table`,
`provenance_table`), `prose` (`verdict_markdown`, `headline`) and `figures`
(`plot_accuracy_vs_classification`, `plot_method_maps` and the maps they draw,
`sample_maps`). Only `protocol_frame` and
`sample_maps` read run folders.
"""

from csoa_nb.report.wsol.figures import (
    gt_class_maps,
    plot_accuracy_vs_classification,
    plot_method_maps,
    sample_maps,
    trivial_sample_maps,
)
from csoa_nb.report.wsol.frames import (
    BASE,
    EXTRA_ROWS,
    FAMILIES,
    GAUSSIAN,
    HEADLINE_METRICS,
    MAIN_METRICS,
    MARGIN_WORDS,
    ROW_ORDER,
    SETTING_LABELS,
    VERDICT_WORDS,
    differences,
    family,
    protocol_frame,
    protocol_record,
    row_color,
    row_label,
    search_frame,
    search_margins,
    verdict_word,
)
from csoa_nb.report.wsol.prose import headline, verdict_markdown
from csoa_nb.report.wsol.tables import (
    DIRECTION_KEY,
    fixed_theta_table,
    margin_table,
    metric_header,
    provenance_table,
    search_table,
    spread_cell,
    summary_table,
    versus_table,
)

__all__ = [
    "BASE",
    "DIRECTION_KEY",
    "EXTRA_ROWS",
    "FAMILIES",
    "GAUSSIAN",
    "HEADLINE_METRICS",
    "MAIN_METRICS",
    "MARGIN_WORDS",
    "ROW_ORDER",
    "SETTING_LABELS",
    "VERDICT_WORDS",
    "differences",
    "family",
    "fixed_theta_table",
    "gt_class_maps",
    "headline",
    "margin_table",
    "metric_header",
    "plot_accuracy_vs_classification",
    "plot_method_maps",
    "protocol_frame",
    "protocol_record",
    "provenance_table",
    "row_color",
    "row_label",
    "sample_maps",
    "search_frame",
    "search_margins",
    "search_table",
    "spread_cell",
    "summary_table",
    "trivial_sample_maps",
    "verdict_markdown",
    "verdict_word",
    "versus_table",
]
