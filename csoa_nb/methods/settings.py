"""A method's settings: its hyperparameters as one frozen dataclass beside its `MethodSpec`.

A settings class (`has.HaSSettings`, `coaug.CoAugSettings`, ...) is the one home of what a
method's hyperparameters are: each field is one `RunConfig` field of the *same flat name*
(``has_grid_size``: `--set has_grid_size=16`, papermill's ``-p has_grid_size 16``, the key in
a run's `config.json`), its default is the field's default (its type the field's type), its
`__post_init__` checks the values (a `ValueError` naming the setting), and `setting()` gives a
field its label in tables and the grid Choe et al.'s protocol searches it over. The spec names
the class (`MethodSpec.settings`); `RunConfig` makes a field of each setting of every method of
the registry, hashes it for the runs of the methods whose class has it only, and hands the
hooks and the loss function an instance (`RunConfig.method_settings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Setting", "build_settings", "setting", "setting_table", "settings_fields"]


def setting(default: Any, *, label: str, search: Iterable[Any] = ()) -> Any:
    """A settings field: its `default`, table `label` and protocol `search` grid (empty: none)."""
    return dataclasses.field(default=default, metadata={"label": label, "search": tuple(search)})


@dataclass(frozen=True)
class Setting:
    """One setting of a method, as `RunConfig` sees it: its flat `name`, `default`, `label`
    (the name when the field has none) and `search` grid."""

    name: str
    default: Any
    label: str
    search: tuple[Any, ...] = ()


def settings_fields(settings: type | None) -> tuple[Setting, ...]:
    """The settings of a settings class (none for None), in its fields' order.

    Raises:
        TypeError: `settings` is not a dataclass, or a field has no plain default.
    """
    if settings is None:
        return ()
    if not dataclasses.is_dataclass(settings):
        raise TypeError(f"a method's settings must be a frozen dataclass, got {settings!r}")
    out = []
    for spec in dataclasses.fields(settings):
        if spec.default is dataclasses.MISSING:
            raise TypeError(f"{settings.__name__}.{spec.name} needs a plain default (it is the "
                            "RunConfig field's default)")
        out.append(Setting(spec.name, spec.default, spec.metadata.get("label", spec.name),
                           tuple(spec.metadata.get("search", ()))))
    return tuple(out)


def setting_table(classes: Iterable[type | None]) -> dict[str, Setting]:
    """Flat name -> `Setting` over the settings classes `classes` (each counted once).

    Raises:
        ValueError: two classes declare one name differently.
    """
    table: dict[str, Setting] = {}
    for settings in dict.fromkeys(classes):
        for item in settings_fields(settings):
            known = table.setdefault(item.name, item)
            if known != item:
                raise ValueError(f"setting {item.name!r} is declared twice, differently: "
                                 f"{known} and {item} ({settings.__name__}); rename one")
    return table


def build_settings(settings: type, values: Mapping[str, Any]) -> Any:
    """An instance of `settings` from the flat `values` (a mapping holding its fields).

    Raises:
        ValueError: the class's checks reject a value; the message names the defaults.
    """
    names = [item.name for item in settings_fields(settings)]
    try:
        return settings(**{name: values[name] for name in names})
    except ValueError as error:
        defaults = ", ".join(f"{item.name}={item.default!r}"
                             for item in settings_fields(settings))
        raise ValueError(f"{error}; set a valid value (defaults: {defaults})") from None
