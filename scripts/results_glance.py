"""The one-screen table and the figure that open results/README.md, and the per-seed tables
of each claim's page, made from the run records.

    python scripts/results_glance.py            # rewrite the tables and results/glance.png
    python scripts/results_glance.py --check    # exit 1 if a table is not what the records give

Each row pairs an arm with its reference seed by seed (same seed, same data order) and
reads every accuracy from the runs' eval.json: the paired difference in points, mean ±
95% Student-t half width over the seeds both have, for clean, PGD-20 and AutoAttack
accuracy, each metric over its own seeds (AutoAttack lands seeds after the rest). The
verdict follows from the robust intervals (PGD-20 and AutoAttack) of 3 or more seeds: ahead
or behind where an interval excludes 0, level where all include it. Each page of a claim
(results/claim-*.md) carries, between its own markers, every arm's accuracy and every
paired difference seed by seed, with CW-30 beside them, what each difference's robust
intervals rule in and rule out, and how fast each arm learned (training accuracy under
attack averaged over the epochs); and, between markers of their own, the gradient-masking
checks of every run that has one (`sparta eval RUN --sanity`). Nothing is typed in by hand, so
no table can drift from the records (tests/test_results_glance.py runs --check).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.experiments.transfer import frozen_function_change
from sparta.report.plots import plot_paired_differences
from sparta.runfiles import find_record, read_eval, read_eval_records, read_metrics
from sparta.stats import Estimate, mean_ci

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
START, END = "<!-- glance: start (scripts/results_glance.py) -->", "<!-- glance: end -->"
PAGE_START, PAGE_END = "<!-- per-seed: start (scripts/results_glance.py) -->", "<!-- per-seed: end -->"
SANITY_START, SANITY_END = "<!-- sanity: start (scripts/results_glance.py) -->", "<!-- sanity: end -->"
SEEDS = range(10)
READMES = [(RESULTS / "README.md", ""), (ROOT / "README.md", "results/")]  # file, its links' prefix


@dataclass(frozen=True)
class Metric:
    title: str
    attack: str
    n: int


@dataclass(frozen=True)
class Comparison:
    claim: str
    setting: str
    arm: str  # label in the table
    reference: str
    arm_runs: str  # run directory under results/, "{seed}" filled in
    reference_runs: str
    metrics: tuple[Metric, ...]
    machine: str
    details: str  # page under results/
    glance: bool = True  # a row of the one-screen table (else on its page only)
    network: str = ""  # named in the figure's label where the claim has rows of several networks

    def runs(self, pattern: str) -> dict[int, Path]:
        found = {seed: RESULTS / pattern.format(seed=seed) for seed in SEEDS}
        return {seed: path for seed, path in found.items() if (path / "eval.json").is_file()}


FULL_FMNIST = (Metric("clean", "clean", 10000), Metric("PGD-20", "pgd", 10000), Metric("AutoAttack", "autoattack", 200))
FULL_FMNIST_SETTING = "SmallCNN, Fashion-MNIST, all 60,000 images, PGD-AT eps 0.1, 5 epochs"
CPU = "2-core CPU"
FULL_DIGITS = (Metric("clean", "clean", 450), Metric("PGD-20", "pgd", 450), Metric("AutoAttack", "autoattack", 450))
DIGITS_SETTING = "SmallCNN, digits (1,347 train / 450 test), PGD-AT eps 0.1, 30 epochs"
FULL_B_SETTING = "ResNet-20, Fashion-MNIST, all 60,000 images, PGD-AT eps 0.1, 5 epochs"
SMALL_B = (Metric("clean", "clean", 200), Metric("PGD-20", "pgd", 200), Metric("AutoAttack", "autoattack", 100))
SMALL_B_SETTING = "ResNet-20, Fashion-MNIST, 3,000 images, 4 epochs (small scale)"
OWN_SOURCE = "Sparta frozen from Fashion-MNIST, each seed's own source"


def _full_fmnist(act: str, label: str) -> Comparison:
    return Comparison(
        "(a)",
        FULL_FMNIST_SETTING,
        label,
        "ReLU",
        f"cpu/full-fmnist/smallcnn-{act}-pgd-seed{{seed}}",
        "cpu/full-fmnist/smallcnn-relu-pgd-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-a-full.md",
    )


COMPARISONS = (
    _full_fmnist("sparta", "Sparta"),
    Comparison(
        "(a)",
        FULL_FMNIST_SETTING,
        "Sparta, phi's gradient scaled",
        "ReLU",
        "cpu/full-fmnist-scaled/smallcnn-sparta-pgd-seed{seed}",
        "cpu/full-fmnist/smallcnn-relu-pgd-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-a-full.md",
    ),
    Comparison(  # what the spatial attention adds: Sparta with one learned threshold per stage (page only)
        "(a)",
        FULL_FMNIST_SETTING,
        "Sparta without attention (phi=constant)",
        "Sparta, phi's gradient scaled",
        "cpu/full-fmnist-scaled/smallcnn-sparta_phi-constant-pgd-seed{seed}",
        "cpu/full-fmnist-scaled/smallcnn-sparta-pgd-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-a-full.md",
        glance=False,
    ),
    _full_fmnist("swish", "Swish"),
    _full_fmnist("frelu", "FReLU"),
    _full_fmnist("pssilu", "PSSiLU"),
    _full_fmnist("psoftplus", "parametric Softplus"),
    Comparison(  # claim (a) once more, on claim (b)'s ResNet-20 arms (same cells, no extra cost)
        "(a)",
        FULL_B_SETTING,
        "Sparta from scratch",
        "ReLU",
        "cpu/full-cross-cnn/sparta-scratch-resnet20-fashion-mnist-seed{seed}",
        "cpu/full-cross-cnn/relu-resnet20-fashion-mnist-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-b.md",
        network="ResNet-20",
    ),
    Comparison(
        "(b)",
        FULL_B_SETTING,
        "Sparta frozen from SmallCNN",
        "ReLU",
        "cpu/full-cross-cnn/sparta-frozen-resnet20-fashion-mnist-seed{seed}",
        "cpu/full-cross-cnn/relu-resnet20-fashion-mnist-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-b.md",
    ),
    Comparison(
        "(b)",
        FULL_B_SETTING,
        "Sparta frozen from SmallCNN",
        "Sparta from scratch",
        "cpu/full-cross-cnn/sparta-frozen-resnet20-fashion-mnist-seed{seed}",
        "cpu/full-cross-cnn/sparta-scratch-resnet20-fashion-mnist-seed{seed}",
        FULL_FMNIST,
        CPU,
        "claim-b.md",
    ),
    Comparison(
        "(b)",
        SMALL_B_SETTING,
        "Sparta frozen from SmallCNN",
        "ReLU",
        "cpu/cross-cnn-smallcnn-resnet20/sparta-frozen-resnet20-fashion-mnist-seed{seed}",
        "cpu/cross-cnn-smallcnn-resnet20/relu-resnet20-fashion-mnist-seed{seed}",
        SMALL_B,
        CPU,
        "claim-b-small.md",
    ),
    Comparison(
        "(b)",
        SMALL_B_SETTING,
        "Sparta frozen from SmallCNN",
        "Sparta from scratch",
        "cpu/cross-cnn-smallcnn-resnet20/sparta-frozen-resnet20-fashion-mnist-seed{seed}",
        "cpu/cross-cnn-smallcnn-resnet20/sparta-scratch-resnet20-fashion-mnist-seed{seed}",
        SMALL_B,
        CPU,
        "claim-b-small.md",
    ),
    Comparison(
        "(c)",
        DIGITS_SETTING,
        "Sparta frozen from Fashion-MNIST",
        "ReLU",
        "cpu/full-digits/sparta-frozen-smallcnn-digits-seed{seed}",
        "cpu/full-digits/relu-smallcnn-digits-seed{seed}",
        FULL_DIGITS,
        CPU,
        "claim-c.md",
    ),
    Comparison(
        "(c)",
        DIGITS_SETTING,
        "Sparta frozen from Fashion-MNIST",
        "Sparta from scratch",
        "cpu/full-digits/sparta-frozen-smallcnn-digits-seed{seed}",
        "cpu/full-digits/sparta-scratch-smallcnn-digits-seed{seed}",
        FULL_DIGITS,
        CPU,
        "claim-c.md",
    ),
    *(
        Comparison(
            "(c)",
            DIGITS_SETTING,
            OWN_SOURCE,
            reference,
            "cpu/full-digits-sources/sparta-frozen-smallcnn-digits-seed{seed}",
            reference_runs,
            FULL_DIGITS,
            CPU,
            "claim-c.md",
            glance=False,
        )
        for reference, reference_runs in (
            ("ReLU", "cpu/full-digits/relu-smallcnn-digits-seed{seed}"),
            ("Sparta from scratch", "cpu/full-digits/sparta-scratch-smallcnn-digits-seed{seed}"),
        )
    ),
)


def accuracy(run: Path, metric: Metric) -> float | None:
    record = find_record(read_eval_records(run), metric.attack, 0.1, metric.n)
    return None if record is None else 100 * float(record["accuracy"])


def paired(comparison: Comparison) -> dict[str, dict[int, float]]:
    """Per metric of the glance, seed -> arm minus reference in points, on each seed both arms
    have it: each metric its own seeds, since AutoAttack lands seeds after clean and PGD-20."""
    by_metric = paired_by_metric(comparison)
    return {m.title: by_metric[m.title] for m in comparison.metrics if by_metric.get(m.title)}


MIN_SEEDS = 3  # a verdict needs an interval from at least three paired seeds


def verdict(differences: dict[str, list[float]]) -> str:
    """From the robust metrics of at least MIN_SEEDS paired seeds: ahead or behind where an
    interval excludes 0, else level; a robust metric on fewer seeds is named as still to come."""
    robust = {title: mean_ci(values) for title, values in differences.items() if title != "clean" and values}
    decided = {title: e for title, e in robust.items() if e.n >= MIN_SEEDS}
    if not decided:
        return f"running: under {MIN_SEEDS} paired seeds"
    pending = "".join(f"; {t} on {e.n} of {MIN_SEEDS} seeds so far" for t, e in robust.items() if e.n < MIN_SEEDS)
    spread = {title: e for title, e in decided.items() if e.half_width}  # all seeds equal: no spread to judge
    if not spread:
        return f"undecided: every seed gave the same difference{pending}"
    ahead = [t for t, e in spread.items() if e.low is not None and e.low > 0]
    behind = [t for t, e in spread.items() if e.high is not None and e.high < 0]
    if ahead and not behind:
        return f"**ahead** ({', '.join(ahead)}){pending}"
    if behind and not ahead:
        return f"**behind** ({', '.join(behind)}){pending}"
    return ("mixed" if ahead else "level") + pending


def _cell(values: list[float] | None, form: str = "{:+.2f}") -> str:
    """mean ± 95% Student-t half width of `values` ("n/a" for one value, "–" for none)."""
    if not values:
        return "–"
    estimate: Estimate = mean_ci(values)
    half = "n/a" if estimate.half_width is None else f"{estimate.half_width:.2f}"
    return f"{form.format(estimate.mean)} ± {half}"


Measured = list[tuple[Comparison, dict[str, dict[int, float]]]]  # comparison, metric -> seed -> difference


def measure() -> Measured:
    """Every comparison's paired differences, read from the records once."""
    return [(comparison, paired(comparison)) for comparison in COMPARISONS if comparison.glance]


