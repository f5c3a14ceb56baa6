"""A killed ingress replica under gRPC load: its in-flight calls fail UNAVAILABLE (which gRPC clients retry),
and every other call is answered, through Serve's fallback proxy until Serve restarts the replica."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import psutil
import pytest
import yaml

from loadtests.grpcload import MODEL_INFER, digits_grpc_request
from tests.gateway.serve_process import wattgate_serve

pytestmark = pytest.mark.integration
CONCURRENCY = 4


def _ingress_replicas(pid: int) -> list[psutil.Process]:
    """The live ingress replicas under ``pid``; a killed one stays a zombie until Ray reaps it, and is skipped."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "ServeReplica:wattgate:Gateway" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:  # gone, or a zombie, between listing and reading
            continue
    return found


def _restarted_replica(pid: int, killed: int, timeout_s: float = 60) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while True:
        replicas = [p for p in _ingress_replicas(pid) if p.pid != killed]
        if replicas or time.monotonic() > deadline:
            return replicas
        time.sleep(0.5)


def test_grpc_calls_survive_the_loss_of_the_only_ingress_replica(digits_repository, tmp_path):
    from tests.conftest import free_port

    port, grpc_port = free_port(), free_port()
    cfg = tmp_path / "wattgate.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"port": port, "grpc_port": grpc_port, "state_dir": str(tmp_path / "var"), "ingress_replicas": 1},
        "models": {"repository": str(digits_repository)},
    }))
    make = digits_grpc_request()
    statuses: dict[str, list[float]] = {}
    details: dict[str, str] = {}

    killed_pid = 0

    async def drive(pid: int) -> float:
        nonlocal killed_pid
        killed_at = float("inf")
        deadline = time.monotonic() + 120

        def done() -> bool:  # answered again for 2 s after the kill, or out of time
            ok = statuses.get("OK", [])
            return time.monotonic() > deadline or (ok and ok[-1] - killed_at > 2.0)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(MODEL_INFER)

            async def worker(k: int) -> None:
                i = k
                while not done():
                    i += CONCURRENCY
                    try:
                        await call(make(i), timeout=60)
                        status = "OK"
                    except grpc.RpcError as exc:
                        status = exc.code().name
                        details.setdefault(status, exc.details())
                    statuses.setdefault(status, []).append(time.monotonic())

            async def kill() -> None:
                nonlocal killed_at
                while len(statuses.get("OK", [])) < 200:  # under load first
                    await asyncio.sleep(0.05)
                (replica,) = _ingress_replicas(pid)
                killed_pid = replica.pid
                os.kill(replica.pid, signal.SIGKILL)
                killed_at = time.monotonic()

            await asyncio.gather(kill(), *(worker(k) for k in range(CONCURRENCY)))
        return killed_at

    with wattgate_serve(cfg, port) as (proc, _):
        killed_at = asyncio.run(drive(proc.pid))
        assert _restarted_replica(proc.pid, killed_pid), "Serve should have restarted the replica"
    assert set(statuses) <= {"OK", "UNAVAILABLE"}, details  # never UNKNOWN, INTERNAL...
    assert len(statuses.get("UNAVAILABLE", [])) <= 2 * CONCURRENCY, details  # the calls in flight at the kill
    assert sum(t > killed_at for t in statuses["OK"]) > 0  # answered again after the kill
