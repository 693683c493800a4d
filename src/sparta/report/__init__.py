"""`sparta report`: a markdown report with PNG plots over one or more run directories.

Robust accuracy against eps per activation, training curves, the threshold maps T(X)
that Sparta predicts for clean and adversarial test images (Guo et al., arXiv:2105.08269),
and what each Sparta site learned: its beta, T's spread and its distance from ReLU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sparta.errors import SpartaError
from sparta.progress import capped
from sparta.report.collect import (
    Run,
    find_runs,
    group_runs,
    missing_eps,
    pgd_label,
    read_run,
    robust_accuracy_curves,
    run_names,
    training_curves,
)
from sparta.report.markdown import Figures, write_report
from sparta.report.sites import run_site_summaries
from sparta.report.thresholds import run_threshold_maps
from sparta.runfiles import EvalRecord


def fill_eps_sweep(
    runs: Sequence[Run],
    eps_values: Sequence[float],
    n: int | None = None,
    device: str = "auto",
    data_root: str | None = None,
) -> list[tuple[Run, EvalRecord]]:
    """Evaluate PGD-20 (clean at eps 0) on the first n test images where a run lacks the record.

    A record on at least as many images counts as present. Records are merged into each
    run's eval.json; the (run, record) pairs made are returned.
    """
    from sparta.data import load_dataset
    from sparta.evaluation import evaluate_run

    if n is not None and n < 1:
        raise SpartaError(f"--n must be >= 1, got {n}")
    made = []
    for run in runs:
        if n is not None and not missing_eps(run, eps_values, n):
            continue  # skip reading the test set when nothing is missing
        test_size = len(load_dataset(run.config.dataset, "test", data_root or run.config.data_root)[1])
        wanted = test_size if n is None else min(n, test_size)
        for eps in missing_eps(run, eps_values, wanted):
            attacks = ["clean"] if eps == 0 else ["pgd"]
            records = evaluate_run(run.path, attacks, n=wanted, eps=eps, device=device, data_root=data_root)
            made += [(run, record) for record in records]
    return made


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=]+", "-", text).strip("-") or "run"


def build_report(
    runs: Sequence[Run], out: str | Path, images: int = 4, device: str = "auto", data_root: str | None = None
) -> Path:
    """Draw the figures into `out` and write out/report.md; returns the report's path."""
    # matplotlib loads here, when a report is drawn, not with `import sparta`
    from sparta.report.plots import plot_robust_accuracy, plot_site_gates, plot_training_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    colors = {label: f"C{index % 10}" for index, label in enumerate(groups)}
    figures = Figures()
    curves = robust_accuracy_curves(groups)
    if curves:
        figures.robust = plot_robust_accuracy(curves, out / "robust_accuracy.png", pgd_label(runs), colors)
    else:
        figures.notes["robust"] = [
            "No clean or PGD records in eval.json: run `sparta eval` on the runs "
            "or pass `--eps-sweep` to `sparta report`."
        ]
    training = training_curves(groups)
    if training:
        figures.training = plot_training_curves(training, out / "training_curves.png", colors)
    else:
        figures.notes["training"] = ["No per-epoch metrics (metrics.jsonl) in these runs."]
    _add_threshold_maps(figures, groups, out, images, device, data_root)
    _add_site_summaries(figures, groups, device, data_root)
    if figures.sites:
        figures.gates = plot_site_gates(figures.sites, out / "sparta_gates.png")
    return write_report(out, runs, groups, figures)


# Clean test images the site summaries are measured on.
SITE_IMAGES = 200
# Rows of a threshold-map figure at most (one image each): more is unreadable, and past
# about 200 rows the PNG is taller than the renderer allows.
MAX_MAP_IMAGES = 32


def _add_site_summaries(figures: Figures, groups: dict[str, list[Run]], device: str, data_root: str | None) -> None:
    """Each Sparta group's site summaries, every seed; one note for the groups without Sparta."""
    plain = []
    for label, members in groups.items():
        try:
            per_seed = [run_site_summaries(run.path, SITE_IMAGES, device, data_root) for run in members]
        except SpartaError as err:
            figures.notes.setdefault("sites", []).append(f"{label}: skipped, {err}")
            continue
        if per_seed[0]:
            figures.sites[label] = per_seed
        else:
            plain.append(label)
    if plain:
        figures.notes.setdefault("sites", []).append(f"No Sparta site in: {', '.join(plain)}.")


def _add_threshold_maps(
    figures: Figures, groups: dict[str, list[Run]], out: Path, images: int, device: str, data_root: str | None
) -> None:
    """One figure per group that has Sparta, from its first seed; a note for every group skipped."""
    from sparta.report.plots import plot_threshold_maps  # matplotlib: see build_report

    names = run_names([run for members in groups.values() for run in members])
    notes = figures.notes.setdefault("thresholds", [])
    if images < 1:
        notes.append("Threshold maps not drawn (--images 0).")
        return
    images = capped(images, MAX_MAP_IMAGES, "--images", f"the {MAX_MAP_IMAGES} rows a threshold-map figure holds")
    for index, (label, members) in enumerate(groups.items()):
        run = members[0]
        try:
            maps = run_threshold_maps(run.path, images, device, data_root)
        except SpartaError as err:
            notes.append(f"{label} (run {names[run.path]}): skipped, {err}")
            continue
        if maps is None:
            notes.append(f"{label} (run {names[run.path]}): no Sparta activation, no threshold maps.")
            continue
        path = out / f"thresholds-{index + 1}-{_slug(label)}.png"
        title = f"Sparta threshold maps: {label} (run {names[run.path]}, seed {run.config.seed})"
        figures.thresholds.append((label, plot_threshold_maps(maps, path, title)))
        if not (maps.t_clean.any() or maps.t_adversarial.any()):
            notes.append(
                f"{label} (run {names[run.path]}): T(X) is 0 at every position shown; phi's last "
                "layer has not moved from its zero start, so this Sparta still acts as Swish."
            )


__all__ = [
    "MAX_MAP_IMAGES",
    "Figures",
    "Run",
    "build_report",
    "fill_eps_sweep",
    "find_runs",
    "group_runs",
    "read_run",
    "robust_accuracy_curves",
    "run_names",
    "training_curves",
]
