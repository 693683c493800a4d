"""Read run directories (config.json, metrics.jsonl, eval.json) into the data the plots need.

Runs that differ only in their seed (and in settings that do not change the experiment,
such as the device) form one group; a group's curves are the mean over its seeds with a
95% confidence band (Student t), so a plot compares activations, not lucky seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE, EvalRecord, eps_key, read_eval_records, read_metrics, record_key
from sparta.stats import mean_ci

# Settings that do not define the experiment: runs differing only in these are replicates.
REPLICATE_FIELDS = frozenset(
    {"seed", "out", "device", "data_root", "precision", "channels_last", "compile", "sync_bn", "eval_every", "eval_n"}
)
# Named in a group label whenever they vary between groups, after the activation; any other
# varying setting is named only where it differs from its default (e.g. --sparta-from, which
# `sparta compare` gives to the Sparta cells alone).
ALWAYS_SHOWN = ("model", "method", "dataset")
TRAINING_METRICS = ("train_loss", "test_clean", "test_pgd10")


@dataclass
class Run:
    """One run directory as read from disk."""

    path: Path
    config: TrainConfig
    metrics: list[dict[str, Any]] = field(default_factory=list)
    records: list[EvalRecord] = field(default_factory=list)

    @property
    def group_key(self) -> tuple[tuple[str, str], ...]:
        """The settings that define the experiment (not seed, device, ...): runs with one key
        are replicates. An imported Sparta function counts by what it came from
        (`function_source`), not by its file's path: each seed of a transfer has its own."""
        values = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in REPLICATE_FIELDS}
        name, settings = function_source(self.config.sparta_from)
        values["sparta_from"] = name
        values.update({f"source {k}": v for k, v in settings.items()})
        return tuple((k, json.dumps(values[k], sort_keys=True)) for k in sorted(values))


def function_source(sparta_from: str | None) -> tuple[str | None, dict[str, Any]]:
    """An imported Sparta function as its source run: a name (its activation, model and
    dataset: "sparta smallcnn on fashion-mnist") and the source's settings but its seed and
    other replicate fields. The frozen cells of several seeds, each from its own source,
    then form one group, and sources trained differently stay apart, labelled by what
    differs ("source eps=0.2"). A file outside a run directory: its name, no settings."""
    if not sparta_from:
        return None, {}
    path = Path(sparta_from)
    run_dir = path if path.is_dir() else path.parent
    try:
        source = TrainConfig.load(run_dir)
    except (SpartaError, OSError):
        return (path.name if path.is_dir() or path.name != "sparta.safetensors" else f"{run_dir.name}/{path.name}"), {}
    settings = {k: v for k, v in dataclasses.asdict(source).items() if k not in REPLICATE_FIELDS}
    settings["sparta_from"] = function_source(source.sparta_from)[0]
    return f"{source.act} {source.model} on {source.dataset}", settings


@dataclass
class Band:
    """A curve over x with its mean and 95% band over seeds; `count` seeds at each point."""

    x: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    count: list[int]
    sizes: list[int] = field(default_factory=list)  # test images behind each point (the fewest over seeds)


def read_run(path: str | Path) -> Run:
    """Read one run directory; metrics and eval records may be missing (empty lists). A
    model file of another architecture than config.json names is refused."""
    from sparta.checkpoint import check_run_model

    path = Path(path)
    config = TrainConfig.load(path)
    check_run_model(path, config)
    return Run(path, config, read_metrics(path), read_eval_records(path))


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Runs in `paths`: each is a run directory, or a folder with run directories below it."""
    found: dict[Path, None] = {}
    for given in map(Path, paths):
        if not given.is_dir():
            raise SpartaError(f"{given} is not a directory")
        if (given / CONFIG_FILE).is_file():
            found[given.resolve()] = None
            continue
        below = sorted(p.parent.resolve() for p in given.rglob(CONFIG_FILE))
        if not below:
            raise SpartaError(f"{given} holds no run directory (no {CONFIG_FILE} in it or below it)")
        found.update(dict.fromkeys(below))
    return [read_run(path) for path in found]


def run_names(runs: Sequence[Run]) -> dict[Path, str]:
    """Short names: each run's path relative to the folder all runs share."""
    if len(runs) < 2:
        return {run.path: run.path.name for run in runs}
    common = Path(os.path.commonpath([str(run.path) for run in runs]))
    names = {run.path: run.path.relative_to(common) for run in runs}
    return {path: str(rel) if rel != Path(".") else path.name for path, rel in names.items()}


def _defaults() -> dict[str, str]:
    """TrainConfig's defaults, JSON-encoded like a group key's values."""
    return {f.name: json.dumps(_default(f), sort_keys=True) for f in dataclasses.fields(TrainConfig)}