def row_seeds(differences: dict[str, dict[int, float]]) -> int:
    """The seeds column of a row: the most seeds any of its metrics has paired."""
    return max((len(values) for values in differences.values()), default=0)


def _counted(values: dict[int, float] | None, seeds: int, n: int | None = None) -> str:
    """A table cell, then in brackets its test images n (where given) and its own count of
    seeds where it has fewer than its row: "+1.11 ± n/a (450, 1 seed)"."""
    own = len(values or {})
    notes = [] if n is None else [f"{n}"]
    if own not in (0, seeds):
        notes.append(f"{own} seed{'s' if own != 1 else ''}")
    return _cell(list((values or {}).values())) + (f" ({', '.join(notes)})" if notes else "")


def table(measured: Measured, links: str = "") -> str:
    """The markdown table, its page links prefixed with `links`."""
    lines = [
        "| claim | setting | arm − reference | clean | PGD-20 | AutoAttack (n) | seeds | verdict | machine |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    previous: tuple[str, str] | None = None
    for comparison, differences in measured:
        auto = next(m for m in comparison.metrics if m.attack == "autoattack")
        seeds = row_seeds(differences)
        decided = verdict({title: list(values.values()) for title, values in differences.items()})
        # claim and setting once per group of rows
        group = (comparison.claim, comparison.setting)
        where = "" if group == previous else f"{comparison.claim} | [{comparison.setting}]({links}{comparison.details})"
        previous = group
        lines.append(
            f"| {where or ' | '} | {comparison.arm} − {comparison.reference} | "
            f"{_counted(differences.get('clean'), seeds)} | {_counted(differences.get('PGD-20'), seeds)} | "
            f"{_counted(differences.get('AutoAttack'), seeds, auto.n)} | "
            f"{seeds} | {decided} | {comparison.machine} |"
        )
    note = (
        "\nPaired differences in points, mean ± 95% Student-t half width over the seeds both arms "
        "have (each accuracy on the same test images for both); a cell on fewer seeds than its row "
        "says how many (AutoAttack lands after the rest). Clean and PGD-20 on the n of the "
        "setting's page, AutoAttack (standard) on the first n test images. Verdict from the robust "
        f"intervals of {MIN_SEEDS} or more paired seeds: ahead or behind where one excludes 0. The intervals "
        "are over training seeds on one fixed test sample; on 100-200 test images a difference of a "
        "point or two can also be that sample's. Made by `python scripts/results_glance.py` from the "
        "runs' eval.json.\n"
    )
    return "\n".join(lines) + "\n" + note


def panels(measured: Measured) -> dict[str, list[tuple[str, list[float]]]]:
    """The forest plot's panels: robust metric -> (row label, per-seed differences)."""
    found: dict[str, list[tuple[str, list[float]]]] = {}
    for title in ("PGD-20", "AutoAttack"):
        for comparison, differences in measured:
            if differences.get(title):
                scale = ", small scale" if "(small scale)" in comparison.setting else ""
                seeds = row_seeds(differences)
                count = f"{seeds} seed{'s' if seeds != 1 else ''}"
                network = comparison.network
                claim = f"({comparison.claim.strip('()')}, {network})" if network else comparison.claim
                label = f"{claim} {comparison.arm} − {comparison.reference} ({count}{scale})"
                found.setdefault(f"{title} minus reference", []).append((label, list(differences[title].values())))
    return found


def replace_between_markers(text: str, block: str, start: str = START, end: str = END) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}{end}{tail}"


