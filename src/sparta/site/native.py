"""The fused site's elementwise passes in native code (`csrc/site.c`), built on first use.

Eager PyTorch runs each elementwise step of a Sparta site as its own pass over the
feature map; `site.c` does the site in two passes forward and two backward. It is
compiled once per machine with the system C compiler (`$CC`, else `cc`) into
`$SPARTA_CACHE/native` (default `~/.cache/sparta/native`), keyed by a hash of the source
and the flags, and loaded with ctypes: no build step at install time, and no torch
headers, so the compile takes about a second. Beside the library a checksum file
(`site-<hash>.so.sha256`: its size and sha256) is written once it is in place; a library
that does not match it (cut short by a full disk or a killed copy, or built before the
checksum existed) is rebuilt, never loaded: mapping a truncated library kills the
process with SIGBUS, while hashing it is a plain read. Where no compiler works, or with
`SPARTA_NATIVE=0`, `available()` is False and the fused site uses torch operations
(same values; tests/test_native_site.py checks both against the plain reference).
Paper: arXiv:2105.08269.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "csrc" / "site.c"
HEADERS = (SOURCE.with_name("site_body.h"), SOURCE.with_name("phi_body.h"))  # included: in the cache key
# -march=native: the machine's vector width (AVX2 runs the gate 4x faster than SSE2), so
# the cache key names the processor too. -ffast-math lets the compiler vectorise exp and
# the sums; it is given to the compile step only: linked with it, gcc would add
# crtfastmath.o, which flushes denormals to zero for the whole process.
# Tried in order: threads through OpenMP, then without it (Apple's clang has none), then
# without -march=native (compilers that do not know it).
FLAG_SETS = (
    (("-O3", "-march=native", "-ffast-math", "-fPIC", "-fopenmp"), ("-shared", "-fopenmp", "-lm")),
    (("-O3", "-march=native", "-ffast-math", "-fPIC"), ("-shared", "-lm")),
    (("-O3", "-ffast-math", "-fPIC"), ("-shared", "-lm")),
)
SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where built libraries are kept: $SPARTA_CACHE/native, else ~/.cache/sparta/native."""
    root = os.environ.get("SPARTA_CACHE") or Path.home() / ".cache" / "sparta"
    return Path(root) / "native"


def _processor() -> str:
    """What -march=native compiles for: the architecture and, on Linux, the CPU's feature flags."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    flags = next((line for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))), "")
    return platform.machine() + flags


def _build(compiler: str, target: Path) -> None:
    """Compile and link site.c into `target` with the first flag set that works, atomically
    (a half-written library is never loaded; processes building at once do not collide),
    then its checksum file, also atomically and only once the library is in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        obj, lib = Path(scratch) / "site.o", Path(scratch) / target.name
        failures = []
        for compile_flags, link_flags in FLAG_SETS:
            try:
                for command in (
                    [compiler, "-c", *compile_flags, str(SOURCE), "-o", str(obj)],
                    [compiler, str(obj), *link_flags, "-o", str(lib)],
                ):
                    subprocess.run(command, check=True, capture_output=True, timeout=120)
            except subprocess.CalledProcessError as error:
                failures.append(error)
                continue
            size, digest = _digest(lib)
            checksum = Path(scratch) / "checksum"
            checksum.write_text(json.dumps({"size": size, "sha256": digest}) + "\n")
            os.replace(lib, target)
            os.replace(checksum, _checksum_path(target))
            return
        raise failures[-1]


def _checksum_path(target: Path) -> Path:
    """The checksum file written beside a built library: site-<hash>.so.sha256."""
    return target.with_name(target.name + ".sha256")


