"""The device scripts on a machine without a GPU: they refuse clearly instead of failing somewhere inside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_gpu_bench_refuses_clearly_without_cuda():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "bench.device.gpu_bench"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpu_bench: ") and ("CUDA is not available" in proc.stderr or "torch is not installed" in proc.stderr)
