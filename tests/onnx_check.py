#!/usr/bin/env python3
"""Runs every exported model under a folder in onnxruntime and compares it with
`wgpu-rnn eval` (tests/onnx.rs makes the folder: one sub-folder per case with model.onnx,
input.safetensors and eval.safetensors).

  python3 tests/onnx_check.py DIR

Each model must pass the `onnx` checker (full_check: shape inference too); y, h_n and, for
LSTM, c_n must match eval's within rtol 1e-5 (plus atol 1e-6 for values near zero). Needs
onnx, onnxruntime, numpy and safetensors from PyPI.
"""

import pathlib
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file
except ImportError as err:
    sys.exit(f"onnx_check.py needs onnx, onnxruntime, numpy and safetensors "
             f"(pip install onnx onnxruntime numpy safetensors): {err}")

RTOL, ATOL = 1e-5, 1e-6


def check(case):
    model = onnx.load(case / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
    given = load_file(case / "input.safetensors")
    want = load_file(case / "eval.safetensors")
    inputs = "ids" if "ids" in given else "x"  # token ids (int64) for a model with an embedding
    t, b = given[inputs].shape[:2]
    lengths = given.get("lengths", np.full(b, t, dtype=np.float32)).astype(np.int32)
    feeds = {inputs: given[inputs], "h0": given["h0"], "lengths": lengths}
    if "c0" in given:
        feeds["c0"] = given["c0"]
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feeds)))
    if sorted(names) != sorted(want):
        return [f"outputs {sorted(names)}, eval wrote {sorted(want)}"], 0.0
    problems, worst = [], 0.0
    for name in names:
        g, w = got[name], want[name]
        if g.shape != w.shape:
            problems.append(f"{name}: shape {g.shape}, eval's {w.shape}")
            continue
        excess = np.abs(g - w) - (ATOL + RTOL * np.abs(w))
        worst = max(worst, float(np.max(np.abs(g - w) / (ATOL + RTOL * np.abs(w)))))
        if np.any(excess > 0):
            k = np.unravel_index(np.argmax(excess), g.shape)
            problems.append(f"{name}{list(k)}: onnxruntime {g[k]!r}, eval {w[k]!r}")
    return problems, worst


def main():
    root = pathlib.Path(sys.argv[1])
    cases = sorted(p for p in root.iterdir() if p.is_dir())
    if not cases:
        sys.exit(f"no cases under {root}")
    failed = 0
    worst = 0.0
    for case in cases:
        problems, w = check(case)
        worst = max(worst, w)
        if problems:
            failed += 1
            print(f"FAIL {case.name}: " + "; ".join(problems))
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}: {len(cases) - failed} of "
          f"{len(cases)} cases match eval (worst |diff| / (atol + rtol |eval|) = {worst:.3f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
