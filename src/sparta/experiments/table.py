"""The results table of a grid: one row per group of cells that differ only in seed.

Per row: accuracy (%) under each requested attack, training seconds (the sum of the
per-epoch `seconds` in metrics.jsonl, quick evaluations excluded), each as mean ± 95% CI
over seeds (Student's t, see sparta.stats); the parameter count (all, and trainable:
a frozen imported Sparta function is not trained); and the number of seeds, naming any
seed whose training ended near chance (its accuracies are in the mean: a variant that
sometimes fails to train is worse for it, but the reader should see why).
Written as table.md (for reading) and table.csv (means and CI half widths as numbers,
an empty cell where one seed gives no interval).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparta.config import TrainConfig
from sparta.data import dataset_info
from sparta.errors import SpartaError
from sparta.evaluation import worst_case
from sparta.experiments.grid import Cell, EvalPlan, eval_size
from sparta.runfiles import EvalRecord, atomic_write_text, find_record, read_eval_records, read_metrics
from sparta.sparta_activation import Sparta
from sparta.stats import Estimate, binomial_interval, mean_ci
from sparta.training.build import model_for
from sparta.training.chance import near_chance


@dataclass
class Row:
    """One group of seeds: its labels, the per-metric estimates, and parameter counts."""

    labels: dict[str, str]
    metrics: dict[str, Estimate]  # column title -> estimate (accuracy as a fraction)
    params: int
    trainable_params: int
    seeds: list[int]
    seeds_at_chance: list[int] = dataclasses.field(default_factory=list)
    per_seed: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # title -> value per seed
    test_images: int | None = None  # n of the test-set sample each accuracy was measured on


# Per example, robust only if no attack of the table broke it (AutoAttack's way of counting).
WORST_CASE = "worst-case"


def parameter_counts(config: TrainConfig) -> tuple[int, int]:
    """(all, trainable) parameters of the model a config builds; shared tensors count once.

    The imported function's values do not change the counts, so the model is built without
    reading `sparta_from`; with freeze_sparta every Sparta parameter is frozen.
    """
    model = model_for(dataclasses.replace(config, sparta_from=None, freeze_sparta=False))
    total = sum(p.numel() for p in model.parameters())
    frozen = 0
    if config.freeze_sparta:
        sparta_params = {id(p): p for m in model.modules() if isinstance(m, Sparta) for p in m.parameters()}
        frozen = sum(p.numel() for p in sparta_params.values())
    return total, total - frozen


def train_seconds(run_dir: Path) -> float:
    """A run's training time: the sum of its epochs' seconds in metrics.jsonl."""
    metrics = read_metrics(run_dir)
    if not metrics:
        raise SpartaError(f"{run_dir} has no metrics.jsonl; run the grid first")
    return sum(record["seconds"] for record in metrics)


def attack_title(record: EvalRecord) -> str:
    """'clean', 'pgd-20', 'cw-30', 'autoattack': the step count is part of what was run."""
    steps = record.get("settings", {}).get("steps")
    return record["attack"] if steps is None else f"{record['attack']}-{steps}"


def ended_at_chance(cell: Cell) -> bool:
    """Whether the cell's last training epoch stayed near chance (training.chance)."""
    last = read_metrics(cell.run_dir)[-1]
    return near_chance(last["train_acc"], dataset_info(cell.config.dataset).num_classes)


def _cell_values(cell: Cell, plan: EvalPlan) -> dict[str, float]:
    records = read_eval_records(cell.run_dir)
    n = eval_size(cell.config, plan)
    values: dict[str, float] = {}
    attacked: list[EvalRecord] = []
    for attack in plan.attacks:
        record = find_record(records, attack, cell.config.eps, n)
        if record is None:
            raise SpartaError(
                f"{cell.run_dir}/eval.json has no {attack} result at eps={cell.config.eps:g} "
                f"on n={n}; run the grid first"
            )
        values[attack_title(record)] = record["accuracy"]
        attacked += [record] if record["attack"] != "clean" else []
    worst = worst_case(attacked) if len(attacked) > 1 else None
    if worst is not None:
        values[WORST_CASE] = worst
    values["train s"] = train_seconds(cell.run_dir)
    return values


