"""Energy profile of one variant: latency, CPU-seconds and joules per inference per batch size and hardware class.

The profile goes into the card's ``energy_profile`` (``registry.update_variant``); its format::

    {"x86": {"method": "cpu-time-model", "measured": false, "profile": "aws-x86", "threads": 1,
             "host": "x86_64 Intel(R) Xeon(R) ...",
             "batches": {"1": {"latency_ms": .., "cpu_s_per_inference": .., "energy_j_per_inference": ..,
                               "throughput_per_s": ..}, "8": {..}, "32": {..}, "64": {..}}},
     "arm": {"method": "modelled", "measured": false, "profile": "aws-graviton2", "basis": "..", "batches": {..}},
     "gpu": {"method": "modelled", "measured": false, "profile": "nvidia-a10g", "basis": "..", "batches": {..}}}

x86 is timed on this host; its energy is the CPU-time model (CCF watts x CPU-seconds), never a
power reading, hence ``measured: false``. Classes that cannot run here are modelled and say on
what basis. Batch keys are strings because the card is JSON.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optimizers.metering import hardware_description, make_run_meter
from optimizers.settings import ProfileSettings

# GPU model assumptions (modelled, not measured): a fixed per-call overhead of the CUDA execution
# provider for a small graph, and an effective dense throughput well below peak for small batches.
GPU_CALL_OVERHEAD_MS = 0.3
GPU_EFFECTIVE_TFLOPS = 10.0


def matmul_flops_per_token(path: str | Path) -> int:
    """2*K*N summed over every MatMul/Gemm/MatMulInteger whose weight is a constant [K, N] (or [N, K]) matrix."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    # QDQ graphs reach MatMul through DequantizeLinear(weight): follow one hop.
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
        if node.op_type in ("Cast", "Transpose") and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    total = 0
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
            dims = shapes.get(node.input[1])
            if dims and len(dims) == 2:
                total += 2 * dims[0] * dims[1]
    return total


def _time_batch(runtime, inputs: dict[str, np.ndarray], batch: int, settings: ProfileSettings, meter) -> dict[str, float]:
    for _ in range(settings.warmup_calls):
        runtime.run(inputs)
    calls = 0
    window = f"profile-{id(inputs)}-{batch}"
    cpu0, t0 = time.process_time(), time.perf_counter()
    meter.begin_window(window)
    while calls < settings.min_calls or time.perf_counter() - t0 < settings.min_time_s:
        runtime.run(inputs)
        calls += 1
    m = meter.end_window(window)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    n = calls * batch
    return {
        "latency_ms": round(1000 * wall_s / calls, 4),
        "cpu_s_per_inference": float(f"{cpu_s / n:.6g}"),
        "energy_j_per_inference": float(f"{m.energy_j / n:.6g}"),
        "throughput_per_s": round(n / wall_s, 2),
        "calls": calls,
    }


def _modelled_cpu(x86: dict[str, Any], profile_name: str, threads: int) -> dict[str, Any]:
    from energy.coefficients import get_profile

    p = get_profile(profile_name)
    batches = {}
    for b, row in x86["batches"].items():
        wall_per_inf_s = row["latency_ms"] / 1000 / int(b)
        e = p.idle_power_w * threads * wall_per_inf_s + p.dynamic_power_w * row["cpu_s_per_inference"]
        batches[b] = {"latency_ms": row["latency_ms"], "cpu_s_per_inference": row["cpu_s_per_inference"],
                      "energy_j_per_inference": float(f"{e:.6g}")}
    return {"method": "modelled", "measured": False, "profile": profile_name, "threads": threads,
            "basis": "x86 latency and CPU-seconds assumed unchanged; CCF per-vCPU watts of the profile", "batches": batches}


