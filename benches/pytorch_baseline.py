#!/usr/bin/env python3
"""PyTorch baseline for `wgpu-rnn bench`: the same shapes, the same columns.

Times one recurrent layer (--cell: nn.RNN with tanh, nn.LSTM or nn.GRU) + an nn.Linear head
on time-major input (T, B, I):
  forward:     y = head(rnn(x)) under torch.no_grad()
  train step:  forward, MSE loss, backward, SGD update (zero_grad, step)
on the CPU and, when present, on CUDA (synchronised around every repetition).
Prints a table, or one JSON object per line with --json, with the keys `wgpu-rnn bench
--json` uses. Medians over --reps repetitions after --warmup.

    python3 -m pip install torch numpy   # CPU or CUDA wheel from PyPI; not a test dependency
    python3 benches/pytorch_baseline.py
    python3 benches/pytorch_baseline.py --json --shapes "1,256,32,64,32;16,128,64,128,64"
    python3 benches/pytorch_baseline.py --threads 2 --devices cpu
    python3 benches/pytorch_baseline.py --devices cuda --cell lstm --tf32 off --json

--tf32 on|off sets torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
(off: FP32 against wgpu-rnn's FP32; on: TF32 tensor cores, which PyTorch allows cuDNN by
default). Without it PyTorch's own defaults stay. Each JSON line records the cell and the
TF32 setting.

Shapes are B,T,I,H,O like `wgpu-rnn bench`.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

DEFAULT_SHAPES = "1,256,32,64,32;16,128,64,128,64;64,64,64,256,64;256,64,128,512,128"


def parse_shapes(text):
    shapes = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        values = [int(v) for v in part.split(",")]
        if len(values) != 5 or min(values) < 1:
            sys.exit(f"bad shape {part!r}: expected five positive integers B,T,I,H,O")
        shapes.append(values)
    return shapes


GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def flops(b, t, i, h, o, gates=1):
    """Multiply-adds x2 of the forward, 2*T*B*(G*H*(I + H) + H*O) for G gate blocks (as
    `wgpu-rnn bench` counts); a training step is 3x (backward = 2 products each)."""
    fwd = 2 * t * b * (gates * h * (i + h) + h * o)
    return fwd, 3 * fwd


def set_tf32(torch, mode):
    """Applies --tf32 on|off; returns the settings in force (for the JSON)."""
    if mode in ("on", "off"):
        on = mode == "on"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        torch.set_float32_matmul_precision("high" if on else "highest")
    return {
        "tf32": mode,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
    }


def make_cell(torch, cell, i, h):
    if cell == "rnn":
        return torch.nn.RNN(i, h, nonlinearity="tanh")
    if cell == "lstm":
        return torch.nn.LSTM(i, h)
    return torch.nn.GRU(i, h)


def median_seconds(fn, sync, reps, warmup, budget_s):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def bench_shape(torch, device, shape, reps, warmup, budget_s, cell="rnn"):
    b, t, i, h, o = shape
    torch.manual_seed(0)
    rnn = make_cell(torch, cell, i, h).to(device)
    head = torch.nn.Linear(h, o).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    x = torch.rand(t, b, i, device=device) * 2 - 1
    target = torch.rand(t, b, o, device=device) * 2 - 1
    loss_fn = torch.nn.MSELoss()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            out, _ = rnn(x)
            return head(out)

    def train():
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        loss = loss_fn(head(out), target)
        loss.backward()
        opt.step()

    fwd_s, fwd_n = median_seconds(forward, sync, reps, warmup, budget_s)
    train_s, train_n = median_seconds(train, sync, reps, warmup, budget_s)
    fwd_flops, train_flops = flops(*shape, gates=GATES[cell])
    tokens = t * b
    if device == "cuda":
        adapter = torch.cuda.get_device_name(0)
        cudnn = torch.backends.cudnn.version()
        backend = f"torch {torch.__version__}, cuDNN {cudnn}"
    else:
        adapter = platform.processor() or platform.machine()
        backend = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return {
        "shape": shape,
        "cell": cell,
        "device": "cuda" if device == "cuda" else "cpu",
        "adapter": adapter,
        "path": backend,
        "forward_tokens_per_s": tokens / fwd_s,
        "train_tokens_per_s": tokens / train_s,
        "forward_ms": fwd_s * 1e3,
        "train_ms": train_s * 1e3,
        "train_gflops": train_flops / train_s / 1e9,
        "forward_gflops": fwd_flops / fwd_s / 1e9,
        "reps": min(fwd_n, train_n),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help="B,T,I,H,O;... (default: the issue's grid)")
    ap.add_argument("--devices", default="cpu,cuda", help="comma separated: cpu, cuda (cuda skipped if absent)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per measurement, at least 3 reps")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--cell", choices=sorted(GATES), default="rnn",
                    help="nn.RNN (tanh), nn.LSTM or nn.GRU (default rnn)")
    ap.add_argument("--tf32", choices=["on", "off", "default"], default="default",
                    help="TF32 for cuBLAS and cuDNN on CUDA (default: leave PyTorch's settings)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed: python3 -m pip install torch")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tf32 = set_tf32(torch, args.tf32)
    devices = []
    for d in args.devices.split(","):
        d = d.strip()
        if d == "cuda" and not torch.cuda.is_available():
            print("# CUDA not available: skipping cuda", file=sys.stderr)
            continue
        if d in ("cpu", "cuda"):
            devices.append(d)
        elif d:
            sys.exit(f"unknown device {d!r}: use cpu or cuda")

    if not args.json:
        print(f"# {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
        print(f"# cell: {args.cell}; TF32 ({args.tf32}): cuBLAS {tf32['tf32_matmul']}, "
              f"cuDNN {tf32['tf32_cudnn']}")
        print(f"{'shape B,T,I,H,O':<22} {'device':<6} {'fwd tok/s':>12} {'train tok/s':>12} "
              f"{'train ms':>10} {'GFLOP/s':>8}  backend")
    for shape in parse_shapes(args.shapes):
        for device in devices:
            r = bench_shape(torch, device, shape, args.reps, args.warmup, args.budget, args.cell)
            r.update(tf32)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                s = ",".join(map(str, shape))
                print(f"{s:<22} {r['device']:<6} {r['forward_tokens_per_s']:>12.0f} "
                      f"{r['train_tokens_per_s']:>12.0f} {r['train_ms']:>10.2f} "
                      f"{r['train_gflops']:>8.2f}  {r['path']}", flush=True)


if __name__ == "__main__":
    main()
