"""The report's figures as PNG files: each function takes data and an output path, returns the path.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend state),
so they render the same on a headless machine and inside other programs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from sparta.report.collect import Band
from sparta.report.sites import SiteSummary, gate_curve
from sparta.report.thresholds import ThresholdMaps
from sparta.stats import mean_ci

DPI = 120
DIVERGING = "RdBu_r"  # blue below 0, red above; white at 0
_DEPTH = colormaps["viridis"]  # a site's depth in the network, first (dark) to last (yellow)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")  # hollow, so overlapping lines stay visible


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _color(colors: Mapping[str, str] | None, label: str, index: int) -> str:
    return (colors or {}).get(label, f"C{index % 10}")


def _several_seeds(band: Band) -> bool:
    return max(band.count) > 1


def _marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def _draw_band(
    ax,
    band: Band,
    color: str,
    label: str | None,
    scale: float = 1.0,
    linestyle: str = "-",
    marker: str | None = None,
    shade: bool = True,
) -> None:
    """The mean as a line with hollow markers; the 95% band shaded where there are several seeds."""
    mean = np.asarray(band.mean) * scale
    ax.plot(
        band.x,
        mean,
        color=color,
        linestyle=linestyle,
        marker=marker,
        markerfacecolor="none",
        markersize=7,
        label=label,
        linewidth=1.6,
    )
    if shade and _several_seeds(band):
        low, high = np.asarray(band.low) * scale, np.asarray(band.high) * scale
        if scale == 100.0:
            low, high = np.clip(low, 0, 100), np.clip(high, 0, 100)
        ax.fill_between(band.x, low, high, color=color, alpha=0.15, linewidth=0)


def _seed_note(bands: list[Band], shaded: bool) -> str:
    if not any(_several_seeds(b) for b in bands):
        return ""
    return "mean over seeds; shaded: 95% confidence interval (Student t)" if shaded else "mean over seeds"


def _sizes_note(band: Band) -> str:
    """', n = 500', or where the points rest on different test-set sizes, each size with its eps."""
    if not band.sizes:
        return ""
    if len(set(band.sizes)) == 1:
        return f", n = {band.sizes[0]}"
    by_size: dict[int, list[str]] = {}
    for x, n in zip(band.x, band.sizes):
        by_size.setdefault(n, []).append(f"{x:g}")
    return ", n varies: " + "; ".join(f"{n} at ε {', '.join(xs)}" for n, xs in sorted(by_size.items(), reverse=True))


def plot_robust_accuracy(
    curves: Mapping[str, Band], path: str | Path, attack: str = "PGD", colors: Mapping[str, str] | None = None
) -> Path:
    """Accuracy (%) against eps, one line per group; eps 0 is clean accuracy."""
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for index, (label, band) in enumerate(curves.items()):
        seeds = max(band.count)
        name = f"{label} ({seeds} seeds{_sizes_note(band)})" if seeds > 1 else f"{label} ({_sizes_note(band)[2:]})"
        _draw_band(ax, band, _color(colors, label, index), name, scale=100.0, marker=_marker(index))
    ax.set_xlabel("ε (L∞ radius, pixel values in [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    note = _seed_note(list(curves.values()), shaded=True)
    ax.set_title("ε = 0 is clean accuracy" + (f"; {note}" if note else ""), fontsize=9)
    fig.suptitle(f"Robust accuracy against ε under {attack}")
    return _save(fig, path)


def _draw_curves(loss_ax, acc_ax, curves: Mapping[str, Mapping[str, Band]], colors: Mapping[str, str] | None) -> list:
    """Each group's loss (left) and clean / PGD-10 accuracy (right); returns the legend handles."""
    handles = []
    for index, (label, metrics) in enumerate(curves.items()):
        color, marker = _color(colors, label, index), _marker(index)
        if "train_loss" in metrics:
            _draw_band(loss_ax, metrics["train_loss"], color, label, marker=marker, shade=False)
        for key, linestyle in (("test_clean", "-"), ("test_pgd10", "--")):
            if key in metrics:
                _draw_band(acc_ax, metrics[key], color, None, scale=100.0, linestyle=linestyle, marker=marker,
                           shade=False)  # fmt: skip
        handles.append(Line2D([], [], color=color, marker=marker, markerfacecolor="none", label=label))
    return handles


