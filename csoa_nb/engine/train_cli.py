"""The command line of `python -m csoa_nb.engine.train`: its arguments and the run config
they name (a preset, --method, --seed and --set KEY=VALUE; under torchrun the job's
world_size).
"""

from __future__ import annotations

import argparse
from typing import Any

from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.distributed import read_env


def parse_args(
    argv: list[str] | None = None, description: str | None = None
) -> argparse.Namespace:
    """The trainer's command line (`description`: its --help text, the trainer's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.train",
                                     description=description)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--method", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any RunConfig field, e.g. --set epochs=3 --set theta=0.2",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bars (the default when stderr is not a terminal: one line per epoch)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset with --method, --seed and every --set applied (a --set wins); the preset's
    variant for a --set dataset (the paper's ILSVRC) comes first."""
    overrides: dict[str, Any] = {}
    if args.method is not None:
        overrides["method"] = args.method
    if args.seed is not None:
        overrides["seed"] = args.seed
    # under torchrun, the job's process count (a --set world_size=N is checked against it)
    overrides["world_size"] = read_env().world_size
    overrides.update(RunConfig.parse_assignments(args.assignments))
    return RunConfig.from_preset(args.preset, **overrides)
