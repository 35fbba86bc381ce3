"""The WSOL methods and their registry: the one place that says what each method is.

Every method is a `MethodSpec` (key, label, colour, the paper's row, the heads and losses it
trains, its loss function, whether it is ours) defined in its own module; `SPECS` lists them
in table order. Every row of the method tables is a `TableRow` (a method plus the `RunConfig`
fields of the row: "coaug_fix" / "csoa_fix" are CoAug / CSoA with our reading of Eq. 10).
Configuration, training, the sweeps, the tables and the figures all read them from here.

Which row of the paper each of our rows stands for is said here too: Table 1's rows by each
method's `MethodSpec.paper_row`, the rows of the comparison Tables 4-6 (other WSOL methods,
quoted from their papers) by `COMPARISON_ROWS`; `paper_rows(table)` gives either.

Adding a method: write `csoa_nb/methods/<name>.py` with its loss function, its settings and
its `MethodSpec`, and add the spec to `CSOA_SPECS` or `WSOL_SPECS` (it then gets a table row of
its own). A method's hyperparameters are its spec's `settings`, a frozen dataclass
(`csoa_nb.methods.settings`: names, defaults, checks, labels, search grid) whose fields become
`RunConfig` fields of the same names (`settings_table`, read from `METHODS` when a config is
made); its training-time hooks are the spec's `augment` (a batch transform) and `model` (its
network, made from the plain one), which receive an instance of it, as `losses` does.
"""

from __future__ import annotations

from typing import Any

from csoa_nb.methods import acol, adl, cam, csoa, cutmix, has
from csoa_nb.methods.settings import Setting, setting_table
from csoa_nb.methods.spec import LossFn, MethodSpec, Parts, TableRow

__all__ = [
    "COMPARISON_ROWS",
    "CSOA_SPECS",
    "METHODS",
    "POSTHOC_PAPER_ROWS",
    "ROWS",
    "SPECS",
    "Setting",
    "TABLE1_ROWS",
    "WSOL_SPECS",
    "LossFn",
    "MethodSpec",
    "Parts",
    "TableRow",
    "label",
    "method_spec",
    "paper_rows",
    "posthoc_paper_rows",
    "row_key",
    "setting_label",
    "settings_table",
]

#: CSoA, its parts and our ablation: the methods of the paper's Table 1.
CSOA_SPECS: tuple[MethodSpec, ...] = (cam.CAM, csoa.TWOHEAD, csoa.CONFSEG, csoa.COAUG, csoa.CSOA)
#: The WSOL methods CSoA is compared with, under Choe et al.'s protocol.
WSOL_SPECS: tuple[MethodSpec, ...] = (has.HAS, acol.ACOL, adl.ADL, cutmix.CUTMIX)
#: Every trainable method, in table order.
SPECS: tuple[MethodSpec, ...] = CSOA_SPECS + WSOL_SPECS
#: `RunConfig.method` -> its spec.
METHODS: dict[str, MethodSpec] = {spec.key: spec for spec in SPECS}

#: Our variants: Eq. 10's confident background below the map's mean (chapter 04). Their
#: labels carry no comma ("CSoA+fix (ours)"), so that a list of rows never reads as CSoA as
#: written followed by a fix.
_FIX_ROWS = (
    TableRow("coaug_fix", csoa.COAUG, {"coaug_background": "below_mean"},
             label="CoAug+fix (ours)", color="#9467bd", ours=True),
    TableRow("csoa_fix", csoa.CSOA, {"coaug_background": "below_mean"},
             label="CSoA+fix (ours)", color="#2ca02c", ours=True),
)


def _method_row(spec: MethodSpec) -> TableRow:
    """The row of a method as it is (a CoAug method with Eq. 10 as written)."""
    return TableRow(spec.key, spec, {"coaug_background": "paper"} if spec.parts.coaug else {})


#: The rows of Table 1 (the Table 1 sweep, `csoa_nb.engine.sweeps`): every method of
#: `CSOA_SPECS` as it is, then our variants.
TABLE1_ROWS: tuple[str, ...] = (
    *(spec.key for spec in CSOA_SPECS), *(row.key for row in _FIX_ROWS)
)
#: The rows of the method tables, in table order: Table 1's rows, then the WSOL methods of
#: `WSOL_SPECS`.
ROWS: dict[str, TableRow] = {
    row.key: row
    for row in (
        *(_method_row(spec) for spec in CSOA_SPECS),
        *_FIX_ROWS,
        *(_method_row(spec) for spec in WSOL_SPECS),
    )
}


