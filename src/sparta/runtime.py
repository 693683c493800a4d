"""Device, precision and seeding choices, and the facts a run records about its machine."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from sparta.errors import SpartaError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpartaError(f"device '{name}' asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SpartaError(f"unknown device '{name}'; use auto, cpu or cuda") from None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked for (auto: on CUDA only); otherwise a no-op."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


COMPILE_BACKEND_VARIABLE = "SPARTA_COMPILE_BACKEND"


def compile_backend() -> str:
    """The torch.compile backend for `--compile` and the fused Sparta path.

    Inductor unless $SPARTA_COMPILE_BACKEND names another: `aot_eager` does the same graph
    capture and forward/backward split without generating code, so the CPU test suite
    runs every compiled path in seconds instead of minutes.
    """
    return os.environ.get(COMPILE_BACKEND_VARIABLE, "inductor")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so a run repeats from its seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """HEAD of the source tree, or $SPARTA_GIT_COMMIT where a copied tree's .git cannot tell."""
    if os.environ.get("SPARTA_GIT_COMMIT"):
        return os.environ["SPARTA_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_facts(device: torch.device) -> dict[str, object]:
    """Device, torch, Python, thread count and git commit, recorded beside a run's results."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