def _digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read plainly: a truncated library cannot SIGBUS a read."""
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def _damage(target: Path) -> str | None:
    """What is wrong with a cached library against its checksum file, or None if it matches."""
    try:
        expected = json.loads(_checksum_path(target).read_text())
        size, digest = expected["size"], expected["sha256"]
        if not isinstance(size, int) or not isinstance(digest, str):
            raise TypeError
    except FileNotFoundError:
        return "no checksum file"
    except (OSError, ValueError, TypeError, KeyError):
        return "its checksum file is unreadable"
    actual_size, actual_digest = _digest(target)
    if actual_size != size:
        return f"size {actual_size}, expected {size}"
    if actual_digest != digest:
        return "sha256 does not match"
    return None


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded native library, built first if needed; None where it cannot be had."""
    if os.environ.get("SPARTA_NATIVE", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        log.info("no C compiler found: Sparta's CPU site uses torch operations")
        return None
    sources = b"".join(path.read_bytes() for path in (SOURCE, *HEADERS))
    key = hashlib.sha256(sources + repr((compiler, FLAG_SETS, _processor())).encode())
    target = cache_dir() / f"site-{key.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            log.info("building Sparta's native CPU site with %s (once per machine, a few seconds)", compiler)
            _build(compiler, target)
        elif (problem := _damage(target)) is not None:
            log.warning("Sparta's native CPU site %s is damaged (%s); rebuilding", target, problem)
            _build(compiler, target)
        if (problem := _damage(target)) is not None:  # another process replaced it meanwhile
            raise OSError(f"{target} does not match its checksum file after building ({problem})")
        return _declare(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        log.warning(
            "Sparta's native CPU site could not be built (%s %s); using torch operations",
            error,
            detail.decode(errors="replace")[:200],
        )
        return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Argument types of every function: pointers, then 64-bit sizes, then the thread count."""
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    signatures = {
        "pool": [p, i64, i64, i64, p, p, c_int],
        "gate": [p, p, p, i64, i64, i64, i64, i64, p, c_int],
        "gate_backward": [p, p, p, p, i64, i64, i64, i64, i64, p, p, p, c_int],
        "pool_backward": [p, p, p, p, i64, i64, i64, p, c_int],
        "phi": [p, p, p, p, p, i64, i64, i64, i64, i64, i64, p, p, c_int],
        "phi_backward": [p, p, p, p, p, i64, i64, i64, i64, i64, i64, p, p, p, p, p, c_int],
    }
    for suffix in SUFFIXES.values():
        for name, argtypes in signatures.items():
            function = getattr(lib, f"sparta_{name}_{suffix}")
            function.argtypes = argtypes
            function.restype = c_int if name.startswith("phi") else None
    return lib


def available(x: torch.Tensor) -> bool:
    """Whether the native passes can run on x: a CPU tensor of float32 or float64, library built."""
    return x.device.type == "cpu" and x.dtype in SUFFIXES and library() is not None


def _call(name: str, dtype: torch.dtype, *args: torch.Tensor | int | None) -> None:
    """Runs sparta_<name>_<dtype> on the tensors' memory (None: a NULL pointer), on torch's threads."""
    lib = library()
    assert lib is not None
    function = getattr(lib, f"sparta_{name}_{SUFFIXES[dtype]}")
    if function(*(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args), torch.get_num_threads()) == 0:
        raise MemoryError(f"Sparta's native {name} could not allocate its scratch planes")


def pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x 2 x H x W: channel mean and max, N x H x W: how many channels reach the max)."""
    n, c, h, w = x.shape
    pooled, ties = x.new_empty(n, 2, h, w), x.new_empty(n, h, w)
    _call("pool", x.dtype, x, n, c, h * w, pooled, ties)
    return pooled, ties


def gate(x: torch.Tensor, threshold: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """y = x sigmoid(beta (x - T)); T: N x G x H x W; beta: a scalar or one per channel."""
    n, c, h, w = x.shape
    beta = beta.to(x.dtype).contiguous()
    y = torch.empty_like(x)
    _call("gate", x.dtype, x, threshold, beta, int(beta.dim() > 0), n, c, threshold.shape[1], h * w, y)
    return y


def gate_backward(
    grad: torch.Tensor, x: torch.Tensor, threshold: torch.Tensor, beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad x without the pooling's share, grad T, N x C sums of q (x - T) for beta's gradient).

    The gate is recomputed from x and T, not stored: one full-size map less per site.
    """
    n, c, h, w = x.shape
    beta = beta.to(x.dtype).contiguous()
    grad_x, grad_threshold = torch.empty_like(x), torch.empty_like(threshold)
    slope = torch.empty(n, c, dtype=torch.float64)
    _call(
        "gate_backward",
        x.dtype,
        grad,
        x,
        threshold,
        beta,
        int(beta.dim() > 0),
        n,
        c,
        threshold.shape[1],
        h * w,
        grad_x,
        grad_threshold,
        slope,
    )
    return grad_x, grad_threshold, slope


def pool_backward(
    x: torch.Tensor, pooled: torch.Tensor, ties: torch.Tensor, grad_pooled: torch.Tensor, grad_x: torch.Tensor
) -> torch.Tensor:
    """grad_x plus the channel mean's and max's shares (a tie splits the max's evenly), in place."""
    n, c, h, w = x.shape
    grad_mean, grad_max = grad_pooled.unbind(dim=1)
    mean_share = (grad_mean / c).contiguous()
    max_share = (grad_max / ties).contiguous()
    _call("pool_backward", x.dtype, x, pooled, mean_share, max_share, n, c, h * w, grad_x)
    return grad_x


def phi(
    pooled: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T = conv2(relu(conv1(pooled))): N x G x H x W, relu(conv1(pooled)) kept for backward)."""
    n, _, h, w = pooled.shape
    hidden, groups, k = w1.shape[0], w2.shape[0], w1.shape[-1]
    weights = [t.detach().to(pooled.dtype).contiguous() for t in (w1, b1, w2, b2)]
    hidden_maps, threshold = pooled.new_empty(n, hidden, h, w), pooled.new_empty(n, groups, h, w)
    _call("phi", pooled.dtype, pooled, *weights, n, h, w, k, hidden, groups, hidden_maps, threshold)
    return threshold, hidden_maps


def phi_backward(
    pooled: torch.Tensor,
    hidden_maps: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    grad_threshold: torch.Tensor,
    input_grad: bool,
    weight_grads: bool,
) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
    """(d/d pooled if input_grad, [d/d w1, b1, w2, b2] in the weights' dtype if weight_grads)."""
    n, _, h, w = pooled.shape
    hidden, groups, k = w1.shape[0], w2.shape[0], w1.shape[-1]
    grad_pooled = torch.empty_like(pooled) if input_grad else None
    shapes = (w1.shape, (hidden,), w2.shape, (groups,))
    sums = [torch.zeros(shape, dtype=torch.float64) for shape in shapes] if weight_grads else [None] * 4
    _call(
        "phi_backward",
        pooled.dtype,
        pooled,
        hidden_maps,
        w1.detach().to(pooled.dtype).contiguous(),
        w2.detach().to(pooled.dtype).contiguous(),
        grad_threshold,
        n,
        h,
        w,
        k,
        hidden,
        groups,
        grad_pooled,
        *sums,
    )
    return grad_pooled, ([t.to(w1.dtype) for t in sums if t is not None] if weight_grads else None)