# ---------------------------------------------------------------------------------------
# The per-seed tables of each claim's page


def page_metrics(comparison: Comparison) -> tuple[Metric, ...]:
    """The glance's metrics with CW-30 (on the PGD-20 images) before AutoAttack."""
    pgd = next(m for m in comparison.metrics if m.attack == "pgd")
    head = tuple(m for m in comparison.metrics if m.attack != "autoattack")
    return (*head, Metric("CW-30", "cw", pgd.n), *(m for m in comparison.metrics if m.attack == "autoattack"))


def seed_span(seeds: list[int]) -> str:
    """0, 1, 2, 3, 5 as "0-3, 5"."""
    spans: list[list[int]] = []
    for seed in seeds:
        if spans and seed == spans[-1][-1] + 1:
            spans[-1].append(seed)
        else:
            spans.append([seed])
    return ", ".join(str(s[0]) if len(s) == 1 else f"{s[0]}-{s[-1]}" for s in spans)


def per_seed_cell(values: dict[int, float], signed: bool) -> str:
    """mean ± 95% half width, then each seed's value in seed order."""
    if not values:
        return "–"
    form = "{:+.2f}" if signed else "{:.2f}"
    return f"{_cell(list(values.values()), form)} ({', '.join(form.format(v) for v in values.values())})"


