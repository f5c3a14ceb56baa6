"""Measures intensity lookups: loopback HTTP vs cached vs fallback, and trace loading. Reports; never asserts.

Run: nice -n 10 .venv/bin/python tests/routing/intensity/bench_intensity.py
"""

import logging
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2])]  # runnable as a plain script from the repo root
logging.disable(logging.WARNING)  # the refused-source run would log its one bounded warning

from intensity_fakes import FakeApi  # noqa: E402
from test_intensity_electricitymaps import KEY, EmState  # noqa: E402

from routing.intensity.electricitymaps import ElectricityMapsProvider  # noqa: E402
from routing.intensity.resilient import LAST_KNOWN, ResilientProvider  # noqa: E402
from routing.intensity.static import StaticProvider  # noqa: E402
from routing.intensity.traces import load_trace  # noqa: E402

GRID = HERE.parents[2].parent / "shared" / "data" / "grid"

api = FakeApi(EmState())
em = ElectricityMapsProvider({"DE": "DE"}, KEY, base_url=api.url)
chain = ResilientProvider([("electricitymaps", em), LAST_KNOWN, ("static", StaticProvider())], ttl_s={"electricitymaps": 0})


def timeit(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e6)
    return statistics.median(out), sorted(out)[int(n * 0.99) - 1]


print("uncached current() over loopback HTTP: median %.0f us, p99 %.0f us" % timeit(lambda: chain.current("DE"), 300))
cached = ResilientProvider([("electricitymaps", em), LAST_KNOWN, ("static", StaticProvider())])
cached.current("DE")
print("cached current(): median %.1f us, p99 %.1f us" % timeit(lambda: cached.current("DE"), 5000))
api.close()
down = ResilientProvider([("electricitymaps", ElectricityMapsProvider({"DE": "DE"}, KEY, base_url=api.url)), LAST_KNOWN, ("static", StaticProvider())])
print("fallback during back-off (refused source): median %.1f us" % timeit(lambda: down.current("DE"), 2000)[0])
for r in ("DE", "GB", "FR"):
    if not (GRID / f"{r}_2020H1.csv").exists():
        print(f"{GRID} missing: skipping trace timings")
        break
    t = time.perf_counter()
    tr = load_trace(GRID / f"{r}_2020H1.csv")
    print(f"load_trace {r}: {len(tr)} rows in {(time.perf_counter() - t) * 1000:.0f} ms")
else:
    now = datetime(2020, 3, 1, tzinfo=timezone.utc)
    t = time.perf_counter()
    for _ in range(10000):
        tr.at(now)
    print("Trace.at: %.2f us/call" % ((time.perf_counter() - t) / 10000 * 1e6))
