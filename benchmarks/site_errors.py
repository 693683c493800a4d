"""How far each Sparta site path on a device is from the plain site in float64 on the CPU.

    python benchmarks/site_errors.py --device cuda [--paths plain,compiled,triton,fused]
        [--out site-errors.md] [--json site-errors.json]

For each path, precision (fp32; bf16 under autocast, as a site inside an autocast model
sees a convolution's bf16 output) and layout (NCHW, channels_last), on a conv-sized map
and on a 1 x 1 map (a site after a Linear layer): one Sparta site with random weights
(phi's last layer is zero at the start, which would hide its gradients), groups and
per-channel beta, the same weights and input as a float64 copy of the plain site on the
CPU. Each figure is the largest absolute error over the reference's largest magnitude:
the forward value, the input gradient, phi's four weight gradients (the worst) and
beta's. A cell passes under TOLERANCE for its precision; the exit status is 1 if any
cell fails or raises. The GPU check (scripts/gpu_window.py) runs it first thing on CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

from sparta import Sparta
from sparta.site import SITE_PATHS

# bf16: the plain site itself is up to 9e-2 off on a conv map (its threshold is rounded to
# bf16 before x - T; measured on the CPU); a wrong kernel is off by O(1).
TOLERANCE = {"fp32": 1e-4, "bf16": 0.15}
# (n, c, h, w): a conv site and a site after a Linear layer
SHAPES = {"conv": (8, 32, 12, 12), "1x1": (8, 64, 1, 1)}
GROUPS = 2


def reference_site(channels: int) -> Sparta:
    """The plain site in float64 with random weights; every cell copies these."""
    torch.manual_seed(0)
    site = Sparta(channels, groups=GROUPS, per_channel_beta=True, fused=False).double()
    torch.nn.init.normal_(site.phi.conv2.weight, std=0.3)
    torch.nn.init.normal_(site.phi.conv2.bias, std=0.3)
    with torch.no_grad():
        site.log_beta.add_(0.2 * torch.randn_like(site.log_beta))
    return site


def value_and_grads(site: Sparta, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.detach().requires_grad_()
    y = site(x)
    names = ["x", *(name for name, _ in site.named_parameters())]
    grads = torch.autograd.grad(y, [x, *site.parameters()], weights.to(y.dtype))
    return {"value": y.detach(), **dict(zip(names, grads, strict=True))}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got = got.detach().double().cpu()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def measure_cell(path: str, precision: str, channels_last: bool, shape_name: str, device: torch.device) -> dict:
    """One path, precision, layout and map: its errors against the float64 CPU reference."""
    n, c, h, w = SHAPES[shape_name]
    reference = reference_site(c)
    generator = torch.Generator().manual_seed(1)
    x64 = torch.randn(n, c, h, w, dtype=torch.float64, generator=generator)
    x64[0, :, 0, 0] = 0.5  # a tie for the channel max
    weights64 = torch.randn(x64.shape, dtype=torch.float64, generator=generator)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    # the reference sees the input and output gradient the path sees, rounded to its dtype
    x64, weights64 = x64.to(dtype).double(), weights64.to(dtype).double()
    want = value_and_grads(reference, x64, weights64)
    site = Sparta(c, groups=GROUPS, per_channel_beta=True, fused=path).to(device)
    site.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    x = x64.to(device, dtype)
    if channels_last and h > 1:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        got = value_and_grads(site, x, weights64.to(device, dtype))
    phi = [name for name in want if name.startswith("phi.")]
    return {
        "forward": relative_error(got["value"], want["value"]),
        "grad x": relative_error(got["x"], want["x"]),
        "grad phi": max(relative_error(got[name], want[name]) for name in phi),
        "grad beta": relative_error(got["log_beta"], want["log_beta"]),
    }


def measure(device: torch.device, paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        for precision in TOLERANCE:
            for channels_last in (False, True):
                for shape_name in SHAPES:
                    row = {
                        "path": path,
                        "precision": precision,
                        "layout": "channels_last" if channels_last else "NCHW",
                        "map": "x".join(map(str, SHAPES[shape_name])),
                    }
                    try:
                        errors = measure_cell(path, precision, channels_last, shape_name, device)
                        row.update(errors, ok=max(errors.values()) <= TOLERANCE[precision])
                    except Exception as error:  # a path that cannot run a case is a finding, not a crash
                        row.update(ok=False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
                        traceback.print_exc(file=sys.stderr)
                    rows.append(row)
                    print(row, flush=True)
    return rows


def markdown(rows: list[dict], device: torch.device, command: str) -> str:
    versions = f"torch {torch.__version__}"
    try:
        import triton

        versions += f", triton {triton.__version__}"
    except ImportError:
        versions += ", no triton"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        "## Site paths against the float64 CPU reference (benchmarks/site_errors.py)",
        "",
        f"`{command}` on {name}; {versions}. Largest absolute error over the reference's largest "
        f"magnitude; tolerance fp32 {TOLERANCE['fp32']:g}, bf16 {TOLERANCE['bf16']:g} "
        "(TF32 off; bf16 under autocast).",
        "",
        "| path | precision | layout | map | forward | grad x | grad phi | grad beta | within tolerance |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['path']} | {r['precision']} | {r['layout']} | {r['map']} | | | | | no: {r['error']} |")
            continue
        figures = " | ".join(f"{r[k]:.1e}" for k in ("forward", "grad x", "grad phi", "grad beta"))
        verdict = "yes" if r["ok"] else "NO"
        lines.append(f"| {r['path']} | {r['precision']} | {r['layout']} | {r['map']} | {figures} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--paths", default="plain,compiled,triton,fused", help=f"from {', '.join(SITE_PATHS)}")
    parser.add_argument("--out", type=Path, help="write the table here (markdown)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    paths = args.paths.split(",")
    unknown = [p for p in paths if p not in SITE_PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; choose from {', '.join(SITE_PATHS)}")
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions differ from fp32 by 1e-3
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = measure(device, paths)
    text = markdown(rows, device, " ".join(["python", "benchmarks/site_errors.py", *(argv or sys.argv[1:])]))
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
