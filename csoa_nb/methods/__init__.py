"""The WSOL methods and their registry: the one place that says what each method is.

Every method is a `MethodSpec` (key, label, colour, the paper's row, the heads and losses it
trains, its loss function, whether it is ours) defined in its own module; `SPECS` lists them
in table order. Every row of the method tables is a `TableRow` (a method plus the `RunConfig`
fields of the row: "coaug_fix" / "csoa_fix" are CoAug / CSoA with our reading of Eq. 10).
Configuration, training, the sweeps, the tables and the figures all read them from here.

Adding a method: write `csoa_nb/methods/<name>.py` with its loss function and its
`MethodSpec`, and add the spec to `CSOA_SPECS` or `WSOL_SPECS` (it then gets a table row of
its own). A method's hyperparameters are `RunConfig` fields named in its spec's `settings`;
its training-time hooks are the spec's `augment` (a batch transform) and `model` (its
network, made from the plain one).
"""

from __future__ import annotations

from typing import Any

from csoa_nb.methods import acol, adl, cam, csoa, cutmix, has
from csoa_nb.methods.spec import LossFn, MethodSpec, Parts, TableRow

__all__ = [
    "CSOA_SPECS",
    "METHODS",
    "ROWS",
    "SPECS",
    "TABLE1_ROWS",
    "WSOL_SPECS",
    "LossFn",
    "MethodSpec",
    "Parts",
    "TableRow",
    "label",
    "method_spec",
    "paper_rows",
    "row_key",
]

#: CSoA, its parts and our ablation: the methods of the paper's Table 1.
CSOA_SPECS: tuple[MethodSpec, ...] = (cam.CAM, csoa.TWOHEAD, csoa.CONFSEG, csoa.COAUG, csoa.CSOA)
#: The WSOL methods CSoA is compared with (issue #17, under Choe et al.'s protocol).
WSOL_SPECS: tuple[MethodSpec, ...] = (has.HAS, acol.ACOL, adl.ADL, cutmix.CUTMIX)
#: Every trainable method, in table order.
SPECS: tuple[MethodSpec, ...] = CSOA_SPECS + WSOL_SPECS
#: `RunConfig.method` -> its spec.
METHODS: dict[str, MethodSpec] = {spec.key: spec for spec in SPECS}

#: Our variants: Eq. 10's confident background below the map's mean (chapter 04).
_FIX_ROWS = (
    TableRow("coaug_fix", csoa.COAUG, {"coaug_background": "below_mean"},
             label="CoAug, Eq. 10 fix (ours)", color="#9467bd", ours=True),
    TableRow("csoa_fix", csoa.CSOA, {"coaug_background": "below_mean"},
             label="CSoA, Eq. 10 fix (ours)", color="#2ca02c", ours=True),
)


def _method_row(spec: MethodSpec) -> TableRow:
    """The row of a method as it is (a CoAug method with Eq. 10 as written)."""
    return TableRow(spec.key, spec, {"coaug_background": "paper"} if spec.parts.coaug else {})


#: The rows of Table 1 (the Table 1 sweep, `csoa_nb.engine.results`): every method of
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


def method_spec(key: str) -> MethodSpec:
    """The spec of method `key`; a ValueError lists the methods."""
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; valid choices: {', '.join(METHODS)}")
    return METHODS[key]


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


def paper_rows(table: int | str = 1) -> dict[str, str]:
    """The paper's row names of Table `table` -> our row keys (Table 1's method rows)."""
    if str(table) != "1":
        return {}
    return {row.paper_row: key for key, row in ROWS.items() if row.paper_row}
