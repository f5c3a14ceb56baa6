"""The README's prediction-cache example runs (before the lead pastes it in, the copy below runs)."""

import pathlib
import re

EXAMPLE = '''
import asyncio

import numpy as np

from cache import CacheSettings, PredictionCacheService, cache_key, describe, make_cache
from wattgate.metrics import MetricsRegistry
from wattgate.tensors import Tensor


async def main():
    settings = CacheSettings()  # CacheSettings(url="redis://127.0.0.1:6379/0") for Redis
    print("cache:", describe(settings))
    service = PredictionCacheService(make_cache(settings), settings, MetricsRegistry())
    x = Tensor.from_numpy("x", np.array([[1.0, 2.0]], dtype=np.float32))
    key = cache_key("digits", "1", "", [], [x])

    async def run_model():
        return [Tensor.from_numpy("y", x.data * 2)], {"energy_j": 0.8}

    first = await service.get_or_compute(key, run_model, model="digits", version="1")
    second = await service.get_or_compute(key, run_model, model="digits", version="1")
    assert (first.status, second.status) == ("miss", "hit") and second.extra is None
    await service.close()


asyncio.run(main())
'''


def readme_example() -> str:
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text() if readme.exists() else ""
    section = re.search(r"^#+ Prediction cache.*?(?=^#+ |\Z)", text, re.S | re.M)
    block = re.search(r"```python\n(.*?)```", section.group(0), re.S) if section else None
    return block.group(1) if block else EXAMPLE


def test_readme_example_runs(capsys):
    exec(compile(readme_example(), "README.md#prediction-cache", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.startswith("cache: in-process LRU")
