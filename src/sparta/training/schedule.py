"""Learning-rate schedules as functions of training progress in [0, 1], and eps warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable

from sparta.registry import Registry

SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")


@SCHEDULES.register("cosine")
def cosine(progress: float) -> float:
    """Cosine decay from the peak learning rate to 0 over training."""
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@SCHEDULES.register("onecycle")
def onecycle(progress: float) -> float:
    """Linear warm-up to the peak over the first 20%, then linear decay to 0 (fast AT)."""
    return progress / 0.2 if progress < 0.2 else max(0.0, (1 - progress) / 0.8)


@SCHEDULES.register("constant")
def constant(progress: float) -> float:
    """The peak learning rate throughout."""
    return 1.0


def eps_at(config, epoch_progress: float) -> float:
    """eps grows linearly from 0 to config.eps over eps_warmup_epochs."""
    if config.eps_warmup_epochs <= 0:
        return config.eps
    return config.eps * min(1.0, (epoch_progress + 1e-9) / config.eps_warmup_epochs)
