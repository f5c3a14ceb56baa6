"""Shared fixtures: a real Ray Serve (HAProxy ingress) for the whole session, and built models."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wattgate.net import free_port  # noqa: E402,F401  (tests import it from here)


@pytest.fixture(scope="session")
def digits_repository(tmp_path_factory) -> Path:
    from models.digits import build

    repo = tmp_path_factory.mktemp("model_repository")
    build(repo)
    return repo


@pytest.fixture(scope="session")
def guarded_repository(digits_repository, tmp_path_factory) -> Path:
    """digits with a broken cheaper variant: ``int8`` (the default) has random weights; ``copy`` is
    the reference's own file. The live quality guard must catch the first and pass the second."""
    import numpy as np

    from models.digits import mlp_to_onnx
    from models.registry import ModelRegistry

    repo = tmp_path_factory.mktemp("guarded_repository")
    fp32 = digits_repository / "digits" / "1" / "fp32.onnx"
    rng = np.random.default_rng(7)
    sizes = (64, 128, 64, 10)
    broken = repo.parent / f"{repo.name}-int8.onnx"
    mlp_to_onnx([rng.normal(0, 0.3, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])],
                [rng.normal(0, 0.1, b) for b in sizes[1:]], broken)
    ModelRegistry(repo).register(
        "digits", "1", {"fp32": fp32, "int8": broken, "copy": fp32}, default_variant="int8",
        precision={"int8": "int8", "copy": "fp32"}, quality_floor={"accuracy": 0.95}, owner="tests",
        # What a mislabelled registration would claim: the card alone cannot tell the variant is broken.
        quality={"fp32": {"accuracy": 0.97}, "int8": {"accuracy": 0.97}, "copy": {"accuracy": 0.97}},
    )
    return repo


@pytest.fixture(scope="session")
def grpc_port() -> int:
    """The session Serve's gRPC ingress port (OIP over gRPC), free-allocated like the HTTP one."""
    return free_port()


@pytest.fixture(scope="session")
def ray_serve(grpc_port):
    """One local Ray + Serve for every integration test, HTTP and gRPC ingress; yields the HTTP port."""
    from gateway.cli import grpc_options, proxy_env
    from wattgate.settings import ServerSettings

    os.environ.update(proxy_env("haproxy", ServerSettings().max_request_bytes))
    import ray
    from ray import serve

    port = free_port()
    ray.init(
        address="local",  # always a fresh instance, never a cluster someone else started here
        num_cpus=8,  # logical CPUs: replicas ask for fractions, the machine has 2 cores
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        logging_level="WARNING",
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port}, grpc_options=grpc_options(grpc_port))
    yield port
    # ray.shutdown() stops Serve's actors and HAProxy with them in ~1 s; serve.shutdown() waits ~30 s.
    ray.shutdown()


@pytest.fixture(scope="session")
def deploy(ray_serve):
    """deploy(settings) -> base URL: (re)deploys the wattgate app with these settings."""
    import httpx
    from ray import serve

    from gateway.app import absolute_paths, build_app

    def _deploy(settings, name: str = "wattgate"):
        serve.run(build_app(settings), name=name, route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{ray_serve}"
        want = absolute_paths(settings).fingerprint()
        deadline = time.time() + 90
        while time.time() < deadline:  # until every answer comes from the new deployment
            try:
                if (
                    httpx.get(f"{url}/v2", timeout=2).json().get("config_id") == want
                    and httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
                    and all(httpx.get(f"{url}/v2", timeout=2).json().get("config_id") == want for _ in range(5))
                ):
                    return url
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError("gateway did not become ready with the new settings")

    return _deploy


@pytest.fixture
def make_plane(digits_repository, tmp_path):
    """make_plane(**settings sections) -> a data plane on the digits model, built without Ray (the
    plain-asyncio batcher, no HTTP server); closed after the test."""
    built = []

    def _make(**sections):
        sections.setdefault("models", {"repository": str(digits_repository),
                                       "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.01}})
        sections.setdefault("server", {})
        sections["server"].setdefault("state_dir", str(tmp_path / "state"))
        sections.setdefault("intensity", {"provider": "static"})
        from serving.assembly import build_data_plane
        from wattgate.settings import load_settings

        parts = build_data_plane(load_settings(None, **sections))
        parts.mark_ready()
        built.append(parts)
        return parts

    yield _make
    for parts in built:
        parts.close()