def seeds_column(per_metric: dict[str, dict[int, float]]) -> str:
    """The seeds behind a row: the span most metrics share, then each other metric's own
    ("0-9; AutoAttack 0-4")."""
    spans = {title: seed_span(sorted(values)) for title, values in per_metric.items() if values}
    if not spans:
        return "–"
    shared = Counter(spans.values()).most_common(1)[0][0]
    return "; ".join([shared, *(f"{title} {span}" for title, span in spans.items() if span != shared)])


def arm_accuracies(comparison: Comparison, pattern: str) -> dict[str, dict[int, float]]:
    """Per metric, seed -> accuracy (%) of the runs `pattern` names that have it."""
    runs = comparison.runs(pattern)
    found: dict[str, dict[int, float]] = {}
    for metric in page_metrics(comparison):
        values = {seed: accuracy(run, metric) for seed, run in sorted(runs.items())}
        found[metric.title] = {seed: v for seed, v in values.items() if v is not None}
    return found


def paired_by_metric(comparison: Comparison) -> dict[str, dict[int, float]]:
    """Per metric, seed -> arm minus reference in points, on each seed both arms have it."""
    arm = arm_accuracies(comparison, comparison.arm_runs)
    reference = arm_accuracies(comparison, comparison.reference_runs)
    return {
        title: {seed: arm[title][seed] - reference[title][seed] for seed in arm[title] if seed in reference[title]}
        for title in arm
    }