def _default(item: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default value, made by its default_factory where it has one."""
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _label(key: dict[str, str], varying: set[str]) -> str:
    """'act (options)', then what else tells this group apart from the others."""
    values = {name: json.loads(raw) for name, raw in key.items()}
    options = ", ".join(f"{k}={v}" for k, v in values["act_options"].items())
    parts = [f"{values['act']} ({options})" if options and "act_options" in varying else str(values["act"])]
    parts += [str(values[name]) for name in ALWAYS_SHOWN if name in varying]
    defaults = _defaults()
    for name in sorted(varying - {"act", "act_options", *ALWAYS_SHOWN}, key=lambda n: (n.startswith("source "), n)):
        if name in key and (name.startswith("source ") or key[name] != defaults.get(name)):
            value = values[name]
            named = LABEL_FORMS.get(name)
            if named:
                parts.append(named(value))
            else:
                parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(parts)


# How a label reads a setting that has words of its own.
LABEL_FORMS = {
    "sparta_from": lambda source: f"function of {source}",
    "freeze_sparta": lambda frozen: "frozen" if frozen else "not frozen",
}


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by their settings minus the seed, keyed by a label naming what differs."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group_key, []).append(run)
    keys = {key: dict(key) for key in groups}
    names = {name for key in keys.values() for name in key}  # a source's settings: only where there is one
    varying = {name for name in names if len({k[name] for k in keys.values() if name in k}) > 1}
    labelled: dict[str, list[Run]] = {}
    for key, members in groups.items():
        label = _label(keys[key], varying)
        if label in labelled:  # two settings that print alike (e.g. eps rounded): keep both apart
            label = f"{label} ({len(labelled) + 1})"
        labelled[label] = members
    return {label: sorted(labelled[label], key=lambda r: r.config.seed) for label in sorted(labelled)}


def mean_band(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval (sparta.stats); a single value has a zero-width band."""
    estimate = mean_ci(values)
    if estimate.half_width is None:
        return estimate.mean, estimate.mean, estimate.mean
    return estimate.mean, estimate.mean - estimate.half_width, estimate.mean + estimate.half_width


def _band(points: dict[float, list[float]]) -> Band:
    xs = sorted(points)
    stats = [mean_band(points[x]) for x in xs]
    return Band(xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats], [len(points[x]) for x in xs])


def latest_records(run: Run) -> list[EvalRecord]:
    """The last record written for each `record_key` (attack, eps, n), clean first, then by
    attack and eps."""
    latest = {record_key(r): r for r in run.records}
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0] != "clean", k))]


def records_by_eps(run: Run, attack: str = "pgd") -> dict[float, EvalRecord]:
    """The record under `attack` at each eps (the eps of its `record_key`), with the clean
    record as eps 0.

    Where several records share an eps, the one on the most images wins.
    """
    best: dict[float, EvalRecord] = {}
    for record in latest_records(run):
        name, eps, n = record_key(record)
        if name in ("clean", attack) and (eps not in best or n >= best[eps]["n"]):
            best[eps] = record
    return {eps: best[eps] for eps in sorted(best)}


def accuracy_by_eps(run: Run, attack: str = "pgd") -> dict[float, float]:
    """Accuracy under `attack` at each eps, with clean accuracy as eps 0."""
    return {eps: float(record["accuracy"]) for eps, record in records_by_eps(run, attack).items()}


def robust_accuracy_curves(groups: dict[str, list[Run]], attack: str = "pgd") -> dict[str, Band]:
    """Per group, accuracy against eps (mean over the seeds that have a record at that eps),
    with the number of test images behind each point."""
    curves = {}
    for label, runs in groups.items():
        points: dict[float, list[float]] = {}
        sizes: dict[float, int] = {}
        for run in runs:
            for eps, record in records_by_eps(run, attack).items():
                points.setdefault(eps, []).append(float(record["accuracy"]))
                sizes[eps] = min(sizes.get(eps, record["n"]), int(record["n"]))
        if points:
            curves[label] = dataclasses.replace(_band(points), sizes=[sizes[x] for x in sorted(points)])
    return curves


def training_curves(groups: dict[str, list[Run]]) -> dict[str, dict[str, Band]]:
    """Per group and metric (train_loss, test_clean, test_pgd10), the value per epoch (1-based)."""
    curves: dict[str, dict[str, Band]] = {}
    for label, runs in groups.items():
        for metric in TRAINING_METRICS:
            points: dict[float, list[float]] = {}
            for run in runs:
                for line in run.metrics:
                    if metric in line:
                        points.setdefault(float(line["epoch"]) + 1, []).append(float(line[metric]))
            if points:
                curves.setdefault(label, {})[metric] = _band(points)
    return curves


def missing_eps(run: Run, eps_values: Sequence[float], n: int, attack: str = "pgd") -> list[float]:
    """The eps values with no record on at least n images (eps 0 means the clean record)."""
    have = {eps: record["n"] for eps, record in records_by_eps(run, attack).items()}  # the most images
    return [eps for eps in eps_values if have.get(eps_key(eps), 0) < n]


def pgd_label(runs: Sequence[Run], attack: str = "pgd") -> str:
    """'PGD-20' when every PGD record used 20 steps, else 'PGD'."""
    steps = {r.get("settings", {}).get("steps") for run in runs for r in run.records if r["attack"] == attack}
    return f"{attack.upper()}-{steps.pop()}" if len(steps) == 1 and None not in steps else attack.upper()