#: The rows of the paper's comparison tables (Table 4: CUB-200-2011; 5: ILSVRC; 6: ILSVRC,
#: GT-known), which quote other WSOL methods from their papers, that a row of ours
#: re-implements: paper row -> our row (a key of `ROWS`), in the paper's order. "GAP" is CAM,
#: Table 4's "Ours" CSoA as the paper writes it. Only the "VGGnet-" rows: our backbones are
#: VGG16 and `vgg_slim` (VGG16's five blocks, narrower), and a method's number depends on its
#: backbone. The GoogLeNet and AlexNet rows have no row of ours (the paper's own row in Tables
#: 5 and 6 is GoogLeNet-CSoA), nor have Table 6's "SPG" and "ADL", which name no backbone;
#: SPG, DANet, CCAM, BP and NL-CCAM are not re-implemented.
COMPARISON_ROWS: dict[int, dict[str, str]] = {
    4: {"VGGnet-GAP": "cam", "VGGnet-ACoL": "acol", "VGGnet-ADL": "adl",
        "VGGnet-Ours": "csoa"},
    5: {"VGGnet-GAP": "cam", "VGGnet-ACoL": "acol", "VGGnet-ADL": "adl"},
    6: {"VGGnet-ACoL": "acol"},
}
#: The rows of Tables 4-6 that a post-hoc map of ours re-implements: paper row -> map kind
#: (`csoa_nb.methods.posthoc.POSTHOC_KINDS`). Table 5's "VGGnet-Grad" is Grad-CAM on a trained
#: VGG16. Kept apart from `COMPARISON_ROWS` because a post-hoc map is not a row of `ROWS`: it
#: is no training run (no `RunConfig.method`, no `RunResult.scores` at the paper's fixed
#: theta) but a map of a trained CAM network, scored under Choe et al.'s protocol only
#: (`csoa_nb.engine.posthoc_runs`); the chapter of that protocol shows it.
POSTHOC_PAPER_ROWS: dict[int, dict[str, str]] = {
    5: {"VGGnet-Grad": "gradcam"},
}


def method_spec(key: str) -> MethodSpec:
    """The spec of method `key`; a ValueError lists the methods."""
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; valid choices: {', '.join(METHODS)}")
    return METHODS[key]


def settings_table() -> dict[str, Setting]:
    """Every method's settings, now: flat `RunConfig` field name -> `Setting`, registry order.

    Raises:
        ValueError: two settings classes declare one name differently.
    """
    return setting_table(spec.settings for spec in METHODS.values())


def setting_label(name: str) -> str:
    """The label of method setting `name` in tables ("patch side S, px"); an unknown name is
    returned as it is."""
    found = settings_table().get(name)
    return found.label if found is not None else name


def row_key(config: Any) -> str:
    """The table row of a run config: the row of its method whose fields it has (a variant's
    row before the method's own)."""
    matches = [
        row for row in ROWS.values()
        if all(getattr(config, name) == value for name, value in row.config_fields.items())
    ]
    if not matches:
        raise ValueError(f"no table row for method {config.method!r} with these settings")
    return max(matches, key=lambda row: len(row.fields)).key


def label(key: str) -> str:
    """The label of table row (or method) `key`; an unknown key is returned as it is."""
    return ROWS[key].label if key in ROWS else key


def _table_number(table: int | str) -> int:
    """`table` (4 or "4") as the number of one of the paper's Tables 1-6."""
    key = str(table).strip()
    if key not in {"1", "2", "3", "4", "5", "6"}:
        raise ValueError(f"the paper has Tables 1-6; got table {table!r}: pass a number 1-6")
    return int(key)


def paper_rows(table: int | str = 1) -> dict[str, str]:
    """Table `table`'s paper row names -> our row keys, in paper order (none for Tables 2-3).

    Raises:
        ValueError: `table` is not one of the paper's Tables 1-6.
    """
    number = _table_number(table)
    if number == 1:
        return {row.paper_row: key for key, row in ROWS.items() if row.paper_row}
    return dict(COMPARISON_ROWS.get(number, {}))


def posthoc_paper_rows(table: int | str) -> dict[str, str]:
    """Table `table`'s row names in the paper -> our post-hoc map kinds (`POSTHOC_PAPER_ROWS`).

    Raises:
        ValueError: `table` is not one of the paper's Tables 1-6.
    """
    return dict(POSTHOC_PAPER_ROWS.get(_table_number(table), {}))
