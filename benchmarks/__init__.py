"""Benchmarks, run as modules from the repository root (``python -m benchmarks.<name>``)."""

import torch

from vae.runtime.machine import missing_bf16_feature


def bf16_note(device: torch.device) -> str:
    """Whether ``device`` multiplies bfloat16 natively: without, autocast emulates it and bf16-mixed is slower."""
    if device.type == "cuda":
        return "bfloat16 native" if torch.cuda.is_bf16_supported(including_emulation=False) else "bfloat16 emulated"
    missing = missing_bf16_feature()
    return "bfloat16 native (or PyTorch cannot tell)" if missing is None else f"bfloat16 emulated (no {missing})"
