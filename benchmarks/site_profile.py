"""Where one CPU Sparta site's time goes: each native pass, timed inside a real forward + backward.

    python benchmarks/site_profile.py --threads 1 [--shape 64,16,28,28] [--reps 30]

Wraps the calls of `sparta.site.native` (pool, phi, gate and their backward passes) with
timers, runs forward + backward of one default Sparta site `--reps` times, and prints the
mean milliseconds per call beside the whole site's and a ReLU's. The rest of the site's
time is Python, autograd and small torch operations. The native library must be
buildable (a C compiler); otherwise the script says so and stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from sparta import Sparta
from sparta.site import native as native_site

PASSES = ("pool", "phi", "gate", "gate_backward", "phi_backward", "pool_backward")


def timed(name: str, function: Callable, spent: dict[str, float]) -> Callable:
    """`function`, adding its wall time to spent[name] on every call."""

    def wrapper(*args, **kwargs):
        tick = time.perf_counter()
        result = function(*args, **kwargs)
        spent[name] += time.perf_counter() - tick
        return result

    return wrapper


def mean_ms(step: Callable[[], None], reps: int) -> float:
    """Mean milliseconds of `step` over `reps` runs, after three untimed ones."""
    for _ in range(3):
        step()
    tick = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - tick) / reps * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="64,16,28,28", help="N,C,H,W of the feature map")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--reps", type=int, default=30, help="timed forward + backward runs (default 30)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if native_site.library() is None:
        print("site_profile: the native library is not built here (no working C compiler, or SPARTA_NATIVE=0)")
        return 1
    shape = tuple(int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    site = Sparta(shape[1])
    torch.nn.init.normal_(site.phi.conv2.weight, std=0.1)  # a trained-like phi, not the zero start
    x, grad = torch.randn(shape, requires_grad=True), torch.randn(shape)
    relu_ms = mean_ms(lambda: torch.relu(x).backward(grad), args.reps)
    spent: dict[str, float] = defaultdict(float)
    originals = {name: getattr(native_site, name) for name in PASSES}
    for name, function in originals.items():
        setattr(native_site, name, timed(name, function, spent))
    try:
        site_ms = mean_ms(lambda: site(x).backward(grad), args.reps)
    finally:
        for name, function in originals.items():
            setattr(native_site, name, function)
    calls = args.reps + 3
    print(f"map {args.shape}, {args.threads} thread(s), mean of {args.reps} runs")
    print(f"ReLU forward + backward {relu_ms:.2f} ms; Sparta site {site_ms:.2f} ms ({site_ms / relu_ms:.1f}x)")
    for name in PASSES:
        print(f"  {name:14s} {spent[name] / calls * 1e3:6.2f} ms")
    rest = site_ms - sum(spent.values()) / calls * 1e3
    print(f"  {'the rest':14s} {rest:6.2f} ms (Python, autograd, small torch operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