def plot_training_curves(
    curves: Mapping[str, Mapping[str, Band]], path: str | Path, colors: Mapping[str, str] | None = None
) -> Path:
    """Training loss (left) and test accuracy (right: clean solid, PGD-10 dashed) per epoch.

    Means over seeds without bands: with two panels of crossing curves, bands hide the lines.
    """
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    handles = _draw_curves(loss_ax, acc_ax, curves, colors)
    handles += [Line2D([], [], color="0.3", label="clean"), Line2D([], [], color="0.3", linestyle="--", label="PGD-10")]
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(0, 100),
               title="Test accuracy (quick evaluation after each epoch)")  # fmt: skip
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    loss_ax.legend(loc="best")
    if any("test_clean" in metrics or "test_pgd10" in metrics for metrics in curves.values()):
        acc_ax.legend(handles=handles, loc="best", fontsize=9)
    else:  # runs trained with --eval-every 0: say so rather than leave empty axes
        acc_ax.text(0.5, 0.5, "no per-epoch test evaluation in these runs\n(trained with --eval-every 0)",
                    transform=acc_ax.transAxes, ha="center", va="center", color="0.35")  # fmt: skip
    note = _seed_note([band for metrics in curves.values() for band in metrics.values()], shaded=False)
    fig.suptitle("Training curves" + (f" ({note})" if note else ""))
    return _save(fig, path)


def _symmetric_norm(*arrays: np.ndarray) -> TwoSlopeNorm:
    """A colour scale centred at 0 that covers every value of `arrays` (-1 to 1 when all are 0)."""
    limit = max(float(np.abs(a).max()) for a in arrays) or 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def _mark_if_zero(ax, values: np.ndarray) -> None:
    """Say so in the cell when a map is 0 everywhere: a white square alone reads as a bug."""
    if not np.any(values):
        ax.text(0.5, 0.5, "0 everywhere", transform=ax.transAxes, ha="center", va="center", color="0.35")


def _draw_threshold_row(
    cells,
    maps: ThresholdMaps,
    row: int,
    difference: np.ndarray,
    t_norm: TwoSlopeNorm,
    d_norm: TwoSlopeNorm,
    first: bool,
) -> tuple:
    """One image's five panels; returns the T(X) and the difference images, for the colour bars."""
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    cells[0].imshow(maps.images[row], **grey)
    cells[1].imshow(maps.adversarial[row], **grey)
    t_image = cells[2].imshow(maps.t_clean[row], cmap=DIVERGING, norm=t_norm)
    cells[3].imshow(maps.t_adversarial[row], cmap=DIVERGING, norm=t_norm)
    d_image = cells[4].imshow(difference[row], cmap=DIVERGING, norm=d_norm)
    for cell, values in zip(cells[2:], (maps.t_clean[row], maps.t_adversarial[row], difference[row])):
        _mark_if_zero(cell, values)
    names = ["clean image", f"{maps.attack}, ε={maps.eps:.3g}", "T(X), clean", "T(X), adversarial",
             "T(adv) − T(clean)"]  # fmt: skip
    notes = [f"label {maps.labels[row]}, predicted {maps.pred_clean[row]}", f"predicted {maps.pred_adversarial[row]}",
             "", "", ""]  # fmt: skip
    for cell, name, note in zip(cells, names, notes):
        cell.set_title(f"{name}\n{note}" if first else note, fontsize=9)
        cell.set_xticks([])
        cell.set_yticks([])
    return t_image, d_image


def plot_threshold_maps(maps: ThresholdMaps, path: str | Path, title: str) -> Path:
    """Per image: clean image, adversarial image, T(X) clean, T(X) adversarial and their difference."""
    rows = len(maps.labels)
    fig = Figure(figsize=(13.0, 2.5 * rows + 1.2), layout="constrained")
    axes = fig.subplots(rows, 5, squeeze=False)
    t_norm = _symmetric_norm(maps.t_clean, maps.t_adversarial)
    difference = maps.t_adversarial - maps.t_clean
    d_norm = _symmetric_norm(difference)
    for row in range(rows):
        t_image, d_image = _draw_threshold_row(axes[row], maps, row, difference, t_norm, d_norm, first=row == 0)
    fig.colorbar(
        t_image,
        ax=axes[:, 2:4],
        location="bottom",
        label="threshold T(X) (clean and adversarial)",
        shrink=0.8,
        aspect=30,
    )
    fig.colorbar(d_image, ax=axes[:, 4], location="bottom", label="T(adv) − T(clean)", shrink=0.95, aspect=15)
    channels, height, width = maps.site_shape
    shared = "one map shared by all channels" if maps.maps_per_site == 1 else f"mean of {maps.maps_per_site} maps"
    fig.suptitle(
        f"{title}\nT(X) at the first Sparta site '{maps.site}' (input {channels}×{height}×{width}; {shared})",
        fontsize=11,
    )
    return _save(fig, path)


NAMED_SITES = 6  # a panel of more sites colours them by depth and names the first and last only


