"""GPU benchmark for the device machine: a MiniLM-shaped encoder on torch CUDA, energy measured by NVML.

    python -m bench.device.gpu_bench   # ~1 minute; writes $OUT/gpu_bench.json (or loadtests/results/)

Cells: fp32 batch 1 and fp16 batch 512 (closed loop), then open-loop Poisson arrivals at 5 %, 30 %
and 80 % of the fp16 capacity with dynamic batching up to 512. Energy is *measured*:
``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) read after a CUDA sync at both ends
of each window; the counter moves about every 100 ms, so every window lasts at least 3 s. An idle
window first gives the idle power; each cell reports total J per inference and the share above idle.
Random weights (the all-MiniLM-L6-v2 shape: 6 layers, hidden 384, 12 heads), sequence length 32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SEQ_LEN = 32
VOCAB = 30522
MINILM_L6 = dict(vocab_size=VOCAB, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                 max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu")


@dataclass(frozen=True)
class GpuCell:
    name: str
    dtype: str
    batch: int  # max batch for arrival cells
    offered_per_s: float | None
    window_s: float
    inferences: int
    inferences_per_s: float
    p50_ms: float
    p99_ms: float
    energy_j: float
    j_per_inference: float
    j_per_1k: float
    dynamic_j_per_inference: float  # above the idle power measured first
    mean_power_w: float
    method: str = "nvml-total-energy (measured)"


class NvmlEnergy:
    def __init__(self, index: int) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = pynvml.nvmlDeviceGetName(self.handle)
        self.name = self.name.decode() if isinstance(self.name, bytes) else self.name
        self.driver = pynvml.nvmlSystemGetDriverVersion()
        self.driver = self.driver.decode() if isinstance(self.driver, bytes) else self.driver
        try:
            self.power_limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000
        except pynvml.NVMLError:
            self.power_limit_w = None

    def joules(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def build_models(torch):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    fp32 = BertModel(BertConfig(**MINILM_L6)).cuda().eval()
    fp16 = BertModel(BertConfig(**MINILM_L6)).cuda().eval().half()
    return fp32, fp16


def _inputs(torch, batch: int):
    ids = torch.randint(0, VOCAB, (batch, SEQ_LEN), device="cuda")
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def closed_loop(torch, meter: NvmlEnergy, model, name: str, dtype: str, batch: int, window_s: float, idle_w: float) -> GpuCell:
    feeds = _inputs(torch, batch)
    with torch.inference_mode():
        for _ in range(10):
            model(**feeds)
        torch.cuda.synchronize()
        lat, n = [], 0
        e0, t0 = meter.joules(), time.perf_counter()
        while time.perf_counter() - t0 < window_s:
            t = time.perf_counter()
            model(**feeds)
            torch.cuda.synchronize()
            lat.append((time.perf_counter() - t) * 1000)
            n += batch
        e1, t1 = meter.joules(), time.perf_counter()
    return _cell(name, dtype, batch, None, t1 - t0, n, lat, e1 - e0, idle_w)


def arrivals(torch, meter: NvmlEnergy, model, rate_per_s: float, max_batch: int, window_s: float, idle_w: float) -> GpuCell:
    """Open loop: Poisson arrivals; each step runs everything that has arrived (up to max_batch)."""
    import random

    rng = random.Random(0)
    times, t = [], 0.0
    while t < window_s:
        t += rng.expovariate(rate_per_s)
        times.append(t)
    full = _inputs(torch, max_batch)
    lat: list[float] = []
    with torch.inference_mode():
        model(**full)
        torch.cuda.synchronize()
        e0, start = meter.joules(), time.perf_counter()
        i = 0
        while i < len(times):
            now = time.perf_counter() - start
            if now > 3 * window_s:  # the GPU fell behind: stop, count what was served
                break
            if times[i] > now:
                time.sleep(min(times[i] - now, 0.0005))
                continue
            j = i
            while j < len(times) and times[j] <= now and j - i < max_batch:
                j += 1
            model(**{k: v[: j - i] for k, v in full.items()})
            torch.cuda.synchronize()
            done = time.perf_counter() - start
            lat.extend((done - a) * 1000 for a in times[i:j])
            i = j
        e1, elapsed = meter.joules(), time.perf_counter() - start
    return _cell(f"arrivals {rate_per_s:,.0f}/s", "fp16", max_batch, rate_per_s, elapsed, i, lat, e1 - e0, idle_w)


def _cell(name, dtype, batch, offered, window_s, n, lat, energy_j, idle_w) -> GpuCell:
    per = energy_j / n if n else math.nan
    dynamic = (energy_j - idle_w * window_s) / n if n else math.nan
    return GpuCell(name, dtype, batch, offered, window_s, n, n / window_s, _pct(lat, 50), _pct(lat, 99), energy_j, per,
                   1000 * per, dynamic, energy_j / window_s)


def render(cells: list[GpuCell], meta: dict) -> str:
    head = f"{'cell':<22} {'dtype':<5} {'batch':>5} {'inf/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'J/inf':>10} {'J/1k':>9} {'dyn J/inf':>10} {'W':>7}"
    lines = [f"gpu_bench on {meta['gpu']} (driver {meta['driver']}, torch {meta['torch']}); idle {meta['idle_power_w']:.1f} W; "
             "energy measured by NVML", head, "-" * len(head)]
    for c in cells:
        lines.append(f"{c.name:<22} {c.dtype:<5} {c.batch:>5} {c.inferences_per_s:>10,.0f} {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} "
                     f"{c.j_per_inference:>10.3e} {c.j_per_1k:>9.3f} {c.dynamic_j_per_inference:>10.3e} {c.mean_power_w:>7.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--window-s", type=float, default=4.0, help="seconds per cell (>= 3: NVML's counter moves every ~100 ms)")
    p.add_argument("--out", type=Path, help="directory for gpu_bench.json (default $OUT, else loadtests/results)")
    args = p.parse_args(argv)
    if args.window_s < 3:
        p.error("--window-s must be at least 3 s for NVML's ~100 ms energy counter")
    try:
        import torch
    except ImportError:
        print("gpu_bench: torch is not installed (pip install torch==2.13.0 with CUDA)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"gpu_bench: CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "run this on the GPU machine", file=sys.stderr)
        return 2
    try:
        meter = NvmlEnergy(args.device)
        meter.joules()
    except Exception as exc:  # pynvml missing, or no energy counter on this GPU (pre-Volta)
        print(f"gpu_bench: cannot read NVML total energy on GPU {args.device}: {exc}", file=sys.stderr)
        return 2
    torch.cuda.set_device(args.device)
    started = time.perf_counter()
    fp32, fp16 = build_models(torch)
    torch.cuda.synchronize()
    e0, t0 = meter.joules(), time.perf_counter()
    time.sleep(3.0)
    idle_w = (meter.joules() - e0) / (time.perf_counter() - t0)
    cells = [
        closed_loop(torch, meter, fp32, "fp32 batch 1", "fp32", 1, args.window_s, idle_w),
        closed_loop(torch, meter, fp16, "fp16 batch 512", "fp16", 512, args.window_s, idle_w),
    ]
    capacity = cells[1].inferences_per_s
    for share in (0.05, 0.3, 0.8):
        cells.append(arrivals(torch, meter, fp16, share * capacity, 512, args.window_s, idle_w))
    meta = {"gpu": meter.name, "driver": meter.driver, "power_limit_w": meter.power_limit_w, "torch": torch.__version__,
            "cuda": torch.version.cuda, "host": platform.node(), "idle_power_w": idle_w, "seq_len": SEQ_LEN,
            "model": "BertModel, all-MiniLM-L6-v2 config, random weights", "wall_s": time.perf_counter() - started}
    print(render(cells, meta))
    out = args.out or Path(os.environ.get("OUT") or "loadtests/results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_bench.json"
    path.write_text(json.dumps({"meta": meta, "cells": [asdict(c) for c in cells]}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
