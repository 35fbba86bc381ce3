"""The config hash names every run folder, so it must not move when the code that makes it does.

Known hashes are pinned literally: committed runs of each method (their folder names), and the
same runs built from the presets in code. `config_map()` records the hash (and the `config.json`
record) of every config of every sweep of every preset, of a grid of one-setting variants of
every method, and of every committed `results/runs/*/config.json`; run this file as a script
to save that map before a change and compare after it:

    .venv/bin/python tests/test_config_hashes.py save /tmp/hashes_before.json
    .venv/bin/python tests/test_config_hashes.py compare /tmp/hashes_before.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from csoa_nb.engine.config import PRESETS, RunConfig
from csoa_nb.engine.sweeps import (
    RESULTS_DIR,
    SWEEPS,
    NoValidationSplit,
    SearchPending,
    sweep_configs,
)
from csoa_nb.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / RESULTS_DIR).glob("*/config.json"))

#: Committed runs, one or two of each kind: folder name -> the row it is (checked below).
PINNED_RUNS = {
    "95e957e4680b": ("confseg", {"seed": 3}),
    "81cbe4ef2456": ("cam", {"seed": 0}),
    "1c2aa5386282": ("twohead", {"seed": 0}),
    "3d36f7dd6d05": ("coaug", {"seed": 0, "coaug_background": "paper"}),
    "a28b71b2a365": ("coaug", {"seed": 0, "coaug_background": "below_mean"}),
    "0e8d2a8057f5": ("csoa", {"seed": 0, "coaug_background": "paper"}),
    "8693c63c2e3c": ("csoa", {"seed": 0, "coaug_background": "below_mean", "feature_block": 3}),
    "223d15cafb12": ("csoa", {"seed": 0, "pretrained": "", "embedding_weights": "pretrain"}),
    "b33ee67aca08": ("has", {"seed": 0, "has_grid_size": 16}),
    "83d21e3f117e": ("acol", {"seed": 0, "acol_delta": 0.5}),  # ACoL version 2
    "47eb372bc7a9": ("adl", {"seed": 0, "adl_gamma": 0.8}),
    "6d088ecaeabc": ("cutmix", {"seed": 0, "cutmix_prob": 0.25}),
    "4f6844ead238": ("cutmix", {"seed": 0, "cutmix_prob": 0.25, "pretrained": "",
                                "embedding_weights": "pretrain"}),
}
#: The same rows built in code (no file read): the cpu preset, fine-tuned unless said.
PRESET_DEFAULTS = {"pretrained": "pretrain"}
#: Hashes of the smoke preset's default config of each method (not committed; pinned here).
SMOKE_HASHES = {
    "cam": "7212832e62c7", "twohead": "eb8de6ae6db2", "confseg": "1e9895312b09",
    "coaug": "4f9c826ac42f", "csoa": "4fa285465caf", "has": "b2303879c6d3",
    "acol": "ca585e1bb376", "adl": "85ae07435ee2", "cutmix": "27c3f57e8042",
}
#: One non-default value of each setting that some methods alone read or that is hashed only
#: away from its default (the rules of `RunConfig.hashed_fields`).
VARIANTS: dict[str, Any] = {
    "has_grid_size": 8, "has_hide_prob": 0.25, "acol_delta": 0.7, "adl_drop_rate": 0.5,
    "adl_gamma": 0.8, "cutmix_beta": 0.5, "cutmix_prob": 0.5, "coaug_background": "below_mean",
    "gamma": 2.0, "delta": 0.5, "coaug_weight": 0.5, "embedding_weights": "pretrain",
    "amp_dtype": "bf16", "world_size": 2, "channels_last": True, "device": "cuda",
    "output_dir": "elsewhere", "num_workers": 3, "seed": 7, "feature_block": 3,
}


def _entry(config: RunConfig) -> dict[str, Any]:
    return {"hash": config.hash, "record": config.to_record()}


def config_map() -> dict[str, dict[str, Any]]:
    """Key -> {"hash", "record"} of every sweep config of every preset (sweeps that wait for
    runs or lack a validation split are left out, as `all_configs(pending_ok=True)` does),
    every method's preset defaults with each of `VARIANTS` (and with `amp` flipped), and
    every committed config.json (key "committed:<folder>"). A method added since the map was
    saved shows as "new" keys when it is compared."""
    out: dict[str, dict[str, Any]] = {}
    for preset in PRESETS:
        for name in SWEEPS:
            try:
                configs = sweep_configs(name, preset)
            except (SearchPending, NoValidationSplit):
                continue
            for index, config in enumerate(configs):
                out[f"sweep:{preset}:{name}:{index}"] = _entry(config)
        for method in METHODS:
            base = RunConfig.from_preset(preset, method=method)
            out[f"extra:{preset}:{method}:default"] = _entry(base)
            flipped = base.replace(amp=not base.amp, device="cuda")
            out[f"extra:{preset}:{method}:amp"] = _entry(flipped)
            for name, value in VARIANTS.items():
                out[f"extra:{preset}:{method}:{name}"] = _entry(base.replace(**{name: value}))
                out[f"extra:{preset}:{method}:amp+{name}"] = _entry(
                    flipped.replace(**{name: value}))
    for path in CONFIGS:
        out[f"committed:{path.parent.name}"] = _entry(RunConfig.from_json(path))
    return out


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("folder", sorted(PINNED_RUNS))
def test_pinned_runs_hash_to_their_folder_from_disk_and_from_code(folder):
    method, fields = PINNED_RUNS[folder]
    saved = RunConfig.from_json(ROOT / RESULTS_DIR / folder / "config.json")
    assert (saved.method, saved.hash) == (method, folder)
    assert all(getattr(saved, name) == value for name, value in fields.items())
    built = RunConfig.from_preset("cpu", method=method, **{**PRESET_DEFAULTS, **fields})
    assert built.hash == folder
    assert built.to_record() == {**saved.to_record(), "output_dir": built.output_dir}


@pytest.mark.parametrize("method", sorted(SMOKE_HASHES))
def test_smoke_defaults_of_every_method_keep_their_hash(method):
    assert RunConfig.from_preset("smoke", method=method).hash == SMOKE_HASHES[method]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_committed_config_json_loads_hashes_to_its_folder_and_writes_back_the_same(path):
    """Nothing on disk changes: a committed config.json (flat field names) loads, hashes to
    its folder's name, and `to_record` writes exactly it back."""
    config = RunConfig.from_json(path)
    assert config.hash == path.parent.name
    assert config.to_record() == json.loads(path.read_text())


