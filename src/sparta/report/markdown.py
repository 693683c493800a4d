"""report.md: the figures, the runs, and a table of each run's latest evaluation records."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparta.report.collect import Run, latest_records, run_names
from sparta.report.sites import SiteSummary
from sparta.runfiles import atomic_write_text

REPORT_FILE = "report.md"


@dataclass
class Figures:
    """What the report shows: PNG paths (None: not drawn) and a line for each thing skipped."""

    robust: Path | None = None
    training: Path | None = None
    thresholds: list[tuple[str, Path]] = field(default_factory=list)  # (group label, PNG)
    sites: dict[str, list[list[SiteSummary]]] = field(default_factory=dict)  # group -> per seed, per site
    gates: Path | None = None  # the sites' learned functions as curves
    notes: dict[str, list[str]] = field(default_factory=dict)  # section -> lines


def _image(out_dir: Path, path: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _runs_table(runs: Sequence[Run], names: dict[Path, str], groups: dict[str, list[Run]]) -> list[str]:
    group_of = {id(run): label for label, members in groups.items() for run in members}
    lines = [
        "| run | group | dataset | model | act | method | train ε | seed | epochs done |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        c = run.config
        lines.append(
            f"| {names[run.path]} | {group_of[id(run)]} | {c.dataset} | {c.model} | {c.act} | "
            f"{c.method} | {c.eps:.4g} | {c.seed} | {len(run.metrics)}/{c.epochs} |"
        )
    return lines


def _records_table(runs: Sequence[Run], names: dict[Path, str]) -> list[str]:
    lines = ["| run | attack | ε | accuracy (%) | n | seconds |", "|---|---|---|---|---|---|"]
    for run in runs:
        for record in latest_records(run):
            seconds = record.get("seconds")
            lines.append(
                f"| {names[run.path]} | {record['attack']} | {float(record['eps']):.4g} | "
                f"{100 * float(record['accuracy']):.2f} | {record['n']} | "
                f"{'' if seconds is None else f'{seconds:.1f}'} |"
            )
    return lines if len(lines) > 2 else ["No evaluation records (eval.json) in these runs."]


def _sites_table(per_seed: list[list[SiteSummary]]) -> list[str]:
    """One row per site: each figure's mean over the group's seeds, then its range over them."""
    fields = ("beta", "threshold_mean", "threshold_sd", "input_sd", "from_relu", "negative_passed")
    lines = [
        "| site | beta | T mean | T sd | X sd | \\|Sparta − ReLU\\| / ReLU | negative passed / ReLU |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, site in enumerate(per_seed[0]):
        cells = [_mean_and_range([getattr(seed[index], name) for seed in per_seed]) for name in fields]
        lines.append(f"| {site.site} | {' | '.join(cells)} |")
    return lines


def _mean_and_range(values: list[float]) -> str:
    """'mean' for one seed, 'mean (low to high)' for several."""
    mean = f"{sum(values) / len(values):.2f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.2f} to {max(values):.2f})"


def _sites_section(figures: Figures, out_dir: Path) -> list[str]:
    """What each group's Sparta sites learned (sparta.report.sites): their functions drawn,
    then a table per group."""
    text = ["## What the Sparta sites learned", ""]
    if figures.gates:
        text += [_image(out_dir, figures.gates, "the learned functions of the Sparta sites"), ""]
    for label, per_seed in figures.sites.items():
        text += [f"### {label} (mean over {len(per_seed)} seed(s), then their range)", "", *_sites_table(per_seed), ""]
    return [*text, *(f"- {line}" for line in figures.notes.get("sites", [])), ""]


def render_report(out_dir: Path, runs: Sequence[Run], groups: dict[str, list[Run]], figures: Figures) -> str:
    """The text of report.md: runs, robust accuracy against eps, training curves, threshold maps, records."""
    names = run_names(runs)
    notes = figures.notes
    text = [
        "# sparta report",
        "",
        f"{len(runs)} run(s) in {len(groups)} group(s); runs that differ only in their seed form "
        "a group, and a group's curves are the mean over its seeds.",
        "",
        "## Runs",
        "",
        *_runs_table(runs, names, groups),
        "",
        "## Robust accuracy against ε",
        "",
    ]
    if figures.robust:
        text += [_image(out_dir, figures.robust, "robust accuracy against eps"), ""]
    text += [*notes.get("robust", []), "", "## Training curves", ""]
    if figures.training:
        text += [_image(out_dir, figures.training, "training curves"), ""]
    text += [*notes.get("training", []), "", "## Sparta threshold maps", ""]
    for label, path in figures.thresholds:
        text += [f"### {label}", "", _image(out_dir, path, f"threshold maps, {label}"), ""]
    text += [
        *(f"- {line}" for line in notes.get("thresholds", [])),
        "",
        *_sites_section(figures, out_dir),
        "## Latest evaluation records",
        "",
        *_records_table(runs, names),
        "",
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(text))


def write_report(out_dir: str | Path, runs: Sequence[Run], groups: dict[str, list[Run]], figures: Figures) -> Path:
    """Write report.md into `out_dir`, atomically, and return its path."""
    out_dir = Path(out_dir)
    path = out_dir / REPORT_FILE
    atomic_write_text(path, render_report(out_dir, runs, groups, figures))
    return path
