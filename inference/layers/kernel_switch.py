"""Puts a whole model on the Triton kernels of ``kernels/`` or back on the torch path.

Every layer with a kernel has a class-level ``kernels = False``; this sets it per instance. The engine turns
it on for CUDA (``EngineConfig.kernels = "auto"``); on the CPU the kernels run only under Triton's
interpreter (``TRITON_INTERPRET=1``), which is how the tests check the kernel path against the torch one.
"""

from __future__ import annotations

import os

from torch import nn


def kernels_available(device: str) -> bool:
    """Triton can run here: a CUDA device, or its CPU interpreter chosen before Triton was imported."""
    return device.startswith("cuda") or os.environ.get("TRITON_INTERPRET") == "1"


def use_kernels(model: nn.Module, on: bool = True) -> int:
    """Switch every kernel-capable layer of ``model``; returns how many were switched."""
    count = 0
    for module in model.modules():
        if hasattr(type(module), "kernels"):
            module.kernels = on
            count += 1
    return count
