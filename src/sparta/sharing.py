"""Sparta sharing and the Sparta function: tie, export, import and freeze phi and beta.

share="layer": each activation site has its own phi; "stage": one phi per network stage;
"network": one phi everywhere. Shared means the same weights; a phi with BatchNorm
(depthwise) keeps normalisation statistics per site. A Sparta function is the set of
distinct (phi, beta) pairs, keyed by stage, in a safetensors file, so it can be reused in
another CNN; per-site statistics travel beside it as `{stage}.sites.{i}.{buffer}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from sparta.checkpoint import non_finite_tensors, portable
from sparta.errors import SpartaError
from sparta.runfiles import SPARTA_FILE
from sparta.sparta_activation import CHANNEL_AGNOSTIC_PHIS, Sparta

SHARE_MODES = ("layer", "stage", "network")


class _SharedPhi(Protocol):
    """What sharing needs of a phi: the phi another site of its share group uses."""

    def for_another_site(self) -> nn.Module: ...


def model_stages(model: nn.Module) -> dict[str, nn.Module]:
    """A model's stages: its own `stages()` when it has one, else its top-level children."""
    stages = getattr(model, "stages", None)
    return stages() if callable(stages) else dict(model.named_children())


def sparta_sites(model: nn.Module) -> dict[str, list[Sparta]]:
    """Sparta modules per stage, in forward-definition order (shared ones once)."""
    sites: dict[str, list[Sparta]] = {}
    for stage, module in model_stages(model).items():
        found = [m for m in module.modules() if isinstance(m, Sparta)]
        if found:
            sites[stage] = found
    return sites


def _groups(model: nn.Module, share: str) -> dict[str, list[Sparta]]:
    """Sites that share one function, keyed by the name the function is exported under."""
    sites = sparta_sites(model)
    if share == "network":
        everything = [m for stage in sites.values() for m in stage]
        return {"network": everything} if everything else {}
    if share == "stage":
        return sites
    return {f"{stage}.{i}": [m] for stage, mods in sites.items() for i, m in enumerate(mods)}


def share_sparta(model: nn.Module, share: str) -> nn.Module:
    """Make the Sparta sites of each group use the first site's phi and beta."""
    if share not in SHARE_MODES:
        raise SpartaError(f"unknown Sparta share mode '{share}'; choose from: {', '.join(SHARE_MODES)}")
    groups = _groups(model, share)
    if not groups:  # a model left as it was would look shared
        raise SpartaError("the model has no Sparta activation to share; convert_activations(model, 'sparta') first")
    for name, group in groups.items():
        first = group[0]
        for other in group[1:]:
            if other.phi_kind not in CHANNEL_AGNOSTIC_PHIS and other.channels != first.channels:
                raise SpartaError(
                    f"share='{share}' needs a channel-agnostic phi ({', '.join(CHANNEL_AGNOSTIC_PHIS)}): "
                    f"group '{name}' has {first.channels} and {other.channels} channels"
                )
            if first.log_beta.shape != other.log_beta.shape or first.groups != other.groups:
                raise SpartaError(
                    f"cannot share per-channel beta or grouped thresholds across "
                    f"{first.channels} and {other.channels} channels in '{name}'"
                )
            # Sparta.phi is any registered nn.Module; every registered phi kind has for_another_site.
            other.phi = cast(_SharedPhi, first.phi).for_another_site()  # shared weights; statistics per site
            other.log_beta = first.log_beta
    # nn.Module.__setattr__ is typed for tensors and modules only; the mode is a plain str.
    setattr(model, "sparta_share", share)  # noqa: B010
    return model


def _shared_groups(model: nn.Module) -> dict[str, list[Sparta]]:
    groups = _groups(model, getattr(model, "sparta_share", "layer"))
    if not groups:
        raise SpartaError("the model has no Sparta activation")
    return groups


