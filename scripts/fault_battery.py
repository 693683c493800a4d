"""Bad input and damaged files, tried against the installed CLI as a user would.

Each case is a subprocess of `sparta`; a case passes when it exits 2 with one
`sparta: error:` line (or runs, where it should) and no traceback. Tiny runs on digits,
under a temporary folder. Usage: python scripts/fault_battery.py [WORK_DIR]
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
W = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sparta-faults-"))
shutil.rmtree(W, ignore_errors=True)
W.mkdir(parents=True)
SP = [str(REPO / ".venv" / "bin" / "sparta")]
PY = str(REPO / ".venv" / "bin" / "python")
TINY = [
    "--dataset",
    "digits",
    "--subset",
    "128",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--attack-steps",
    "2",
    "--eval-n",
    "32",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
results = []


def run(args):
    done = subprocess.run(SP + args, capture_output=True, text=True, env=ENV)
    return done.returncode, done.stderr.strip()


def case(name, args, expect="error", check=None):
    """Run one case; it passes when it behaves as promised and `check()` (if any) holds."""
    code, err = run(args)
    last = err.splitlines()[-1] if err else ""
    crashed = "Traceback" in err or "internal error" in err
    if expect == "error":
        ok = code == 2 and last.startswith("sparta: error:") and not crashed
    else:
        ok = code == 0 and not crashed
    results.append((name, ok and (check() if check else True), code, crashed, last[:110]))


def copy(name):
    target = W / name
    shutil.copytree(BASE, target)
    return target


def edit_config(run_dir, change):
    config = json.loads((run_dir / "config.json").read_text())
    change(config)
    (run_dir / "config.json").write_text(json.dumps(config))


BASE = W / "base"
assert run(["train", *TINY, "--act", "relu", "--out", str(BASE)])[0] == 0

# training settings
for flag, value in [
    ("--weight-decay", "nan"),
    ("--lr", "inf"),
    ("--eps", "nan"),
    ("--eps", "inf"),
    ("--eps", "-0.1"),
    ("--eps", "1e9"),
    ("--eps", "1/0"),
    ("--eps", "1e309"),
    ("--eval-n", "-5"),
    ("--eval-n", "0"),
    ("--subset", "100000"),
    ("--batch-size", "0"),
    ("--epochs", "ten"),
    ("--momentum", "1"),
]:
    case(
        f"train {flag} {value}",
        ["train", *TINY, f"{flag}={value}", "--out", str(W / "x")],
        check=lambda: not (W / "x" / "model.safetensors").exists(),
    )
case(
    "train --batch-size 1000 on 128 images (one step, at lr 0)",
    ["train", *TINY, "--batch-size", "1000", "--out", str(W / "x2")],
)
case(
    "train --lr 1e30 --schedule constant (diverges)",
    ["train", *TINY, "--lr", "1e30", "--schedule", "constant", "--out", str(W / "x3")],
    check=lambda: not (W / "x3" / "model.safetensors").exists(),
)
for option in ("beta0=nan", "kernel_size=abc", "hidden=0"):
    case(f"--act-option {option}", ["train", *TINY, "--act", "sparta", "--act-option", option, "--out", str(W / "x4")])
case("--out is a file", ["train", *TINY, "--out", "/etc/hostname"])
case("--out below a file", ["train", *TINY, "--out", "/etc/hostname/run"])

# resume
case("--resume a moved run", ["train", "--resume", str(copy("moved"))], expect="ok")
cut = copy("cutmetrics")
(cut / "metrics.jsonl").write_text((cut / "metrics.jsonl").read_text() + '{"epoch": 1, "tr')
case("--resume with a cut last metrics line", ["train", "--resume", str(cut)], expect="ok")
bad = copy("badmetrics")
(bad / "metrics.jsonl").write_text("[1, 2]\n" + (bad / "metrics.jsonl").read_text())
case("metrics.jsonl line not an object", ["train", "--resume", str(bad)])
for label, key, value in [("eps as text", "eps", "0.1"), ("epochs ten", "epochs", "ten"), ("eps list", "eps", [0.1])]:
    target = copy("cfg-" + label.replace(" ", "-"))
    edit_config(target, lambda config, key=key, value=value: config.__setitem__(key, value))
    case(f"config.json {label}", ["train", "--resume", str(target)])
target = copy("nodataset")
edit_config(target, lambda config: config.pop("dataset"))
case("config.json without dataset", ["eval", str(target), "--attacks", "clean", "--n", "8"])

# eval
ev = copy("ev")
case("eval --attacks ''", ["eval", str(ev), "--attacks", ""])
case("eval --attacks cw,foo", ["eval", str(ev), "--attacks", "cw,foo"])
case("eval --batch-size -1", ["eval", str(ev), "--attacks", "clean", "--batch-size=-1"])
case("eval --batch-size 0", ["eval", str(ev), "--attacks", "clean", "--batch-size", "0"])
case("eval --n 0", ["eval", str(ev), "--attacks", "clean", "--n", "0"])
case(
    "eval clean,clean,fgsm,FGSM runs each once",
    ["eval", str(ev), "--attacks", "clean,clean,fgsm,FGSM", "--n", "16"],
    expect="ok",
    check=lambda: len(json.loads((ev / "eval.json").read_text())["results"]) == 2,
)
for number, (label, text) in enumerate(
    [("cut short", '{"results": [{"attack"'), ("empty", ""), ("[]", "[]"), ("wrong shape", '{"results": 3}')]
):
    target = copy(f"evaljson-{number}")
    (target / "eval.json").write_text(text)
    case(
        f"eval.json {label}",
        ["eval", str(target), "--attacks", "clean", "--n", "8"],
        check=lambda target=target, text=text: (target / "eval.json").read_text() == text,
    )
nan = copy("nanmodel")
subprocess.run(
    [
        PY,
        "-c",
        "import sys; from safetensors import safe_open; "
        "from safetensors.torch import load_file, save_file; p = sys.argv[1]; "
        "meta = safe_open(p, 'pt').metadata(); t = load_file(p); "
        "k = next(k for k in t if t[k].is_floating_point()); t[k].view(-1)[0] = float('nan'); "
        "save_file(t, p, metadata=meta)",
        str(nan / "model.safetensors"),
    ],
    check=True,
)
case("eval a model with NaN weights", ["eval", str(nan), "--attacks", "clean", "--n", "8"])

# the run directory checked as a whole, and counts capped at what exists
lost = copy("lostmodel")
(lost / "model.safetensors").unlink()
case(
    "--resume with model.safetensors deleted",
    ["train", "--resume", str(lost)],
    expect="ok",
    check=lambda: (lost / "model.safetensors").exists(),
)
other = W / "other"
assert run(["train", *TINY, "--act", "swish", "--out", str(other)])[0] == 0
swapped = copy("swapped")
shutil.copy(other / "model.safetensors", swapped / "model.safetensors")
case("eval a model.safetensors of another run", ["eval", str(swapped), "--attacks", "clean", "--n", "8"])
case("report --images 100000 (capped)", ["report", str(BASE), "--images", "100000", "--out", str(W / "rep")], "ok")
case(
    "transfer --kind cross-cnn without --target-model",
    ["transfer", "--kind", "cross-cnn", "--source-dataset", "digits", *TINY[2:], "--out", str(W / "tr")],
    check=lambda: not (W / "tr").exists() or not any((W / "tr").rglob("model.safetensors")),
)

# writers of one run at once, and eval.json that cannot be written
both = copy("both")
slow = subprocess.Popen(
    [*SP, "eval", str(both), "--attacks", "pgd", "--n", "200", "--batch-size", "4"],
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
    env=ENV,
)
slow.stderr.readline()  # "pgd: running ...": the slow evaluation has started
case(
    "two evals of one run at once (pgd in the background, fgsm now)",
    ["eval", str(both), "--attacks", "fgsm", "--n", "16"],
    expect="ok",
    check=lambda: (
        slow.wait() == 0
        and {(r["attack"], r["n"]) for r in json.loads((both / "eval.json").read_text())["results"]}
        >= {("pgd", 200), ("fgsm", 16)}
    ),
)
for label, damage in [
    ("a directory", lambda p: p.mkdir()),
    ("read-only", lambda p: (p.write_text("{}"), p.chmod(0o444))),
]:
    target = copy("evaljson-" + label.replace(" ", "-"))
    (target / "eval.json").unlink(missing_ok=True)
    damage(target / "eval.json")
    case(f"eval.json is {label}", ["eval", str(target), "--attacks", "clean", "--n", "8"])

# a native-site library cut short in the cache (a full disk, a killed copy)
cache = W / "cache"
subprocess.run([PY, "-c", "from sparta.site import native; native.library()"], env={**ENV, "SPARTA_CACHE": str(cache)})
for library in (cache / "native").glob("*.so"):
    library.write_bytes(library.read_bytes()[:20000])
ENV_BEFORE, ENV = ENV, {**ENV, "SPARTA_CACHE": str(cache)}
case(
    "a truncated native library in the cache",
    ["train", *TINY, "--act", "sparta", "--out", str(W / "native")],
    expect="ok",
    check=lambda: (
        (W / "native" / "model.safetensors").exists()
        and all(library.stat().st_size > 20000 for library in (cache / "native").glob("*.so"))
    ),  # rebuilt
)
ENV = ENV_BEFORE

# data files
idx = W / "idx"
idx.mkdir()
for name, magic, dims in [
    ("train-images-idx3-ubyte", 2051, [0, 28, 28]),
    ("train-labels-idx1-ubyte", 2049, [0]),
    ("t10k-images-idx3-ubyte", 2051, [0, 28, 28]),
    ("t10k-labels-idx1-ubyte", 2049, [0]),
]:
    (idx / name).write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims))
case(
    "IDX files with 0 images",
    ["train", "--dataset", "fashion-mnist", "--data-root", str(idx), "--epochs", "1", "--out", str(W / "x7")],
)

# grids and the bare command
case("ablate --vary kernel_size=abc", ["ablate", "--vary", "kernel_size=abc", *TINY[:2], "--out", str(W / "abl")])
case("ablate --vary kernel_size=", ["ablate", "--vary", "kernel_size=", "--out", str(W / "abl2")])
for shard in ("3/2", "0/0", "-1/2"):
    case(f"compare --shard {shard}", ["compare", "--acts", "relu", "--shard", shard, "--out", str(W / "c")])
case("bare sparta", [])
case("unknown activation", ["train", "--act", "rellu", "--out", str(W / "x8")])

# the Python API (scripts/api_faults.py): tensors and settings of the user's own
sys.path.insert(0, str(REPO / "scripts"))
import api_faults  # noqa: E402

for api_case in api_faults.cases():
    kind, detail = api_faults.outcome(api_case)
    results.append((f"API: {api_case.name}", kind == "ok", None, kind == "traceback", detail[:110]))

for name, ok, code, _crashed, last in results:
    print(("ok  " if ok else "BAD ") + f"{name:60s} exit {code} {last}")
print(
    f"{len(results)} cases, {sum(r[1] for r in results)} as promised, "
    f"{sum(r[3] for r in results)} tracebacks or internal errors"
)
sys.exit(0 if all(r[1] for r in results) else 1)
