"""`python -m csoa_nb.data.synthetic`: write the synthetic benchmark and print its path.

An entry point, not part of the data layer: `--preset` reads the engine's presets
(`csoa_nb.engine.config`), which nothing in `csoa_nb.data` may import.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from csoa_nb.data.common import DataError
from csoa_nb.data.synthetic import FAMILIES, Difficulty, make_dataset
from csoa_nb.engine.config import PRESETS, RunConfig

#: The presets whose data set is this benchmark.
SYNTHETIC_PRESETS = tuple(p for p in PRESETS if RunConfig.from_preset(p).dataset == "synthetic")

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m csoa_nb.data.synthetic",
        description="Write the synthetic WSOL benchmark (CUB-200-2011 format) and print its path.",
    )
    parser.add_argument("--root", required=True, help="parent folder of the dataset")
    parser.add_argument(
        "--preset",
        choices=SYNTHETIC_PRESETS,
        default=None,
        help="take sizes and difficulty from the run preset (csoa_nb.engine.config)",
    )
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--images-per-class", type=int, default=None)
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--family", choices=FAMILIES, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """CLI entry point; explicit options override the preset's values. Returns the path."""
    args = _parser().parse_args(argv)
    kwargs: dict[str, Any] = {
        "num_classes": 10,
        "images_per_class": 150,
        "test_per_class": None,
        "image_size": 64,
        "seed": 0,
        "difficulty": Difficulty(),
    }
    if args.preset is not None:
        kwargs.update(RunConfig.from_preset(args.preset).synthetic_kwargs())
    for key in ("num_classes", "images_per_class", "test_per_class", "image_size", "seed"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.family is not None:
        kwargs["difficulty"] = dataclasses.replace(kwargs["difficulty"], family=args.family)
    try:
        path = make_dataset(args.root, **kwargs)
    except (DataError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(path)
    return path


if __name__ == "__main__":
    main()