def _draw_gates(ax, per_seed: Sequence[Sequence[SiteSummary]]) -> None:
    """One group's sites: each curve at the seeds' mean beta and mean T, shaded between
    T - sd and T + sd; ReLU dashed. The x range is twice the widest site input's sd."""
    reach = 2.0 * max(float(np.mean([seed[i].input_sd for seed in per_seed])) for i in range(len(per_seed[0])))
    x = np.linspace(-reach, reach, 401)
    ax.plot(x, np.maximum(x, 0.0), "--", color="0.25", linewidth=1.0, label="ReLU")
    count = len(per_seed[0])
    for index, site in enumerate(per_seed[0]):
        beta, mean, sd = (
            float(np.mean([getattr(seed[index], name) for seed in per_seed]))
            for name in ("beta", "threshold_mean", "threshold_sd")
        )
        color = f"C{index % 10}" if count <= NAMED_SITES else _DEPTH(index / max(count - 1, 1))
        named = count <= NAMED_SITES or index in (0, count - 1)
        label = f"{site.site}: beta {beta:.2f}, T {mean:+.2f} ± {sd:.2f}" if named else None
        ax.plot(x, gate_curve(x, beta, mean), color=color, linewidth=1.2, label=label)
        ax.fill_between(x, gate_curve(x, beta, mean - sd), gate_curve(x, beta, mean + sd), color=color,
                        alpha=0.2, linewidth=0)  # fmt: skip
    ax.set_xlabel("site input x", fontsize=8)
    ax.set_ylabel("output", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def plot_site_gates(sites: Mapping[str, Sequence[Sequence[SiteSummary]]], path: str | Path) -> Path:
    """What each group's Sparta sites learned, as functions of their input: one panel per
    group, each site's x * sigmoid(beta (x - T)) at T's mean over images and positions, shaded
    over T ± its sd (how far the spatial attention moves it), against ReLU; means over seeds."""
    columns = min(len(sites), 3)
    rows = -(-len(sites) // columns)
    fig = Figure(figsize=(4.6 * columns, 4.0 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (label, per_seed) in zip(axes, sites.items()):
        _draw_gates(ax, per_seed)
        title = f"{label} ({len(per_seed)} seed{'s' if len(per_seed) != 1 else ''})"
        ax.set_title(textwrap.fill(title, 48), fontsize=9)
    for ax in axes[len(sites) :]:
        ax.set_visible(False)
    fig.suptitle("What each Sparta site learned\nx · sigmoid(beta (x − T)), T at its mean, shaded over T ± sd",
                 fontsize=10)  # fmt: skip
    return _save(fig, path)


DECIDED_SEEDS = 3  # a forest-plot row of fewer seeds is still running: drawn pale, not setting the scale


def difference_axis_reach(rows: Sequence[tuple[str, Sequence[float]]], decided_seeds: int = DECIDED_SEEDS) -> float:
    """How far from 0 a forest-plot panel reaches: every seed's dot and the interval of
    every row of `decided_seeds` or more seeds, with a margin. A row of fewer seeds (still
    running) has an interval wide enough to squeeze every other row into a few pixels, so
    it is cut at the edge (with an arrow) instead of setting the scale."""
    reach = [abs(v) for _, values in rows for v in values]
    for _, values in rows:
        estimate = mean_ci(values)
        if len(values) >= decided_seeds and estimate.low is not None and estimate.high is not None:
            reach += [abs(estimate.low), abs(estimate.high)]
    return max(1.0, 1.15 * max(reach, default=0.0))


def plot_paired_differences(
    panels: Mapping[str, Sequence[tuple[str, Sequence[float]]]], path: str | Path, title: str
) -> Path:
    """A forest plot: one panel per metric, one row per comparison. Each seed's paired
    difference (points) is a dot, the mean a diamond with its 95% Student-t interval as a
    bar (none for a single seed); the line at 0 is "level". Rows of under DECIDED_SEEDS
    seeds are drawn pale, and an interval past the panel's reach (`difference_axis_reach`) ends in
    an arrow at the edge."""
    labels = list(dict.fromkeys(label for rows in panels.values() for label, _ in rows))
    fig = Figure(figsize=(3.2 * len(panels) + 2.2, 0.42 * len(labels) + 1.3))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (metric, rows) in zip(axes, panels.items(), strict=True):
        reach = difference_axis_reach(rows)
        ax.axvline(0.0, color="0.4", linewidth=0.8)
        for label, values in rows:
            y = labels.index(label)
            estimate = mean_ci(values)
            alpha = 1.0 if len(values) >= DECIDED_SEEDS else 0.45
            ax.plot(values, [y] * len(values), "o", color="0.55", markersize=3, fillstyle="none")
            if estimate.low is not None and estimate.high is not None:
                low, high = max(estimate.low, -reach), min(estimate.high, reach)
                ax.plot([low, high], [y, y], color="C0", linewidth=2, alpha=alpha)
                for end, cut, marker in ((low, estimate.low < -reach, "<"), (high, estimate.high > reach, ">")):
                    if cut:
                        ax.plot([end], [y], marker, color="C0", markersize=6, alpha=alpha, clip_on=False)
            ax.plot([estimate.mean], [y], "D", color="C0", markersize=5, alpha=alpha)
        ax.set_xlim(-reach, reach)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("difference (points)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