def main(argv: list[str]) -> int:
    """`save PATH` / `compare PATH`: the map of `config_map()`."""
    if len(argv) != 2 or argv[0] not in ("save", "compare"):
        print(__doc__)
        return 2
    command, path = argv
    current = config_map()
    if command == "save":
        Path(path).write_text(json.dumps(current, indent=1, sort_keys=True))
        print(f"saved {len(current)} configs to {path}")
        return 0
    before = json.loads(Path(path).read_text())
    differ = sorted(k for k in before.keys() & current.keys() if before[k] != current[k])
    missing, added = sorted(before.keys() - current.keys()), sorted(current.keys() - before.keys())
    for key in differ[:20]:
        print("DIFFERS", key, before[key]["hash"], "->", current[key]["hash"])
    print(f"compared {len(before.keys() & current.keys())} configs: {len(differ)} differ, "
          f"{len(missing)} missing now, {len(added)} new")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def test_a_method_version_and_a_device_enter_the_hash_only_away_from_their_default():
    """ACoL's version 2 (the reference's smoothing pool) gave its runs new hashes, and no
    other method's; a CUDA run is another run than a CPU one, whatever its index, and a CPU
    run keeps the hash it had (the pins above)."""
    import csoa_nb.methods.acol as acol_module

    acol = RunConfig.from_preset("smoke", method="acol")
    assert acol.hashed_fields()["method_version"] == acol_module.ACOL.version == 2
    for method in ("cam", "has", "csoa"):
        assert "method_version" not in RunConfig.from_preset("smoke", method=method).hashed_fields()
    cpu = RunConfig.from_preset("smoke", method="cam")
    cuda = cpu.replace(device="cuda")
    assert "device" not in cpu.hashed_fields() and cuda.hashed_fields()["device"] == "cuda"
    assert cuda.hash != cpu.hash == SMOKE_HASHES["cam"]
    assert cpu.replace(device="cuda:1").hash == cuda.hash
