"""The WSOL methods and their registry: the one place that says what each method is.

Every method is a `MethodSpec` (key, label, colour, the paper's row, the heads and losses it
trains, its loss function, whether it is ours) defined in its own module; `SPECS` lists them
in table order. Every row of the method tables is a `TableRow` (a method plus the `RunConfig`
fields of the row: "coaug_fix" / "csoa_fix" are CoAug / CSoA with our reading of Eq. 10).
Configuration, training, the sweeps, the tables and the figures all read them from here.

Adding a method: write `csoa_nb/methods/<name>.py` with its loss function and its
`MethodSpec`, and add the spec to `SPECS` (it then gets a table row of its own).
"""

from __future__ import annotations

from typing import Any

from csoa_nb.methods import cam, csoa
from csoa_nb.methods.spec import LossFn, MethodSpec, Parts, TableRow

__all__ = [
    "METHODS",
    "ROWS",
    "LossFn",
    "MethodSpec",
    "Parts",
    "TableRow",
    "label",
    "method_spec",
    "paper_rows",
    "row_key",
]

#: Every trainable method, in table order.
SPECS: tuple[MethodSpec, ...] = (cam.CAM, csoa.TWOHEAD, csoa.CONFSEG, csoa.COAUG, csoa.CSOA)
#: `RunConfig.method` -> its spec.
METHODS: dict[str, MethodSpec] = {spec.key: spec for spec in SPECS}

#: Our variants: Eq. 10's confident background below the map's mean (chapter 04).
_FIX_ROWS = (
    TableRow("coaug_fix", csoa.COAUG, {"coaug_background": "below_mean"},
             label="CoAug, Eq. 10 fix (ours)", color="#9467bd", ours=True),
    TableRow("csoa_fix", csoa.CSOA, {"coaug_background": "below_mean"},
             label="CSoA, Eq. 10 fix (ours)", color="#2ca02c", ours=True),
)
#: The rows of the method tables, in table order: every method as it is (a CoAug method with
#: Eq. 10 as written), then our variants.
ROWS: dict[str, TableRow] = {
    row.key: row
    for row in (
        *(
            TableRow(spec.key, spec, {"coaug_background": "paper"} if spec.parts.coaug else {})
            for spec in SPECS
        ),
        *_FIX_ROWS,
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