def _modelled_gpu(flops_per_row: float, batch_sizes, profile_name: str) -> dict[str, Any]:
    from energy.coefficients import get_profile

    p = get_profile(profile_name)
    batches = {}
    for b in batch_sizes:
        compute_ms = flops_per_row * b / (GPU_EFFECTIVE_TFLOPS * 1e12) * 1000
        latency_ms = GPU_CALL_OVERHEAD_MS + compute_ms
        busy = compute_ms / latency_ms
        power_w = (p.idle_power_w or 0.0) + busy * (p.max_power_w - (p.idle_power_w or 0.0))
        batches[str(b)] = {"latency_ms": round(latency_ms, 4), "cpu_s_per_inference": None,
                           "energy_j_per_inference": float(f"{power_w * latency_ms / 1000 / b:.6g}")}
    return {"method": "modelled", "measured": False, "profile": profile_name,
            "basis": f"matmul FLOPs / {GPU_EFFECTIVE_TFLOPS} TFLOP/s + {GPU_CALL_OVERHEAD_MS} ms per call; "
                     "power idle + busy fraction x (max - idle)", "batches": batches}


def profile_variant(
    path: str | Path,
    make_inputs: Callable[[int], dict[str, np.ndarray]],
    settings: ProfileSettings = ProfileSettings(),
    tokens_per_row: float = 1.0,
    hardware: tuple[str, ...] = ("x86", "arm"),
) -> dict[str, Any]:
    """Time ``path`` on this CPU at each batch size and return the card's ``energy_profile`` dict.

    ``make_inputs(batch)`` returns the graph inputs for ``batch`` rows; ``tokens_per_row`` scales
    the FLOP count for the modelled GPU entry (sequence length for text, 1 otherwise). A variant
    whose ``hardware`` excludes x86 (an fp16 GPU variant) is not timed here: CPU numbers would
    say nothing about it, so it gets the modelled GPU entry alone.
    """
    from models.runtime import OnnxRuntime, RuntimeOptions

    flops = matmul_flops_per_token(path) * tokens_per_row
    if "x86" not in hardware:
        gpu = settings.modelled_profiles.get("gpu")
        return {"gpu": _modelled_gpu(flops, settings.batch_sizes, gpu)} if gpu else {}
    runtime = OnnxRuntime(path, RuntimeOptions(hardware="x86", intra_op_threads=settings.threads))
    meter = make_run_meter(settings.host_profile, vcpus=settings.threads)
    batches = {str(b): _time_batch(runtime, make_inputs(b), b, settings, meter) for b in settings.batch_sizes}
    x86 = {"method": meter.method, "measured": meter.measured, "profile": settings.host_profile,
           "threads": settings.threads, "host": hardware_description(), "batches": batches}
    out: dict[str, Any] = {"x86": x86}
    for cls, name in settings.modelled_profiles.items():
        if cls == "gpu":
            out[cls] = _modelled_gpu(flops, settings.batch_sizes, name)
        else:
            out[cls] = _modelled_cpu(x86, name, settings.threads)
    return out


def energy_per_inference(profile: dict[str, Any], hardware: str = "x86", batch: int = 32) -> float:
    """J per inference at ``batch`` (or the nearest profiled batch size) on ``hardware``."""
    rows = profile[hardware]["batches"]
    key = str(batch) if str(batch) in rows else min(rows, key=lambda k: abs(int(k) - batch))
    return float(rows[key]["energy_j_per_inference"])


def measure_batch(path: str | Path, inputs: dict[str, np.ndarray], settings: ProfileSettings = ProfileSettings()) -> dict[str, float]:
    """One batch size on this CPU: the x86 row of a profile, for searches that need one number fast."""
    from models.runtime import OnnxRuntime, RuntimeOptions

    runtime = OnnxRuntime(path, RuntimeOptions(hardware="x86", intra_op_threads=settings.threads))
    meter = make_run_meter(settings.host_profile, vcpus=settings.threads)
    batch = int(next(iter(inputs.values())).shape[0])
    return _time_batch(runtime, inputs, batch, settings, meter)
