"""Content-addressed caching: one stable hash and one lookup for every cached artefact.

A run folder (`csoa_nb.engine.runs`), a pretraining stage (`csoa_nb.engine.pretrain`) and a
generated synthetic data set (`csoa_nb.data.synthetic`) are each named by `stable_hash` of what
decides their content, and found again with `find_cached`, so that the same inputs are computed
once and every later request reads the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Hex digits of a cache name (48 bits: no collision among the few thousand artefacts here).
HASH_DIGITS = 12


def stable_hash(payload: Any) -> str:
    """`HASH_DIGITS` hex digits of sha256 over the canonical JSON of `payload` (sorted keys, no
    spaces), so equal payloads give equal names on every machine and Python version."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_DIGITS]


def find_cached(name: str, bases: Iterable[Path], marker: str) -> Path | None:
    """The first `base / name` (in the order of `bases`) that holds the file `marker`, which
    its writer creates last; None when no base has a finished one."""
    for base in bases:
        candidate = Path(base) / name
        if (candidate / marker).is_file():
            return candidate
    return None
