"""Device check of a GPU variant: ONNX Runtime CUDA quality against fp32 references, latency and NVML energy.

Run on a machine with a GPU (the CPU-only dev boxes cannot)::

    python -m bench.device.gpu_variant_check --model fp16.onnx --inputs inputs.npz --reference ref.npy

``inputs.npz`` holds one batch per key prefix ``b<i>_<input name>``; ``ref.npy`` the fp32 outputs
of those batches concatenated. Energy is NVML's total-energy counter (measured, ``method="nvml"``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _batches(npz) -> list[dict[str, np.ndarray]]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key in npz.files:
        b, name = key.split("_", 1)
        groups.setdefault(b, {})[name] = npz[key]
    return [groups[k] for k in sorted(groups, key=lambda s: int(s[1:]))]


def main(argv=None) -> int:
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    out: dict = {"providers_available": ort.get_available_providers()}
    if "CUDAExecutionProvider" not in out["providers_available"]:
        out["error"] = "onnxruntime here has no CUDA execution provider"
        print(json.dumps(out))
        return 2
    sess = ort.InferenceSession(args.model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    batches = _batches(np.load(args.inputs))
    got = np.concatenate([sess.run(None, b)[0] for b in batches])
    ref = np.load(args.reference)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    out |= {"providers": sess.get_providers(), "cosine_mean": float(cos.mean()), "cosine_p5": float(np.percentile(cos, 5))}
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    out["gpu"] = pynvml.nvmlDeviceGetName(handle)
    rows = sum(len(next(iter(b.values()))) for b in batches)
    for b in batches:
        sess.run(None, b)
    e0, t0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()  # millijoules
    for _ in range(args.repeats):
        for b in batches:
            sess.run(None, b)
    wall = time.perf_counter() - t0
    energy_j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - e0) / 1000
    n = rows * args.repeats
    out |= {"method": "nvml", "measured": True, "rows_per_s": n / wall, "energy_j_per_inference": energy_j / n,
            "batch": int(len(next(iter(batches[0].values())))), "note": "whole-GPU energy, idle power included"}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
