"""Benchmarks and device checks: wattgate against its peers, the cache, and the GPU scripts (``bench.device``)."""