def frozen_line(comparison: Comparison) -> str | None:
    """For an arm of frozen imported functions, whether each measured cell's function is
    still bit-identical to its source's (experiments.transfer.frozen_function_change);
    None for other arms, and once per arm (the first comparison that names it)."""
    if comparison != next((c for c in COMPARISONS if c.arm_runs == comparison.arm_runs), comparison):
        return None  # the arm's line is on the page already
    runs = comparison.runs(comparison.arm_runs)
    frozen = {seed: run for seed, run in runs.items() if TrainConfig.load(run).freeze_sparta}
    if not frozen:
        return None
    identical, changed, unkept = [], [], []
    for seed, run in frozen.items():
        try:
            change = frozen_function_change(run)
        except SpartaError:  # the source's function file is not there
            unkept.append(seed)
            continue
        (changed if change else identical).append(seed)

    def seeds(found: list[int]) -> str:
        return f"seed{'s' if len(found) != 1 else ''} {seed_span(found)}"

    parts = []
    if identical:
        cells = f"{len(frozen)} cell{'s' if len(frozen) != 1 else ''}"
        parts.append(f"bit-identical to its source's in {len(identical)} of {cells} ({seeds(identical)})")
    if changed:
        parts.append(f"**changed** from its source's in {seeds(changed)}")
    if unkept:
        parts.append(f"not checkable in {seeds(unkept)}: the source's function was not kept")
    return f"\n{comparison.arm}: the frozen function is {'; '.join(parts)}."


def bound_phrase(title: str, estimate: Estimate) -> str:
    """What one robust interval rules in or out, in points: a gain or loss of at least its
    near end where it excludes 0, else no gain or loss beyond its ends."""
    assert estimate.low is not None and estimate.high is not None
    span = f"{title} in [{estimate.low:+.2f}, {estimate.high:+.2f}]"
    if estimate.low > 0:
        return f"{span}: a gain of at least {estimate.low:.2f} points"
    if estimate.high < 0:
        return f"{span}: a loss of at least {-estimate.high:.2f} points"
    return f"{span}: rules out a gain above {estimate.high:.2f} and a loss above {-estimate.low:.2f} points"


def bounds_line(comparison: Comparison, differences: dict[str, dict[int, float]]) -> str:
    """One line per paired difference: what its robust 95% intervals rule in and rule out."""
    estimates = {
        title: mean_ci(list(values.values()))
        for title, values in differences.items()
        if title != "clean" and len(values) >= MIN_SEEDS
    }
    phrases = [bound_phrase(title, e) for title, e in estimates.items() if e.half_width]
    name = f"{comparison.arm} − {comparison.reference}"
    if not phrases:
        return f"- {name}: no interval yet (under {MIN_SEEDS} paired seeds)."
    seeds = sorted({len(differences[title]) for title in estimates})
    counted = "/".join(str(n) for n in seeds)
    return f"- {name} ({counted} paired seeds): {'; '.join(phrases)}."


def mean_training_accuracy(run: Path) -> float | None:
    """Training accuracy under the training attack averaged over every epoch (%): how fast
    a run learned, in one number; None for a run without all its epochs recorded."""
    epochs = TrainConfig.load(run).epochs
    records = read_metrics(run)[:epochs]
    return 100 * sum(r["train_acc"] for r in records) / epochs if len(records) == epochs else None


