"""A run that never left chance: adversarial training from scratch sometimes keeps the
constant prediction, and the robust accuracy of such a model is no robustness result."""

from __future__ import annotations

from pathlib import Path

from sparta.progress import warn

# A run whose last-epoch training accuracy stays below this multiple of chance never learned.
CHANCE_MARGIN = 1.5


def near_chance(train_acc: float, num_classes: int) -> bool:
    """Whether a training accuracy is below CHANCE_MARGIN times chance (1 / num_classes)."""
    return train_acc < CHANCE_MARGIN / num_classes


def warn_if_at_chance(run_dir: Path, train_acc: float, num_classes: int) -> bool:
    """Warn (SpartaWarning) when training ended near chance: adversarial training from scratch
    sometimes never leaves the constant prediction, and its robust accuracy is then
    meaningless (not a robustness result). Returns whether it warned."""
    if not near_chance(train_acc, num_classes):
        return False
    warn(
        f"{run_dir} ended near chance (training accuracy {100 * train_acc:.1f}% with "
        f"{num_classes} classes): the model did not learn; try an eps warm-up (eps_warmup_epochs, "
        "--eps-warmup-epochs), a lower learning rate (lr, --lr) or another seed"
    )
    return True
