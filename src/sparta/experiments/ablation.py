"""Ablation of Sparta's free choices: one factor at a time, away from the defaults.

Every variant changes a single setting (a Sparta option such as phi or kernel_size, or
the share mode) and keeps the rest; the baseline is the default Sparta. All cells run
the same seeds, so a variant and the baseline trained from the same seed see the same
data order: the verdict compares them per seed (paired differences), which removes
most of the seed-to-seed spread that unpaired intervals carry.

Decision rule, per factor: the level with the highest mean judge accuracy (AutoAttack
when evaluated) wins only if its paired difference to the default has a 95% interval
above zero; otherwise the default is kept. At small scale that is the honest outcome:
a level that is better by less than the noise is not a winner.

The baseline cell has the name `sparta compare` gives the default Sparta cell, so an
ablation written into a compare grid's directory reuses those runs.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.experiments.grid import Cell, EvalPlan, cell_name, eval_size, for_activation
from sparta.runfiles import find_record, read_eval_records
from sparta.sparta_activation import Sparta
from sparta.stats import Estimate, mean_ci

BASELINE = "default"
# Sparta options that change the function; `channels` comes from the model, `fused` is speed only.
NOT_FACTORS = ("self", "channels", "fused")
# Judges in order of preference: the strongest attack the plan evaluated.
JUDGES = ("autoattack", "cw", "pgd", "square", "fgsm", "clean")


def baseline_settings(config: TrainConfig) -> dict[str, Any]:
    """Every factor's value in a baseline config: the defaults, overridden by its act_options and share."""
    return {**factor_defaults(), **config.act_options, "share": config.share}


def factor_defaults() -> dict[str, Any]:
    """Every ablatable factor and its default: Sparta's keyword options plus the share mode."""
    parameters = inspect.signature(Sparta.__init__).parameters
    defaults = {name: p.default for name, p in parameters.items() if name not in NOT_FACTORS}
    defaults["share"] = TrainConfig.share
    return defaults


@dataclass(frozen=True)
class Variant:
    """One setting changed away from the baseline (factor None: the baseline itself)."""

    factor: str | None = None
    value: Any = None

    @property
    def label(self) -> str:
        return BASELINE if self.factor is None else f"{self.factor}={self.value}"

    def apply(self, config: TrainConfig) -> TrainConfig:
        """`config` with this variant's one setting changed (unchanged for the baseline)."""
        if self.factor is None:
            return config
        if self.factor == "share":
            return dataclasses.replace(config, share=self.value)
        return dataclasses.replace(config, act_options={**config.act_options, self.factor: self.value})


def variants(levels: Mapping[str, Sequence[Any]], base: TrainConfig) -> list[Variant]:
    """The baseline, then every (factor, level) in the given order; checks names and duplicates."""
    current = baseline_settings(base)
    result = [Variant()]
    for factor, values in levels.items():
        if factor not in factor_defaults():
            raise SpartaError(f"unknown Sparta factor '{factor}'; choose from: {', '.join(factor_defaults())}")
        if not values:
            raise SpartaError(f"factor '{factor}' needs at least one level")
        for value in values:
            if value == current[factor]:
                raise SpartaError(f"{factor}={value} is the baseline's setting; the baseline row covers it")
            variant = Variant(factor, value)
            if variant in result:
                raise SpartaError(f"{variant.label} is listed twice")
            result.append(variant)
    return result


def ablation_cells(
    base: TrainConfig, out: str, levels: Mapping[str, Sequence[Any]], seeds: Sequence[int]
) -> list[Cell]:
    """Cells for the baseline and each variant x seeds, seed by seed (a run stopped part-way
    leaves paired seeds); the model and method are the base's."""
    base = for_activation(base, "sparta")
    cells, chosen = [], variants(levels, base)
    for seed in seeds:
        for variant in chosen:
            act = "sparta" if variant.factor is None else f"sparta_{variant.factor}-{variant.value}"
            name = cell_name(base.model, act, base.method, seed=seed)
            config = dataclasses.replace(variant.apply(base), seed=seed, out=f"{out}/{name}").validate()
            value = "" if variant.factor is None else str(variant.value)
            labels = {"factor": variant.factor or BASELINE, "value": value}
            cells.append(Cell(name, config, labels))
    return cells


