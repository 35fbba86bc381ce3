"""The config hash: all its rules, applied by `RunConfig.hashed_fields`.

A run's hash (`RunConfig.hash`: `csoa_nb.base.cache.stable_hash` of the fields below) names its
folder, so two chapters asking for the same run share it and a finished run is loaded instead of
retrained. A change to a rule changes committed runs' hashes: `tests/test_config_hashes.py`
pins known ones.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csoa_nb.engine.config import RunConfig

#: 1. Fields that do not change what a run computes: never hashed.
UNHASHED = ("preset", "device", "output_dir", "data_root", "num_workers", "results_dirs")
#: 2. A method's settings (the fields of its spec's `settings` class) are hashed for the runs
#: of the methods whose spec has that class only: adding a method changes no other run's hash,
#: and e.g. one CAM run serves both readings of Eq. 10 (`CoAugSettings.coaug_background`).
#: 3. Fields that mean nothing while another field is off: hashed only when it is on (the dtype
#: of autocast without autocast).
HASHED_ONLY_WITH = {"amp_dtype": "amp"}
#: 4. Fields hashed only away from their default, because they were added after runs were
#: committed: at the default they compute what those runs computed.
#: `world_size`: W torchrun processes, each on its own class-balanced batch (the global batch
#: is W x batch_size, another run than W = 1; README "Several GPUs"). `channels_last`: NHWC
#: tensors round differently from NCHW ones. `val_per_class`: another validation split gives
#: the run another theta and other protocol scores.
HASHED_IF_NOT_DEFAULT = {"world_size": 1, "channels_last": False, "val_per_class": 5}
#: 5. The data enter as their identity (`RunConfig.data_identity`) under this key, not their
#: path.
DATA_KEY = "data"
#: 6. A method's `MethodSpec.version` enters under this key when it is not 1: a change to
#: what a method computes gives its runs new hashes, every other run keeps its own.
METHOD_VERSION_KEY = "method_version"
#: 7. `device` (in `UNHASHED`: its index, "cuda:1", does not matter) enters as its kind when
#: it is not the CPU: a CUDA run does not compute a CPU run's numbers bit for bit, so the two
#: are kept apart; every CPU run keeps the hash it had.
DEVICE_KEY = "device"


def hashed_fields(config: RunConfig, data: str) -> dict[str, Any]:
    """The fields of `config` that decide what its run computes (rules 1-4 and 7 above), plus
    `data`, the identity of its data, under `DATA_KEY` (rule 5) and its method's version
    (rule 6)."""
    values, own = config.to_dict(), set(config.method_spec.setting_names)
    declared = {spec.name for spec in fields(config)}  # the rest are methods' settings

    def hashed(name: str) -> bool:
        return (name not in UNHASHED
                and (name in declared or name in own)
                and (name not in HASHED_ONLY_WITH or bool(values[HASHED_ONLY_WITH[name]]))
                and (name not in HASHED_IF_NOT_DEFAULT
                     or values[name] != HASHED_IF_NOT_DEFAULT[name]))

    fields_ = {name: value for name, value in values.items() if hashed(name)}
    fields_[DATA_KEY] = data
    if config.method_spec.version != 1:  # rule 6
        fields_[METHOD_VERSION_KEY] = config.method_spec.version
    if config.device_kind != "cpu":  # rule 7
        fields_[DEVICE_KEY] = config.device_kind
    return fields_