def _without_seed(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, seed=0, out="")


def collect(cells: Sequence[Cell], plan: EvalPlan) -> list[Row]:
    """Rows in order of first appearance; cells with equal labels must differ only in seed."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(tuple(cell.labels.items()), []).append(cell)
    rows = []
    for members in groups.values():
        first = members[0]
        for other in members[1:]:
            if _without_seed(other.config) != _without_seed(first.config):
                raise SpartaError(f"cells {first.name} and {other.name} share a row but differ in more than the seed")
    values = {labels: [_cell_values(cell, plan) for cell in members] for labels, members in groups.items()}
    # a column every cell has (the worst case needs per-example masks, which older records lack)
    titles = [t for t in next(iter(values.values()))[0] if all(t in v for cells in values.values() for v in cells)]
    for labels, members in groups.items():
        first, per_cell = members[0], values[labels]
        metrics = {key: mean_ci([v[key] for v in per_cell]) for key in titles}
        params, trainable = parameter_counts(first.config)
        rows.append(
            Row(
                dict(first.labels),
                metrics,
                params,
                trainable,
                [c.config.seed for c in members],
                [c.config.seed for c in members if ended_at_chance(c)],
                {key: [v[key] for v in per_cell] for key in titles},
                eval_size(first.config, plan),
            )
        )
    return rows


def _is_accuracy(title: str) -> bool:
    return title != "train s"


def _label_keys(rows: Sequence[Row]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.labels if k not in keys]
    return keys


def to_markdown(rows: Sequence[Row], caption: str = "") -> str:
    """A markdown table: accuracy in %, mean ± 95% CI half width ('n/a' for one seed)."""
    if not rows:
        raise SpartaError("no rows to tabulate")
    keys = _label_keys(rows)
    titles = list(rows[0].metrics)
    head = [*keys, *(f"{t} (%)" if _is_accuracy(t) else t for t in titles), "params", "trainable", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [row.labels.get(k, "") for k in keys]
        cells += [accuracy_text(row, t) if _is_accuracy(t) else row.metrics[t].format(1.0, 1) for t in titles]
        cells += [f"{row.params:,}", f"{row.trainable_params:,}", _seeds_text(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return (caption + "\n\n" if caption else "") + "\n".join(lines) + "\n"


def accuracy_text(row: Row, title: str) -> str:
    """'74.17 ± 1.20 (73.52, 74.17, 74.82)': mean ± t half width (%), then each seed's value.

    An accuracy lies in [0, 100]: where the t interval reaches past a bound (few seeds, a
    wide spread), the interval is shown clipped, as [low, high], instead of a ± that
    would promise values no accuracy can take."""
    estimate, values = row.metrics[title], row.per_seed.get(title, [])
    if estimate.half_width is None and row.test_images:  # one seed: the test-set sample's own interval
        n = row.test_images
        low, high = binomial_interval(round(estimate.mean * n), n)
        return f"{100 * estimate.mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
    text = estimate.format(100.0, 2)
    if estimate.low is not None and estimate.high is not None and (estimate.low < 0 or estimate.high > 1):
        low, high = max(0.0, estimate.low), min(1.0, estimate.high)  # set exactly when half_width is
        text = f"{100 * estimate.mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
    if len(values) > 1:
        text += " (" + ", ".join(f"{100 * v:.2f}" for v in values) + ")"
    return text


def _seeds_text(row: Row) -> str:
    """'3', or '3 (seed 1 at chance)' when some seeds never learned."""
    if not row.seeds_at_chance:
        return str(len(row.seeds))
    named = ", ".join(map(str, row.seeds_at_chance))
    return f"{len(row.seeds)} (seed{'s' if len(row.seeds_at_chance) > 1 else ''} {named} at chance)"


def to_csv(rows: Sequence[Row]) -> str:
    """Numbers only: <metric>_mean and <metric>_ci95 (accuracy in %, time in s), counts."""
    keys = _label_keys(rows)
    titles = list(rows[0].metrics) if rows else []
    slug = {t: t.replace(" ", "_") for t in titles}
    header = [
        *keys,
        *(f"{slug[t]}_{part}" for t in titles for part in ("mean", "ci95")),
        "params",
        "trainable_params",
        "n_seeds",
        "seeds",
        "seeds_at_chance",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values: list[object] = [row.labels.get(k, "") for k in keys]
        for t in titles:
            scale = 100.0 if _is_accuracy(t) else 1.0
            estimate = row.metrics[t]
            half = "" if estimate.half_width is None else round(scale * estimate.half_width, 6)
            values += [round(scale * estimate.mean, 6), half]
        values += [
            row.params,
            row.trainable_params,
            len(row.seeds),
            " ".join(map(str, row.seeds)),
            " ".join(map(str, row.seeds_at_chance)),
        ]
        writer.writerow(values)
    return buffer.getvalue()


def caption_for(cells: Sequence[Cell], plan: EvalPlan, title: str) -> str:
    """What the numbers are: dataset, eps, n, and how the interval was computed."""
    datasets = sorted({c.config.dataset for c in cells})
    eps = sorted({c.config.eps for c in cells})
    sizes = sorted({eval_size(c.config, plan) for c in cells})
    return (
        f"## {title}\n\nAccuracy (%) on the first {', '.join(map(str, sizes))} test images of "
        f"{', '.join(datasets)} at eps = {', '.join(f'{e:.4g}' for e in eps)} (L-inf, pixel space); "
        "mean ± 95% confidence half width over seeds (Student's t; "
        "[low, high] where the interval is clipped to [0, 100]), then each seed's value; a row of one "
        "seed shows [low, high], the 95% Clopper-Pearson interval for its sample of test images. "
        "Training time: seconds of training, summed over epochs."
    )


def write_table(
    cells: Sequence[Cell],
    plan: EvalPlan,
    out: str | Path,
    title: str,
    stem: str = "table",
    extra: str = "",
    paired_against: str | None = None,
) -> str:
    """Collect the cells into OUT/<stem>.md (plus `extra` markdown, and the paired differences
    against activation `paired_against` when given) and OUT/<stem>.csv; returns the markdown."""
    rows = collect(cells, plan)
    if paired_against:
        extra = "\n".join(part for part in (extra, paired_markdown(rows, paired_against)) if part)
    markdown = to_markdown(rows, caption_for(cells, plan, title)) + ("\n" + extra if extra else "")
    atomic_write_text(Path(out) / f"{stem}.md", markdown)
    atomic_write_text(Path(out) / f"{stem}.csv", to_csv(rows))
    return markdown


def paired_markdown(rows: Sequence[Row], reference: str) -> str:
    """Each row's accuracy minus the `reference` activation's, seed by seed (same seed, same data
    order), for every attack: the per-seed differences and their mean ± 95% CI (Student's t).
    Pairing removes the seed-to-seed spread that the unpaired intervals above carry."""
    by_act: dict[str, dict[int, dict[str, float]]] = {}
    for row in rows:
        seeds = by_act.setdefault(row.labels.get("act", ""), {})
        for index, seed in enumerate(row.seeds):
            seeds[seed] = {title: values[index] for title, values in row.per_seed.items()}
    if reference not in by_act or len(by_act) < 2:
        return ""
    titles = [t for t in next(iter(by_act[reference].values())) if _is_accuracy(t)]
    head = ["activation", *(f"{t}: minus {reference} (points)" for t in titles), "seeds"]
    lines = [
        f"### Paired differences against {reference}, seed by seed\n",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for act, seeds in by_act.items():
        common = sorted(set(seeds) & set(by_act[reference]))
        if act == reference or not common:
            continue
        cells = [act]
        for title in titles:
            differences = [100 * (seeds[s][title] - by_act[reference][s][title]) for s in common]
            listed = ", ".join(f"{d:+.2f}" for d in differences)
            cells.append(f"{mean_ci(differences).format(1.0, 2)} ({listed})")
        cells.append(", ".join(map(str, common)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