def judge_attack(plan: EvalPlan) -> str:
    """The attack the verdict is judged by: AutoAttack when the plan has it, else the strongest."""
    for attack in JUDGES:
        if attack in plan.attacks:
            return attack
    raise SpartaError(f"no attack to judge by in {', '.join(plan.attacks)}")


def judge_values(cells: Sequence[Cell], plan: EvalPlan) -> dict[int, float]:
    """Seed -> judge accuracy of a group of cells that differ only by seed."""
    attack = judge_attack(plan)
    values = {}
    for cell in cells:
        record = find_record(read_eval_records(cell.run_dir), attack, cell.config.eps, eval_size(cell.config, plan))
        if record is None:
            raise SpartaError(f"{cell.run_dir} has no {attack} result; run the ablation first")
        values[cell.config.seed] = record["accuracy"]
    return values


@dataclass
class Verdict:
    """One factor: each level's mean judge accuracy, the best level, and its paired gain."""

    factor: str
    level_means: dict[str, float]  # level label -> mean accuracy (the default included)
    gains: dict[str, Estimate]  # level label -> its accuracy minus the default's, paired over seeds
    best: str
    winner: str  # the level to use: best when its gain's interval is above zero, else the default

    @property
    def gain(self) -> Estimate | None:
        """The best level's paired gain; None when the default is best."""
        return self.gains.get(self.best)


def verdicts(cells: Sequence[Cell], plan: EvalPlan) -> list[Verdict]:
    """Apply the decision rule of the module docstring to every factor."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.labels["factor"], cell.labels["value"]), []).append(cell)
    baseline_cells = groups[(BASELINE, "")]
    baseline = judge_values(baseline_cells, plan)
    settings = baseline_settings(baseline_cells[0].config)
    factors = list(dict.fromkeys(f for f, _ in groups if f != BASELINE))
    result = []
    for factor in factors:
        default_label = f"{factor}={settings[factor]} (default)"
        means = {default_label: mean_ci(list(baseline.values())).mean}
        gains = {}
        for (name, value), members in groups.items():
            if name != factor:
                continue
            values = judge_values(members, plan)
            if set(values) != set(baseline):
                raise SpartaError(
                    f"{factor}={value} ran seeds {sorted(values)}, the baseline "
                    f"{sorted(baseline)}; the comparison is paired by seed"
                )
            label = f"{factor}={value}"
            means[label] = mean_ci(list(values.values())).mean
            gains[label] = mean_ci([values[s] - baseline[s] for s in sorted(values)])
        best = max(means, key=means.__getitem__)
        gain = gains.get(best)  # None when the default is best
        separated = gain is not None and gain.low is not None and gain.low > 0
        result.append(Verdict(factor, means, gains, best, best if separated else default_label))
    return result


def verdict_markdown(found: Sequence[Verdict], plan: EvalPlan) -> str:
    """The decision per factor, as a markdown table."""
    attack = judge_attack(plan)
    head = ["factor", f"{attack} (%) per level", "level - default (paired, 95% CI)", "best", "use"]
    lines = [
        f"### Verdict by {attack} accuracy\n",
        "A level replaces the default only when its paired gain's 95% interval lies above zero.\n",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for verdict in found:
        levels = ", ".join(f"{label}: {100 * mean:.2f}" for label, mean in verdict.level_means.items())
        gains = ", ".join(f"{label}: {gain.format(100.0, 2)}" for label, gain in verdict.gains.items())
        lines.append(f"| {verdict.factor} | {levels} | {gains} | {verdict.best} | {verdict.winner} |")
    return "\n".join(lines) + "\n"
