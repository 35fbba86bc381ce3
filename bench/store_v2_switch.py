"""One-off helper of the store's switch to val_per_class 10 (delete it in the merge commit).

Run from this branch's worktree with PYTHONPATH set to it, after `make results` finished:
lists the store's runs that belong to the current sweeps, writes the old ones to remove to
/tmp/old_runs.txt and the shared arrays no current run uses to /tmp/unused_shared.txt, and
prints the new hashes of the pinned runs of tests/test_config_hashes.py (with the settings the
search chose for CutMix from scratch)."""

import json
import sys
from pathlib import Path

from csoa_nb.engine.arrays import SHARED_DIR
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.runs import read_npz
from csoa_nb.engine.sweeps import all_configs, chosen_settings
from csoa_nb.methods import METHODS

store = Path("results/runs")
current = {c.hash for c in all_configs("cpu")}
folders = {p.name for p in store.iterdir() if p.is_dir() and p.name != SHARED_DIR
           and not p.name.startswith("pretrain-")}
missing = sorted(current - folders)
unfinished = sorted(h for h in current & folders if not (store / h / "results.json").is_file())
old = sorted(folders - current)
print("current", len(current), "missing", len(missing), "unfinished", len(unfinished),
      "old", len(old))
used = set()
for h in current & folders:
    for npz in (store / h).glob("*.npz"):
        _, meta = read_npz(npz)
        if meta.get("shared"):
            used.add(meta["shared"])
shared = {p.stem for p in (store / SHARED_DIR).glob("*.npz")}
print("shared unused", sorted(shared - used), "shared missing", sorted(used - shared))
Path("/tmp/old_runs.txt").write_text("\n".join(old) + "\n")
Path("/tmp/unused_shared.txt").write_text("\n".join(sorted(shared - used)) + "\n")
for method in ("has", "acol", "adl", "cutmix"):
    print(method, "chosen", chosen_settings(METHODS[method], "cpu"))
rows = [("confseg", {"seed": 3}), ("cam", {"seed": 0}), ("twohead", {"seed": 0}),
        ("coaug", {"seed": 0, "coaug_background": "paper"}),
        ("coaug", {"seed": 0, "coaug_background": "below_mean"}),
        ("csoa", {"seed": 0, "coaug_background": "paper"}),
        ("csoa", {"seed": 0, "coaug_background": "below_mean", "feature_block": 3}),
        ("csoa", {"seed": 0, "pretrained": "", "embedding_weights": "pretrain"}),
        ("has", {"seed": 0, "has_grid_size": 16}), ("acol", {"seed": 0, "acol_delta": 0.5}),
        ("adl", {"seed": 0, "adl_gamma": 0.8}), ("cutmix", {"seed": 0, "cutmix_prob": 0.25})]
chosen_cutmix = chosen_settings(METHODS["cutmix"], "cpu")
rows.append(("cutmix", {"seed": 0, **chosen_cutmix, "pretrained": "",
                        "embedding_weights": "pretrain"}))
for method, fields in rows:
    config = RunConfig.from_preset("cpu", method=method, **{"pretrained": "pretrain", **fields})
    print(f'    "{config.hash}": ("{method}", {json.dumps(fields)}),',
          "in store" if (store / config.hash / "results.json").is_file() else "NOT IN STORE")
sys.exit(0)
