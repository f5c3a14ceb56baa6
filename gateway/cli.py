"""``wattgate serve``: run the gateway on Ray Serve in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from gateway.request_id import CALLBACK
from wattgate.net import free_port, free_port_range, reserve

log = logging.getLogger("wattgate.serve")
_INGRESS_PORTS = 64  # direct-ingress ports per gateway: one per replica on a node, with room to restart
_GRPC_ENVELOPE_BYTES = 64 * 1024  # protobuf framing around a request's tensors, beyond server.max_request_bytes


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the gateway in the foreground")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8000)")
    p.add_argument("--grpc-port", type=int, help="OIP gRPC port (default 8001; 0: no gRPC)")
    p.add_argument("--build-missing", action="store_true", help="build the bundled digits model if it is missing")


def proxy_env(proxy: str, max_request_bytes: int | None = None) -> dict[str, str]:
    """Environment Ray Serve reads at start-up to pick its ingress path.

    HAProxy's stats/metrics ports and its socket and config files default to fixed values
    (8404, 9101, /tmp/haproxy-serve); give each gateway its own so two can run on one machine.
    ``max_request_bytes`` caps the gRPC messages Serve's servers take (2 GiB by default) near the
    request limit, so an oversized call is refused before it is buffered.
    """
    # One X-Request-Id per response; and ports of this gateway's own for the replicas' direct ingress
    # (Serve starts every cluster's at 30000 and 40000) and for the fallback proxy, so two gateways on
    # one machine (or a gateway and a test cluster) never answer each other's requests.
    http_lo, grpc_lo = free_port_range(_INGRESS_PORTS), free_port_range(_INGRESS_PORTS)
    one_id = {
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK,
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http_lo),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http_lo + _INGRESS_PORTS - 1),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_lo),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_lo + _INGRESS_PORTS - 1),
        # Serve's fallback proxy (8500/9500 by default) binds with SO_REUSEPORT: two clusters on those
        # ports split each other's connections, so a request could be answered by another gateway.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
    }
    if max_request_bytes is not None:
        one_id["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] = str(max_request_bytes + _GRPC_ENVELOPE_BYTES)
    if proxy != "haproxy":
        return one_id
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="wg-haproxy-")
    return {
        **one_id,
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{run_dir}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{run_dir}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": run_dir,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{run_dir}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{run_dir}/metrics.sock",
    }


def run(args: argparse.Namespace) -> int:
    from wattgate.settings import load_settings

    settings = load_settings(args.config)
    given = {k: v for k, v in (("host", args.host), ("port", args.port), ("grpc_port", args.grpc_port)) if v is not None}
    if given:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=given)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.build_missing:
        from models.digits import build

        build(settings.models.repository)
    serve_forever(settings)
    return 0


def serve_forever(settings) -> None:
    stop = threading.Event()

    def handle_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    handle_signals()
    try:
        # ray.init installs its own SIGTERM handler (sys.exit): take the signals back right after it.
        start(settings, on_ray_started=handle_signals)
        if not stop.is_set():
            s = settings.server
            grpc_at = f", grpc {s.host}:{s.grpc_port}" if s.grpc_port else ""
            log.info("wattgate listening on http://%s:%d%s (proxy: %s)", s.host, s.port, grpc_at, s.proxy)
        stop.wait()
    finally:
        shutdown(settings.energy.ledger_flush_interval_s + 0.5)


def start(settings, ray_address: str | None = None, on_ray_started=None) -> None:
    """Start Ray (local unless an address is given), Serve's ingress and the wattgate app."""
    from gateway.auth import check_exposure

    check_exposure(settings.server, settings.auth)  # before anything starts
    s = settings.server
    reserve(s.port, s.grpc_port, s.ray_metrics_port)  # bound later by Serve and Ray: not for proxy_env's ports
    os.environ.update(proxy_env(s.proxy, s.max_request_bytes))
    import ray
    from ray import serve

    from gateway.app import build_app

    settings.server.state_dir.mkdir(parents=True, exist_ok=True)
    # Replicas import our packages from the working tree; the paths must be absolute.
    root = str(Path(__file__).resolve().parent.parent)
    # A node started here exports Ray's metrics (ray_serve_*) on server.ray_metrics_port (0: Ray picks).
    local = ray_address is None
    node = {"_metrics_export_port": settings.server.ray_metrics_port} if local and settings.server.ray_metrics_port else {}
    ray.init(
        address=ray_address or "local",
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": root}},
        ignore_reinit_error=True,
        **node,
    )
    if on_ray_started is not None:
        on_ray_started()
    port = ray_metrics_port() if local else None
    if port:
        log.info("Ray's own metrics (ray_serve_*) for Prometheus: http://127.0.0.1:%d/metrics", port)
    serve.start(http_options={"host": settings.server.host, "port": settings.server.port},
                grpc_options=grpc_options(settings.server.grpc_port))
    serve.run(build_app(settings), name=settings.server.app_name, route_prefix="/", blocking=False)


def ray_metrics_port() -> int | None:
    """The port where this process's Ray node exports its Prometheus metrics; None without a local node."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return getattr(node, "metrics_export_port", None) if node is not None else None


def grpc_options(port: int) -> dict | None:
    """Serve's gRPC ingress serving ``inference.GRPCInferenceService`` on ``port``; None (no gRPC) for 0."""
    from gateway.grpc_service import SERVICER

    return {"port": port, "grpc_servicer_functions": [SERVICER]} if port else None


def shutdown(ledger_flush_s: float = 0.0) -> None:
    """Stop the local Ray cluster that ``start`` created; Serve's actors and HAProxy go with it.

    Replicas write the ledger every ``energy.ledger_flush_interval_s``; waiting one interval first
    means every response that left before the stop has its record on disk. (Serve's own graceful
    delete would call the replicas' ``__del__``, but with direct ingress it drains for ~35 s.)
    """
    import time

    import ray

    if ledger_flush_s > 0 and ray.is_initialized():
        time.sleep(min(ledger_flush_s, 10.0))
    ray.shutdown()