def learning_speed(comparisons: list[Comparison]) -> list[str]:
    """A table of each arm's mean training accuracy over the epochs and each paired
    difference: whether an arm learns sooner, which final accuracies cannot show."""

    def per_seed(pattern: str, comparison: Comparison) -> dict[int, float]:
        found = {seed: mean_training_accuracy(run) for seed, run in sorted(comparison.runs(pattern).items())}
        return {seed: value for seed, value in found.items() if value is not None}

    lines = [
        "",
        "How fast each arm learned: training accuracy under the training attack, averaged over "
        "all epochs (%), and the paired differences (points):",
        "",
        "| arm | mean over the epochs | which seeds |",
        "|---|---|---|",
    ]
    seen: dict[str, dict[int, float]] = {}
    for label, (comparison, pattern) in page_arms(comparisons).items():
        seen[label] = per_seed(pattern, comparison)
        cell = per_seed_cell(seen[label], signed=False)
        lines.append(f"| {label} | {cell} | {seed_span(sorted(seen[label])) or '–'} |")
    for comparison in comparisons:
        arm, reference = seen[comparison.arm], seen[comparison.reference]
        differences = {seed: arm[seed] - reference[seed] for seed in arm if seed in reference}
        cell = per_seed_cell(differences, signed=True)
        lines.append(
            f"| {comparison.arm} − {comparison.reference} | {cell} | {seed_span(sorted(differences)) or '–'} |"
        )
    return lines


def page_arms(comparisons: list[Comparison]) -> dict[str, tuple[Comparison, str]]:
    """Each arm of a page once, with a comparison that holds it and its runs' pattern: the pure
    references first (ReLU, then Sparta from scratch where it is only a reference), then every
    other arm in the order its comparisons are listed, each reference before its arm."""
    compared = {comparison.arm for comparison in comparisons}
    arms: dict[str, tuple[Comparison, str]] = {}
    for comparison in comparisons:
        if comparison.reference not in compared:
            arms.setdefault(comparison.reference, (comparison, comparison.reference_runs))
    for comparison in comparisons:
        arms.setdefault(comparison.reference, (comparison, comparison.reference_runs))
        arms.setdefault(comparison.arm, (comparison, comparison.arm_runs))
    return arms


def page_block(comparisons: list[Comparison]) -> str:
    """Accuracy per arm, then the paired differences with their verdict, for one page."""
    metrics = page_metrics(comparisons[0])
    header = " | ".join(f"{m.title}, n = {m.n:,}" for m in metrics)
    rule = "|---" * (len(metrics) + 2) + "|"
    lines = [f"| arm: accuracy (%) | {header} | which seeds |", rule]
    for label, (comparison, pattern) in page_arms(comparisons).items():
        values = arm_accuracies(comparison, pattern)
        cells = " | ".join(per_seed_cell(values[m.title], signed=False) for m in metrics)
        lines.append(f"| {label} | {cells} | {seeds_column(values)} |")
    lines += ["", f"| arm − reference (points) | {header} | which seeds | verdict |", rule + "---|"]
    bounds = ["", "What the robust 95% intervals of the paired differences rule in and rule out:", ""]
    for comparison in comparisons:
        differences = paired_by_metric(comparison)
        cells = " | ".join(per_seed_cell(differences[m.title], signed=True) for m in metrics)
        decided = verdict({title: list(v.values()) for title, v in differences.items() if v})
        lines.append(
            f"| {comparison.arm} − {comparison.reference} | {cells} | {seeds_column(differences)} | {decided} |"
        )
        bounds.append(bounds_line(comparison, differences))
    lines += bounds
    lines += learning_speed(comparisons)
    lines += [line for comparison in comparisons if (line := frozen_line(comparison))]
    note = (
        "\nMean ± 95% Student-t half width over seeds, then each seed's value in seed order; a "
        "difference pairs the two arms on the same seed (same data order, same test images). "
        "The verdict reads the robust columns (PGD-20, CW-30, AutoAttack) as in the glance table. "
        "Made by `python scripts/results_glance.py` from the runs' eval.json.\n"
    )
    return "\n".join(lines) + "\n" + note


# ---------------------------------------------------------------------------------------
# The gradient-masking checks of each claim's page


def sanity_numbers(record: dict) -> dict[str, float | bool]:
    """The figures of one `sparta eval RUN --sanity` record (eval.json's "sanity")."""
    checks = {check["name"]: check for check in record["checks"]}
    settings = record["settings"]
    sweep = checks["eps-sweep"]["numbers"]
    return {
        "pgd": sweep[f"pgd@{record['eps']:g}"],
        "strong": checks["stronger-pgd"]["numbers"]["strong_pgd"],
        "square": checks["black-box"]["numbers"]["square"],
        "large": sweep[f"pgd@{settings['large_eps']:g}"],
        "zero": checks["gradients"]["numbers"]["zero_fraction"],
        "passed": record["passed"],
    }


