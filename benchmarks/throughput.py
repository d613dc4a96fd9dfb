"""Train-step and sampling throughput of cnfkit's ConditionalFlow, eager and torch.compile'd.

    python benchmarks/throughput.py                     # every configuration, CPU (and CUDA if present)
    python benchmarks/throughput.py --configs sr32 --modes eager --device cpu --steps 3

Configurations (the papers' flow settings; conditioning features are given as a random tensor of
the conditioner's output size, so the numbers are for the flow alone, not the RRDB / VGG network):

* ``sr32`` / ``sr64``: super-resolution, y = 3x32x32 / 3x64x64, L=2, K=8, affine couplings with the
  Table 6 network (512 hidden), 128 context channels at the low resolution.
* ``drive``: DRIVE-like, y = 1xSxS binary map (S=256 crop on CPU, 1024 on CUDA), L=2, K=2,
  additive couplings with the Table 7 network (32 hidden, InstanceNorm), 32 context channels.

Each (configuration, mode, device) runs in a fresh subprocess so that its peak memory (CUDA: max
allocated; CPU: the process's peak resident set) is its own.  A train step is forward + backward +
Adam step on one batch; sampling draws one batch at temperature 0.8.  Results are written as JSON
and Markdown to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "sr32": {
        "channels": 3,
        "size": 32,
        "levels": 2,
        "steps": 8,
        "hidden": 512,
        "context": 128,
        "coupling": "affine",
        "net": "glow",
        "batch": {"cpu": 16, "cuda": 64},
    },
    "sr64": {
        "channels": 3,
        "size": 64,
        "levels": 2,
        "steps": 8,
        "hidden": 512,
        "context": 128,
        "coupling": "affine",
        "net": "glow",
        "batch": {"cpu": 4, "cuda": 64},
    },
    "drive": {
        "channels": 1,
        "size": {"cpu": 256, "cuda": 1024},
        "levels": 2,
        "steps": 2,
        "hidden": 32,
        "context": 32,
        "coupling": "additive",
        "net": "instance",
        "batch": {"cpu": 2, "cuda": 2},
    },
}


def _pick(v, device):
    return v[device] if isinstance(v, dict) else v


def run_one(name: str, mode: str, device: str, steps: int, warmup: int) -> dict:
    import torch

    from cnfkit import ConditionalFlow
    from cnfkit.train import adam
    from cnfkit.utils import num_parameters

    torch.manual_seed(0)
    c = CONFIGS[name]
    size, batch = _pick(c["size"], device), _pick(c["batch"], device)
    dev = torch.device(device)
    flow = ConditionalFlow(
        c["channels"], c["levels"], c["steps"], c["hidden"], c["context"], coupling=c["coupling"], coupling_net=c["net"]
    ).to(dev)
    y = torch.rand(batch, c["channels"], size, size, device=dev)
    x = torch.randn(batch, c["context"], size // 2, size // 2, device=dev)
    opt = adam(flow.parameters(), 1e-4)
    runner = torch.compile(flow) if mode == "compiled" else flow
    sampler = torch.compile(flow.sample) if mode == "compiled" else flow.sample

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        loss = -runner(y, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        train_step()
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_s = (time.perf_counter() - t0) / steps

    flow.eval()
    with torch.no_grad():
        for _ in range(warmup):
            sampler(x, temperature=0.8)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            sampler(x, temperature=0.8)
        sync()
        sample_s = (time.perf_counter() - t0) / steps
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "config": name,
        "mode": mode,
        "device": device,
        "image": f"{c['channels']}x{size}x{size}",
        "batch": batch,
        "params_m": round(num_parameters(flow) / 1e6, 3),
        "train_img_s": round(batch / train_s, 2),
        "sample_img_s": round(batch / sample_s, 2),
        "train_step_ms": round(1000 * train_s, 1),
        "warmup_s": round(warm_s, 1),
        "peak_mem_mb": round(peak_mb),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    p.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    p.add_argument("--steps", type=int, default=5, help="timed iterations")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations (include compilation)")
    p.add_argument("--out", default="results/benchmarks")
    p.add_argument("--one", nargs=3, metavar=("CONFIG", "MODE", "DEVICE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(*a.one, a.steps, a.warmup)))
        return

    import torch

    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device in devices:
        for name in a.configs:
            for mode in a.modes:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    mode,
                    device,
                    "--steps",
                    str(a.steps),
                    "--warmup",
                    str(a.warmup),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(f"{name}/{mode}/{device} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    if not rows:
        raise SystemExit("no benchmark succeeded")
    cpu_name = platform.processor() or platform.machine()
    gpu_name = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name,
        "gpu": gpu_name,
        "steps": a.steps,
        "warmup": a.warmup,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "_".join(devices)
    (out / f"throughput_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    cols = [
        "config",
        "mode",
        "device",
        "image",
        "batch",
        "params_m",
        "train_img_s",
        "sample_img_s",
        "train_step_ms",
        "warmup_s",
        "peak_mem_mb",
        "threads",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    md = "\n".join(lines)
    (out / f"throughput_{tag}.md").write_text(f"torch {meta['torch']}, {meta['cpu']}, GPU: {gpu_name}\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()
