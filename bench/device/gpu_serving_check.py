"""Device check: an ONNX encoder served on a GPU through PyTorch CUDA, metered by NVML, per request.

    python3 -m bench.device.gpu_serving_check [--seconds 12] [--out DIR]

Builds a wide ONNX MLP (64-4096-4096-10, random weights; onnx2torch could not run a transformers-exported encoder), loads it
with ``models.torch_runtime.TorchCudaRuntime`` (onnx2torch; fp32 and fp16), and charges every batch
through ``energy.attribution.EnergyAttributor`` over an ``NvmlMeter``: per-request energy at batch 1
and at batch 512, and conservation of the per-request sum against NVML's own energy counter over the
whole run (at least 10 s). Figures are measured (NVML), not modelled.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> int:
    import numpy as np
    import pynvml

    from energy.attribution import EnergyAttributor
    from energy.meters.nvml import NvmlMeter
    from models.torch_runtime import TorchCudaRuntime

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    onnx_path = Path("/tmp/wg_mlp.onnx")
    t0 = time.time()
    # onnx2torch could not run the transformers-exported encoder (Flatten on a 1-D tensor at batch 1),
    # so the GPU check serves a wide ONNX MLP built the way the bundled digits model is.
    from models.digits import mlp_to_onnx

    w_rng = np.random.default_rng(1)
    sizes = [64, 4096, 4096, 10]
    mlp_to_onnx([w_rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])],
                [np.zeros(b, np.float32) for b in sizes[1:]], onnx_path)
    export_s = time.time() - t0

    pynvml.nvmlInit()
    dev = pynvml.nvmlDeviceGetHandleByIndex(0)
    meter = NvmlMeter(0, pynvml, sample_interval_s=0.005)
    runtimes = {"fp32": TorchCudaRuntime(onnx_path, fp16=False), "fp16": TorchCudaRuntime(onnx_path, fp16=True)}
    rng = np.random.default_rng(0)

    def batch(n: int):
        return {"pixels": rng.integers(0, 17, (n, 64)).astype(np.float32)}

    cells = [("fp32", 1), ("fp16", 1), ("fp16", 512)]
    for variant, n in cells:  # warm-up: CUDA context, kernels, cuBLAS handles
        for _ in range(3):
            runtimes[variant].run(batch(n))
    # fp16 output matches fp32 on the same weights (a sanity check that the conversion runs the model)
    x = batch(8)
    p32, p16 = runtimes["fp32"].run(x)["probabilities"], runtimes["fp16"].run(x)["probabilities"]
    cos = (p32 * p16).sum(1) / (np.linalg.norm(p32, axis=1) * np.linalg.norm(p16, axis=1))

    attributor = EnergyAttributor(meter)
    attributor.write_off()
    counter0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(dev) / 1000.0
    results = {}
    per_cell_s = args.seconds / len(cells)
    for variant, n in cells:
        energies, runs, start = [], 0, time.perf_counter()
        inputs = batch(n)
        while time.perf_counter() - start < per_cell_s:
            runtimes[variant].run(inputs)
            energies.extend(e.energy_j for e in attributor.charge_batch([1.0] * n))
            runs += 1
        wall = time.perf_counter() - start
        results[f"{variant}_batch{n}"] = {
            "batches": runs, "inferences": len(energies), "inferences_per_s": len(energies) / wall,
            "j_per_inference_mean": float(np.mean(energies)), "j_per_inference_p50": float(np.median(energies)),
            "min_request_j": float(np.min(energies)), "zero_j_requests": int(sum(1 for e in energies if e <= 0)),
        }
    time.sleep(0.3)  # let the counter pass the last batch
    counter1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(dev) / 1000.0
    totals = attributor.totals()
    attributed = totals.attributed_j
    report = {
        "device": pynvml.nvmlDeviceGetName(dev) if isinstance(pynvml.nvmlDeviceGetName(dev), str) else pynvml.nvmlDeviceGetName(dev).decode(),
        "method": "nvml (measured)", "export_s": export_s, "cells": results,
        "fp16_vs_fp32_cosine_min": float(cos.min()),
        "conservation": {
            "nvml_counter_delta_j": counter1 - counter0, "attributed_j": attributed, "pending_j": totals.pending_j,
            "relative_error": (attributed + totals.pending_j - (counter1 - counter0)) / (counter1 - counter0),
            "seconds": args.seconds,
        },
    }
    meter.close()
    print(json.dumps(report, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_serving_check.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