def sanity_block(comparisons: list[Comparison]) -> str:
    """One row per run of the page's arms that has a gradient-masking check, from its
    eval.json: the reference PGD, PGD with more steps and restarts, the black-box Square, PGD
    at a large eps and the share of all-zero input gradients, and whether every check passed."""
    header = None
    rows, seen = [], set()
    for label, (comparison, pattern) in page_arms(comparisons).items():
        for seed, run in sorted(comparison.runs(pattern).items()):
            record = read_eval(run).get("sanity")
            if record is None or run.resolve() in seen:  # a link to a run already listed
                continue
            seen.add(run.resolve())
            s = record["settings"]
            columns = (
                f"| arm | seed | PGD-{s['steps']} at eps {record['eps']:g} | PGD-{s['strong_steps']} x "
                f"{s['strong_restarts']} restarts | Square ({s['square_queries']:,} queries) | PGD-{s['steps']} at "
                f"eps {s['large_eps']:g} | all-zero input gradients | every check (n = {record['n']}) |"
            )
            if header not in (None, columns):
                raise SpartaError(f"{run}: its gradient-masking check ran with other settings than the page's others")
            header = columns
            v = sanity_numbers(record)
            pct = [f"{100 * v[key]:.0f}%" for key in ("pgd", "strong", "square", "large")] + [f"{100 * v['zero']:.1f}%"]
            rows.append(f"| {label} | {seed} | {' | '.join(pct)} | {'pass' if v['passed'] else '**FAIL**'} |")
    if header is None:
        return "No gradient-masking check has run yet.\n"
    note = (
        "\nFrom each run's eval.json (`sparta eval RUN --sanity`, on the first n test images). Made by "
        "`python scripts/results_glance.py`.\n"
    )
    return "\n".join([header, "|---" * header.count(" | ") + "|---|", *rows]) + "\n" + note


def sanity_blocks() -> dict[Path, str]:
    """Each claim page -> its table of gradient-masking checks."""
    return {page: sanity_block(comparisons) for page, comparisons in pages().items()}


def update_pages(blocks: dict[Path, str], write: bool, start: str = PAGE_START, end: str = PAGE_END) -> list[Path]:
    """The pages whose block between `start` and `end` differs from `blocks` (rewritten if
    `write`); a page without the markers keeps its own text."""
    stale = []
    for page, block in blocks.items():
        text = page.read_text()
        if start not in text or end not in text:
            continue
        updated = replace_between_markers(text, block, start, end)
        if updated != text:
            stale.append(page)
            if write:
                page.write_text(updated)
    return stale


def pages() -> dict[Path, list[Comparison]]:
    """Each claim page -> the comparisons it details."""
    found: dict[Path, list[Comparison]] = {}
    for comparison in COMPARISONS:
        found.setdefault(RESULTS / comparison.details, []).append(comparison)
    return found


def page_blocks() -> dict[Path, str]:
    """Each claim page -> its per-seed block."""
    return {page: page_block(comparisons) for page, comparisons in pages().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare the README's table with the records")
    parser.add_argument("--readme", type=Path, help="only this file, its links as from results/ (for tests)")
    parser.add_argument("--figure", type=Path, default=RESULTS / "glance.png")
    args = parser.parse_args(argv)
    targets = [(args.readme, "")] if args.readme else READMES
    measured = measure()
    stale = []
    for readme, links in targets:
        text = readme.read_text()
        if START not in text or END not in text:
            print(f"{readme}: no glance markers ({START} ... {END})", file=sys.stderr)
            return 1
        updated = replace_between_markers(text, table(measured, links))
        if updated != text:
            stale.append(readme)
            if not args.check:
                readme.write_text(updated)
    if not args.readme:
        stale += update_pages(page_blocks(), write=not args.check)
        stale += update_pages(sanity_blocks(), not args.check, SANITY_START, SANITY_END)
    if args.check:
        for readme in stale:
            print(f"{readme}: a table differs from the records; run scripts/results_glance.py")
        return 1 if stale else 0
    plot_paired_differences(panels(measured), args.figure, "Paired differences with 95% intervals (dots: seeds)")
    print(table(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
