"""Locust scenarios, the headless load-test runner and the peer benchmarks."""
