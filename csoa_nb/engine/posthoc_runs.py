"""Work on finished runs from their final weights: post-hoc maps and the protocol's files.

* `write_posthoc(run_dir)`: Grad-CAM, Grad-CAM++ and Score-CAM (`csoa_nb.methods.posthoc`, the
  ``grad-cam`` package) of a trained CAM network, on the validation and the test split, scored
  under Choe et al.'s protocol (`csoa_nb.engine.protocol`) exactly as a trained method's own
  maps: `posthoc.json` holds one `ProtocolScores` record per map kind, `posthoc_cams.npz` the
  maps of the run's sample images (`cams.npz`'s images) for figures. The class scores are the
  network's own (the maps change, not the classifier).
* `backfill(run_dir)`: `val_maps.npz` and `protocol.json` of a run finished before the trainer
  wrote them, from its final weights (`csoa_nb.engine.builders.load_final_model`), by the same
  functions the trainer's finalize step calls: a re-made file equals the one a fresh run
  writes.

Command line (what `make results` calls for the runs that need it)::

    python -m csoa_nb.engine.posthoc_runs posthoc results/runs/<hash> ...
    python -m csoa_nb.engine.posthoc_runs backfill results/runs/<hash> ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from csoa_nb.core.scores import MapSet
from csoa_nb.data import collate_wsol
from csoa_nb.engine.arrays import FILES
from csoa_nb.engine.builders import load_final_model
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_datasets, build_val_set
from csoa_nb.engine.evaluate import collect_maps, collect_masks
from csoa_nb.engine.protocol import (
    PROTOCOL_FILE,
    ProtocolScores,
    protocol_scores,
    write_protocol,
)
from csoa_nb.engine.runs import (
    MODEL_FILE,
    RunStoreError,
    load_arrays,
    read_json,
    save_arrays,
    save_torch,
    write_json,
)
from csoa_nb.methods.posthoc import POSTHOC_KINDS, default_target_layer, posthoc_maps

__all__ = ["POSTHOC_FILE", "POSTHOC_CAMS_FILE", "backfill", "posthoc_collect", "posthoc_scores",
           "read_posthoc", "write_posthoc"]

#: The post-hoc maps' protocol scores in a CAM run's folder.
POSTHOC_FILE = "posthoc.json"
#: The post-hoc maps of the run's sample images.
POSTHOC_CAMS_FILE = FILES["posthoc"]


def posthoc_collect(
    model: nn.Module, dataset: Dataset, config: RunConfig, kind: str, *, batch_size: int = 32
) -> MapSet:
    """`collect_maps`' form for post-hoc map `kind` of the ground-truth class: `cam_last` the
    library's maps (``N x H x W`` at image size, float16); the class scores, labels, boxes,
    masks and image size are `collect_maps`' (the network's own: only the maps change)."""
    collected = collect_maps(model, dataset, config, batch_size=batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_wsol)
    target = default_target_layer(model)
    collected["cam_last"] = torch.cat([
        posthoc_maps(model, target, batch["image"], batch["label"], kind).half()
        for batch in loader
    ])
    collected["cam_feature"] = None
    return collected


def write_posthoc(run_dir: str | Path, kinds: tuple[str, ...] = POSTHOC_KINDS) -> dict[str, Any]:
    """Score the post-hoc maps of a finished CAM run under the protocol; writes
    `posthoc.json` and `posthoc_cams.npz` into `run_dir` and returns the records."""
    run_dir = Path(run_dir)
    config, model = load_final_model(run_dir)
    if config.method != "cam":
        raise ValueError(f"{run_dir} is a {config.method!r} run: post-hoc maps are scored on "
                         "the plain CAM network (method 'cam')")
    _, test_set = build_datasets(config)
    val_set = build_val_set(config)
    samples = load_arrays(run_dir, "sample")["indices"]
    records, sample_maps = {}, {}
    for kind in kinds:
        scores = protocol_scores(posthoc_collect(model, val_set, config, kind),
                                 posthoc_collect(model, test_set, config, kind), config)
        records[kind] = scores.to_record()
        sample_set = Subset(test_set, [int(i) for i in samples])
        sample_maps[kind] = posthoc_collect(model, sample_set, config, kind)["cam_last"]
    save_arrays(run_dir, "posthoc", sample_maps)
    write_json(run_dir / POSTHOC_FILE, records)
    return records


def read_posthoc(run_dir: str | Path) -> dict[str, ProtocolScores]:
    """The post-hoc maps' protocol scores of a CAM run (`write_posthoc`), by kind.

    Raises:
        RunStoreError: the run has no readable `posthoc.json` (the message says how to make it).
    """
    path = Path(run_dir) / POSTHOC_FILE
    if not path.is_file():
        raise RunStoreError(f"{path} does not exist: score the CAM run's post-hoc maps with "
                            f"`python -m csoa_nb.engine.posthoc_runs posthoc {Path(run_dir)}`")
    records = read_json(path, "post-hoc scores")
    remake = (f"delete it and score the maps again with `python -m csoa_nb.engine.posthoc_runs "
              f"posthoc {Path(run_dir)}`")
    unknown = sorted(set(records) - set(POSTHOC_KINDS))
    if unknown or not records:
        raise RunStoreError(f"{path} holds {unknown or 'no'} post-hoc maps, not some of "
                            f"{list(POSTHOC_KINDS)}: {remake}")
    scores = {}
    for kind, record in records.items():
        try:
            scores[kind] = ProtocolScores.from_record(record)
        except ValueError as error:
            raise RunStoreError(f"{path}: the record of {kind!r} is not a record of the "
                                f"protocol's scores ({error}): {remake}") from None
    return scores


def posthoc_scores(run_dir: str | Path) -> dict[str, ProtocolScores]:
    """The post-hoc maps' scores of a finished CAM run: read from `posthoc.json`, or made
    (`write_posthoc`, about a minute per run at the cpu preset) when it has none."""
    if not (Path(run_dir) / POSTHOC_FILE).is_file():
        write_posthoc(run_dir)
    return read_posthoc(run_dir)


def backfill(run_dir: str | Path) -> ProtocolScores:
    """`val_maps.npz` and `protocol.json` (and `model.pt`) of a finished run, from its final
    weights, as the trainer's finalize step writes them."""
    run_dir = Path(run_dir)
    config, model = load_final_model(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        save_torch(run_dir / MODEL_FILE, model.state_dict())
    _, test_set = build_datasets(config)
    test_maps = load_arrays(run_dir, "test")
    test_maps["masks"] = collect_masks(test_set)
    val_maps = collect_maps(model, build_val_set(config), config)
    return write_protocol(run_dir, config, val_maps, test_maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.posthoc_runs",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("posthoc", "backfill"))
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for run_dir in args.run_dirs:
        if args.command == "backfill":
            if (run_dir / PROTOCOL_FILE).is_file():
                continue
            scores = backfill(run_dir)
            print(f"{run_dir.name}: theta {scores.theta:.2f}, test MaxBoxAccV2 "
                  f"{scores.test.max_box_acc_v2:.2f}", flush=True)
        else:
            records = write_posthoc(run_dir)
            print(f"{run_dir.name}: " + ", ".join(
                f"{kind} {r['test']['max_box_acc_v2']:.2f}" for kind, r in records.items()),
                flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
