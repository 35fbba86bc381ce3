"""Mixed precision: the run's autocast policy (`Amp`, `make_amp`) and `fp32_region`.

A base module (it imports torch only) so that the core's loss functions (`csoa_nb.methods`)
can run Eq. 5 and Eq. 12 in float32 under the trainer's mixed precision (`make_amp`, used by
`csoa_nb.engine.train` and `csoa_nb.engine.pretrain`). Without autocast and with float32
inputs, a wrapped function computes exactly what the bare one does (every cast is a no-op).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["AMP_DTYPES", "Amp", "autocast_context", "fp32_region", "make_amp"]

#: Autocast precisions of `amp=True` (`make_amp`): "auto" is bf16 on the CPU and on GPUs that
#: have it, else fp16 with loss scaling.
AMP_DTYPES = ("auto", "bf16", "fp16")


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
    """Run ``fn`` in float32: autocast off (on its tensors' devices, CPU always) and every floating
    tensor argument (also inside tuples, lists, dicts, NamedTuples such as `CSoAOutput` and
    dataclasses) cast to float32; gradients flow through the casts.

    Wraps the losses of Eq. 5 (`confseg_loss`) and Eq. 12 (`coaug_loss`) in `csoa_nb.methods.csoa`:
    half precision gets their ratios and thresholds wrong (Eq. 12's ratios of distance sums lose
    bits, and in float16 overflow and hit ``sqrt(0)`` on D_mn's diagonal: NaN gradients; Eq. 5's
    mask ``|S - mu1| > mu2`` of Eq. 2-4 flips pixels near the threshold). Explicit, because
    autocast's own per-op float32 lists differ between CPU and CUDA and between torch versions.
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


# --------------------------------------------------------------------------- mixed precision
@dataclass
class Amp:
    """One run's mixed-precision policy: the autocast dtype (None: off) and, for float16 on
    CUDA, the `GradScaler` whose state belongs in the checkpoint (``state_dict``)."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> AbstractContextManager[Any]:
        """A fresh autocast context for one forward pass (a no-op when off)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward(); optimizer.step()``, through the scaler when there is one (a step
        whose gradients overflowed is skipped and the scale lowered, as GradScaler does)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_amp(device_type: str, enabled: bool, dtype: str = "auto") -> Amp:
    """The mixed-precision policy for ``device_type``.

    * off (``enabled=False``): float32 everywhere, no scaler.
    * CPU: bfloat16 autocast (``"auto"`` or ``"bf16"``); float16 is refused (CPU autocast's
      float16 kernels are few and slow).
    * CUDA: ``"bf16"``, or ``"auto"`` on a GPU that supports it (Ampere and newer): bfloat16,
      no scaler (float32's exponent range, so gradients do not underflow). ``"fp16"``, or
      ``"auto"`` on an older GPU: float16 with a `GradScaler` (float16 gradients underflow
      below 6e-8 without loss scaling).
    """
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device type {device_type!r}: use cpu or cuda")
    if dtype not in AMP_DTYPES:
        raise ValueError(f"amp dtype {dtype!r}: choose one of {', '.join(AMP_DTYPES)}")
    if not enabled:
        return Amp(device_type)
    if device_type == "cpu":
        if dtype == "fp16":
            raise ValueError("amp dtype fp16 on the CPU: use bf16 (or auto) there")
        return Amp("cpu", torch.bfloat16)
    if dtype == "auto":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        dtype = "bf16" if bf16_ok else "fp16"
    if dtype == "bf16":
        return Amp("cuda", torch.bfloat16)
    return Amp("cuda", torch.float16, torch.amp.GradScaler("cuda"))


def autocast_context(
    device_type: str, enabled: bool, dtype: str = "auto"
) -> tuple[AbstractContextManager[Any], torch.amp.GradScaler | None]:
    """``(autocast context, GradScaler or None)`` of :func:`make_amp` (one forward pass's
    context; a trainer keeps the :class:`Amp` itself, whose scaler lives as long as the run)."""
    amp = make_amp(device_type, enabled, dtype)
    return amp.autocast(), amp.scaler

