"""Precision of loss computations under autocast: `fp32_region`.

A base module (it imports torch only) so that the core's loss functions (`csoa_nb.methods`)
can run Eq. 5 and Eq. 12 in float32 under the trainer's mixed precision
(`csoa_nb.engine.distributed.make_amp`). Without autocast and with float32 inputs, a wrapped
function computes exactly what the bare one does (every cast is a no-op).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["fp32_region"]


def _to_float32(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (CSoAOutput)
        return type(value)(*(_to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _to_float32(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if f.init}
        return dataclasses.replace(value, **changes)
    return value


def _device_types(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, Tensor):
        found.add(value.device.type)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _device_types(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _device_types(v, found)
    return found


FnT = TypeVar("FnT", bound=Callable[..., Any])


def fp32_region(fn: FnT) -> FnT:
    """Run ``fn`` in float32: autocast off (on the devices of its tensor arguments, CPU
    always) and every floating tensor argument (also inside tuples, lists, dicts, NamedTuples
    such as `CSoAOutput` and dataclasses) cast to float32. Gradients flow through the casts.

    For the losses of Eq. 5 (`csoa_nb.methods.confseg.confseg_loss`) and Eq. 12
    (`csoa_nb.methods.coaug.coaug_loss`), wrapped in `csoa_nb.methods.csoa`: they are ratios
    and thresholds of small quantities that half precision gets wrong.

    * Eq. 12 divides sums of embedding distances by sums of distances; bfloat16 keeps 8
      significant bits (0.4 % per value), and the gradient of a ratio is a difference of two
      nearly equal terms. In float16 the squared distances of 256-d AlexNet embeddings
      exceed its maximum (65504), and the norms' ``eps = 1e-12`` is below its smallest
      subnormal (6e-8): ``sqrt(0)`` on D_mn's diagonal, an infinite gradient, NaN.
    * Eq. 5's binary mask is ``|S - mu1| > mu2`` (Eq. 2-4): pixels near the threshold flip
      when S, mu1 and mu2 are rounded to 8 bits, and the masked means over h x w pixels
      accumulate the rounding.

    Autocast's own per-op float32 lists differ between CPU and CUDA and between torch
    versions; this makes the loss precision explicit instead of depending on them.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        devices = _device_types((args, kwargs), {"cpu"})
        args = _to_float32(args)
        kwargs = _to_float32(kwargs)
        with ExitStack() as stack:
            for device_type in sorted(devices & {"cpu", "cuda"}):
                stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