def _load_site_statistics(group: list[Sparta], name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Each further site's own phi statistics from the file; a site the file has none for
    (a group with more sites than the source's) starts from the first site's."""
    first = dict(group[0].phi.named_buffers())
    for i, other in enumerate(group[1:], start=1):
        if other.phi is group[0].phi:
            continue
        with torch.no_grad():
            for key, buffer in other.phi.named_buffers():
                buffer.copy_(tensors.get(f"{name}.sites.{i}.{key}", first[key]))


def export_sparta(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's Sparta function(s) to a safetensors file keyed by stage."""
    tensors: dict[str, torch.Tensor] = {}
    groups = _shared_groups(model)
    for name, group in groups.items():
        site = group[0]
        tensors[f"{name}.log_beta"] = portable(site.log_beta)
        for key, value in site.phi.state_dict().items():
            tensors[f"{name}.phi.{key}"] = portable(value)
        for i, other in enumerate(group[1:], start=1):
            if other.phi is not site.phi:  # its own statistics
                for key, value in other.phi.named_buffers():
                    tensors[f"{name}.sites.{i}.{key}"] = portable(value)
    meta = {
        "share": getattr(model, "sparta_share", "layer"),
        "phi": {name: group[0].phi_kind for name, group in groups.items()},
    }
    save_file(tensors, os.fspath(path), metadata={"sparta": json.dumps(meta)})


def sparta_file(path: str | os.PathLike) -> Path:
    """The Sparta function file a path names: the file itself, or a run directory's
    sparta.safetensors; a missing one is a one-line error naming what is missing."""
    path = Path(path)
    if path.is_dir():
        if not (path / SPARTA_FILE).is_file():
            raise SpartaError(
                f"{path} holds no Sparta function ({SPARTA_FILE}): not a run of a Sparta model, "
                "or one that has not finished an epoch"
            )
        return path / SPARTA_FILE
    if not path.is_file():
        raise SpartaError(f"Sparta function file {path} does not exist")
    return path


def _read_function(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A function file's tensors, and the phi kind of each stage it records (empty for files
    that predate the record), in one read; an unreadable file is a one-line error."""
    try:
        with safe_open(os.fspath(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise SpartaError(f"cannot read Sparta function file {path}: {err}") from None
    try:
        recorded = json.loads(meta.get("sparta", "{}")).get("phi", {})
    except (ValueError, AttributeError):
        recorded = {}
    return tensors, recorded if isinstance(recorded, dict) else {}


def import_sparta(model: nn.Module, path: str | os.PathLike, freeze: bool = True) -> nn.Module:
    """Load a Sparta function into `model` (same share mode and stages), optionally frozen.
    `path` is a Sparta function file or a run directory (its sparta.safetensors)."""
    path = sparta_file(path)
    tensors, recorded_phis = _read_function(path)
    broken = non_finite_tensors(tensors)
    if broken:
        raise SpartaError(f"Sparta function file {path} holds NaN or infinite values (first: {broken[0]})")
    names = sorted(key.removesuffix(".log_beta") for key in tensors if key.endswith(".log_beta"))
    groups = _shared_groups(model)
    targets = {name: group[0] for name, group in groups.items()}
    if sorted(targets) != names:
        raise SpartaError(
            f"Sparta function {path} has stages {names}, the model has {sorted(targets)}; "
            "use share='network' to move one function into any CNN"
        )
    for name, site in targets.items():
        kind = recorded_phis.get(name, site.phi_kind)  # files written before the kind was recorded: by fit
        if kind != site.phi_kind:
            raise SpartaError(
                f"Sparta function {path} has phi '{kind}' at stage '{name}', the model has phi '{site.phi_kind}'"
            )
        phi_state = {k.removeprefix(f"{name}.phi."): v for k, v in tensors.items() if k.startswith(f"{name}.phi.")}
        try:
            site.phi.load_state_dict(phi_state)
            with torch.no_grad():
                site.log_beta.copy_(tensors[f"{name}.log_beta"])
        except (RuntimeError, KeyError) as err:
            first_line = str(err).strip().splitlines()[0]
            raise SpartaError(f"Sparta function {path} does not fit stage '{name}': {first_line}") from None
        _load_site_statistics(groups[name], name, tensors)
        if freeze:  # every site of the group: a shared phi must stay in eval mode for all of them
            for member in groups[name]:
                member.freeze()
    return model
