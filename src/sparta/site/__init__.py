"""A Sparta site with the pooled phi, and the choice between its implementations.

Every path computes `reference.sparta_function` (tests check values and gradients
against it) with fewer passes over memory:

- `reference`: the plain site in torch operations; the only one differentiable twice;
- `fused`: one autograd function for the CPU, in torch operations or in the native
  library of `native` (C, built on first use);
- `compiled`: the plain site under torch.compile;
- `triton`: Triton kernels registered as torch operators (`triton_op`); on CPU tensors
  they run under Triton's interpreter when `TRITON_INTERPRET=1`.

`site_path` picks one per call; `run_site` runs it. Paper: arXiv:2105.08269.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable

import torch

from sparta.site.compiled import compiled_forward, compiler_available
from sparta.site.fused import fused_forward

log = logging.getLogger(__name__)


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_runs_on(x: torch.Tensor) -> bool:
    """The Triton kernels can run on x: triton is installed and x is on CUDA, or on the CPU
    under Triton's interpreter (`TRITON_INTERPRET=1`). Asked on every forward of a site
    that names the path, so the installation is looked up once."""
    if not _triton_installed():
        return False
    return x.device.type == "cuda" or (x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def triton_forward(x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
    """The Triton site (`triton_op`), imported on first use: triton is an optional dependency."""
    from sparta.site.triton_op import triton_forward as forward

    return forward(x, *parameters)


# The same function as the plain site, in fewer passes; with "plain" the names `fused` may give.
FAST_SITES: dict[str, Callable[..., torch.Tensor]] = {
    "fused": fused_forward,
    "compiled": compiled_forward,
    "triton": triton_forward,
}
SITE_PATHS = ("plain", *FAST_SITES)
# The path fused=None takes on CUDA. Plain until the Triton site is timed on a GPU: on an
# H100 a ResNet-18 bf16 channels_last step took 41.9 ms with the compiled site against
# 37.3 ms plain (results/gpu/speed-step.md).
CUDA_DEFAULT = "plain"


@functools.cache
def _say_triton_unavailable(device: str) -> None:
    log.info(
        "Sparta: the Triton site cannot run on %s here (needs triton, and CUDA or TRITON_INTERPRET=1); "
        "using the plain site",
        device,
    )


def site_path(fused: bool | str | None, x: torch.Tensor) -> str:
    """Which implementation a pooled Sparta site runs: "plain", "fused", "compiled" or "triton".

    - Inside a compiled model: "triton" where named (its operators trace without a graph
      break), else plain (the enclosing graph fuses it itself).
    - fused names a path: that one, on any device; "triton" where it cannot run falls
      back to plain with one INFO line.
    - fused=False: plain, the reference.
    - CPU, fused None or True: the fused autograd function (`fused`): the same function
      in fewer passes, natively where `native` builds its library (results/speed/cpu.md).
      Under CPU autocast: plain.
    - CUDA, fused=True: the Triton site where triton is installed, else the fused
      function; fused=None: `CUDA_DEFAULT`.
    """
    if fused is False:
        return "plain"
    if torch.compiler.is_compiling():
        return "triton" if fused == "triton" else "plain"
    if fused == "triton" or (fused is True and x.device.type == "cuda"):
        if triton_runs_on(x):
            return "triton"
        if fused == "triton":
            _say_triton_unavailable(x.device.type)
            return "plain"
    if isinstance(fused, str):
        return fused
    if x.device.type == "cpu":
        return "fused" if not torch.is_autocast_enabled("cpu") else "plain"
    return CUDA_DEFAULT if fused is None else "fused"


def path_label(path: str, x: torch.Tensor) -> str:
    """The path as a run records it: "fused" split into its native and torch-operation forms."""
    if path != "fused":
        return path
    from sparta.site import native

    return "fused-native" if native.available(x) else "fused-torch"


def run_site(path: str, x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
    """The site's value on a 4-D x by a path other than plain, parameters (w1, b1, w2, b2, log_beta)."""
    return FAST_SITES[path](x, *parameters)


__all__ = ["FAST_SITES", "SITE_PATHS", "compiler_available", "path_label", "run_site", "site_path", "triton_runs_on"]
