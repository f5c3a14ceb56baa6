"""Device check for the NVML meter on a real GPU: idle power, counter period, short windows, conservation.

Run on a GPU host (needs torch with CUDA and nvidia-ml-py): ``python -m bench.device.nvml_check --out r.json``.
The load is synthetic (bf16 matrix products and an fp16 MLP), not a served model; it checks the meter
and the attributor, not a model's figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

from energy.attribution import EnergyAttributor
from energy.meters.nvml import NvmlMeter, load_nvml


def _pcts(values: list[float]) -> dict:
    if not values:
        return {}
    s = sorted(values)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"n": len(s), "min": s[0], "p10": pick(0.1), "median": statistics.median(s), "p90": pick(0.9), "max": s[-1]}


def sample_power(nvml, handle, seconds: float) -> dict:
    avg, inst = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        avg.append(nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        try:
            v = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
            if v.nvmlReturn == 0:
                inst.append(v.value.uiVal / 1000.0)
        except Exception:
            pass
        time.sleep(0.05)
    return {"average_w": _pcts(avg), "instant_w": _pcts(inst)}


def counter_period(nvml, handle, seconds: float, work=None) -> dict:
    """Intervals between changes of the energy counter, polled every ~0.5 ms."""
    changes, last = [], nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if work:
            work()
        c = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if c != last:
            changes.append(time.monotonic())
            last = c
        time.sleep(0.0005)
    return _pcts([1000 * (b - a) for a, b in zip(changes, changes[1:])]) | {"unit": "ms"}


def call_latency(nvml, handle, n: int = 200) -> dict:
    """Wall time of the NVML calls a meter makes, in ms."""
    out = {}
    calls = {
        "energy_counter": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "power_average": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "power_instant": lambda: nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT]),
    }
    for name, fn in calls.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
        out[name] = _pcts(times)
    return out


def meter_read_latency(meter, n: int = 200) -> dict:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        meter.read()
        times.append(1000 * (time.perf_counter() - t0))
    return _pcts(times)


MODES = {  # name -> NvmlMeter keyword arguments
    "direct_average": {"power": "average"},
    "direct_instant": {"power": "instant"},
    "sampled10ms_average": {"power": "average", "sample_interval_s": 0.01},
    "sampled10ms_instant": {"power": "instant", "sample_interval_s": 0.01},
    # The shipped default (EnergySettings): power every 5 ms, the costly counter every 50 ms.
    "default_average": {"power": "average", "sample_interval_s": 0.005, "counter_interval_s": 0.05},
    "default_instant": {"power": "instant", "sample_interval_s": 0.005, "counter_interval_s": 0.05},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each conservation run")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {','.join(MODES)}")
    ap.add_argument("--skip-idle", action="store_true", help="skip the idle-power and counter-period sections")
    args = ap.parse_args(argv)

    nvml = load_nvml()
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    name = nvml.nvmlDeviceGetName(handle)
    result: dict = {
        "device": name if isinstance(name, str) else name.decode(),
        "driver": str(nvml.nvmlSystemGetDriverVersion()),
        "power_limit_w": nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
    }
    modes = [m for m in args.modes.split(",") if m]
    result["nvml_call_latency_ms"] = call_latency(nvml, handle)
    if not args.skip_idle:
        # Idle before this process makes a CUDA context, then with one (a serving replica holds one).
        result["idle_no_context"] = sample_power(nvml, handle, 3.0)
        result["counter_period_idle"] = counter_period(nvml, handle, 2.0)

    import torch

    dev = torch.device("cuda")
    torch.ones(1, device=dev)
    torch.cuda.synchronize()
    if not args.skip_idle:
        time.sleep(1.0)
        result["idle_with_context"] = sample_power(nvml, handle, 3.0)

    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)

    def batch(n_matmuls: int) -> None:
        for _ in range(n_matmuls):
            a @ a
        torch.cuda.synchronize()

    batch(20)
    t0 = time.perf_counter()
    batch(50)
    per_matmul_s = (time.perf_counter() - t0) / 50
    result["matmul_4096_bf16_ms"] = 1000 * per_matmul_s
    if not args.skip_idle:
        result["counter_period_load"] = counter_period(nvml, handle, 2.0, work=lambda: batch(3))

    # Short windows under load: 2–40 ms batches separated by idle gaps.
    rng = random.Random(0)
    for mode in modes:
        meter = NvmlMeter(0, nvml, **MODES[mode])
        time.sleep(0.05)
        result[f"meter_read_latency_ms_{mode}"] = meter_read_latency(meter)
        windows, zero = [], 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            time.sleep(rng.uniform(0, 0.03))
            target_s = rng.uniform(0.002, 0.040)
            meter.begin_window("b")
            batch(max(1, round(target_s / per_matmul_s)))
            m = meter.end_window("b")
            zero += m.energy_j <= 0
            windows.append((m.duration_s, m.energy_j))
        result[f"short_windows_{mode}"] = {
            "windows": len(windows),
            "zero_j_windows": zero,
            "duration_ms": _pcts([1000 * d for d, _ in windows]),
            "energy_j": _pcts([e for _, e in windows]),
            "implied_power_w": _pcts([e / d for d, e in windows if d > 0]),
        }
        meter.close()  # each meter's nvmlInit is matched by its close(); ours stays open

    # Conservation: per-request energies vs the NVML counter over >= 10 s of bursty load.
    for mode in modes:
        meter = NvmlMeter(0, nvml, **MODES[mode])
        attr = EnergyAttributor(meter)
        per_request, n_req = 0.0, 0
        t_start = time.monotonic()
        while time.monotonic() - t_start < args.seconds:
            time.sleep(rng.uniform(0, 0.05))
            token = attr.begin_batch()
            batch(max(1, round(rng.uniform(0.002, 0.040) / per_matmul_s)))
            out = attr.charge_batch([rng.randint(1, 64) for _ in range(rng.randint(1, 32))], token)
            per_request += sum(r.energy_j for r in out)
            n_req += len(out)
        # Let the counter catch up past the last batch, then charge the tail to one last request.
        time.sleep(0.35)
        per_request += sum(r.energy_j for r in attr.charge_batch([1]))
        counter_j = meter.counter_j()
        totals = attr.totals()
        result[f"conservation_{mode}"] = {
            "seconds": time.monotonic() - t_start,
            "requests": n_req + 1,
            "batches": totals.batches,
            "per_request_sum_j": per_request,
            "metered_j": totals.metered_j,
            "nvml_counter_j": counter_j,
            "rel_diff_vs_counter": (per_request - counter_j) / counter_j,
            "counter_updates_seen": meter.counter_updates,
        }
        meter.close()

    # Per-request energy of a synthetic fp16 MLP at batch 1 and batch 1024.
    mlp = torch.nn.Sequential(
        torch.nn.Linear(784, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)
    ).to(dev, torch.float16)
    for mode in modes:
        meter = NvmlMeter(0, nvml, **MODES[mode])
        attr = EnergyAttributor(meter)
        with torch.inference_mode():
            for bs in (1, 1024):
                x = torch.randn(bs, 784, device=dev, dtype=torch.float16)
                for _ in range(20):
                    mlp(x)
                torch.cuda.synchronize()
                time.sleep(0.3)
                attr.charge_batch([1])  # drop warm-up and idle from the figure below
                total_j, n, it = 0.0, 0, 0
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2.0:
                    mlp(x)
                    torch.cuda.synchronize()
                    out = attr.charge_batch([1] * bs)
                    total_j += sum(r.energy_j for r in out)
                    n += bs
                    it += 1
                wall = time.monotonic() - t0
                result[f"mlp_fp16_batch_{bs}_{mode}"] = {
                    "requests": n, "j_per_request": total_j / n, "ms_per_batch": 1000 * wall / it, "mean_power_w": total_j / wall,
                }
        meter.close()

    nvml.nvmlShutdown()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
