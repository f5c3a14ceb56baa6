"""What ``make bench`` runs: the models it finds and the servers it starts, each a process tree we time.

A system that cannot start, or a model it cannot serve, becomes a skipped cell with the reason;
wattgate's cache and green-routing cells run only when a probe shows the feature answering.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.settings import BenchSettings
from loadtests.procs import ServerProcess, free_port
from wattgate.errors import NotFound, Unavailable

ROOT = Path(__file__).resolve().parent.parent
GREEN_TOPOLOGY = ROOT / "bench" / "green-topology.yaml"  # the wattgate-green cell's pools, sized to this machine
TRITON_LABEL = "Triton 2.51 (PyTriton, Python backend calling ONNX Runtime)"

LABELS = {
    "ort-inproc": "ONNX Runtime in-process (batch = concurrency, no HTTP)",
    "uvicorn-ort": "uvicorn + ONNX Runtime (no batching)",
    "rayserve-default": "plain Ray Serve, @serve.batch, default proxy",
    "rayserve-haproxy": "plain Ray Serve, @serve.batch, HAProxy + throughput-optimized",
    "rayserve-grpc": "plain Ray Serve over gRPC (Serve's gRPC ingress via HAProxy), @serve.batch",
    "triton": TRITON_LABEL,
    "triton-grpc": f"{TRITON_LABEL}, over gRPC",
    "wattgate": "wattgate, cache off, one local pool (no routing)",
    "wattgate-grpc": "wattgate over gRPC (Serve's gRPC ingress via HAProxy), cache off, one local pool",
    "wattgate-cache": "wattgate, cache on (Zipf inputs), one local pool",
    "wattgate-green": "wattgate, green routing on",
}

# Cells measured on the rayserve-haproxy / triton / wattgate servers, not started alone.
GRPC_SYSTEMS = ("rayserve-grpc", "triton-grpc", "wattgate-grpc")


@dataclass(frozen=True)
class BenchModel:
    label: str  # "digits", "minilm:int8"
    model: str
    variant: str | None
    path: Path
    tokenizer: Path | None = None
    max_length: int = 128

    @property
    def text(self) -> bool:
        return self.tokenizer is not None

    @property
    def peer_name(self) -> str:
        """The URL name on peers, which have no variant parameter: ``minilm-int8``."""
        return f"{self.model}-{self.variant}" if self.variant else self.model

    def peer_spec(self) -> dict:
        return {"name": self.peer_name, "path": str(self.path.resolve()),
                "tokenizer": str(self.tokenizer.resolve()) if self.tokenizer else None, "max_length": self.max_length}


def discover_models(repository: Path) -> list[BenchModel]:
    """``digits`` (required) and MiniLM fp32/int8 when ``<repository>/minilm`` exists."""
    from models.registry import ModelRegistry

    registry = ModelRegistry(repository)
    if "digits" not in registry.names():
        raise NotFound(f"no digits model in {repository}; build it: python -m models.digits --repository {repository}")
    card = registry.show("digits")
    out = [BenchModel("digits", "digits", None, registry.variant_path(card))]
    if (Path(repository) / "minilm").exists() and "minilm" in registry.names():
        card = registry.show("minilm")
        pre = card.preprocess
        tok = registry.support_path(card, pre.tokenizer_file) if pre else None
        for variant in ("fp32", "int8"):
            if variant in card.variants:
                out.append(BenchModel(f"minilm:{variant}", "minilm", variant, registry.variant_path(card, variant), tok,
                                      pre.max_length if pre else 128))
    return out


@dataclass
class RunningSystem:
    name: str
    server: ServerProcess | None
    urls: dict[str, str]  # model label -> infer URL
    skips: dict[str, str] = field(default_factory=dict)  # model label -> why it has no cells
    features: dict[str, str] = field(default_factory=dict)
    # System whose gRPC cells this server also answers ("triton-grpc"), and its host:port.
    grpc_system: str | None = None
    grpc_target: str | None = None
    grpc_apps: bool = False  # one Serve application per model: calls name theirs in `application` metadata

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def _peer(kind: str, models: list[BenchModel], s: BenchSettings, log_dir: Path, extra_env: dict[str, str] | None = None,
          extra_args: list[str] | None = None, grpc_port: int | None = None) -> RunningSystem:
    """``grpc_port``: plain Ray Serve also answers gRPC there (its ``rayserve-grpc`` cells)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.peer_servers", kind, "--port", str(port), "--models",
            json.dumps([m.peer_spec() for m in models]), "--max-batch-size", str(s.max_batch_size),
            "--batch-wait-timeout-s", str(s.batch_wait_timeout_s), *(extra_args or []),
            *(["--grpc-port", str(grpc_port)] if grpc_port else [])]
    name = kind if kind != "rayserve" else f"rayserve-{(extra_args or ['', 'default'])[1]}"
    server = ServerProcess(argv, log_dir / f"{name}.log", env=_env(extra_env), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for m in models:  # Serve brings each model's app up on its own
        server.wait_ready(f"{base}/v2/models/{m.peer_name}", s.server_start_timeout_s)
    system = RunningSystem(name, server, {m.label: f"{base}/v2/models/{m.peer_name}/infer" for m in models})
    if grpc_port:
        system.grpc_system, system.grpc_target, system.grpc_apps = "rayserve-grpc", f"127.0.0.1:{grpc_port}", True
        for m in models:
            if not m.text:
                wait_grpc_ready(system.grpc_target, m.peer_name, s.server_start_timeout_s, app=m.peer_name)
    return system


def wait_grpc_ready(target: str, model: str, timeout_s: float, app: str | None = None) -> None:
    """Until a digits ModelInfer answers OK. Before HAProxy routes the app to its replica, Serve's fallback
    proxy answers, and it cannot pickle tritonclient's messages (their module is ``grpc_service_pb2``)."""
    import grpc

    from loadtests.grpcload import MODEL_INFER, digits_grpc_request

    request = digits_grpc_request(model)(0)
    metadata = (("application", app),) if app else None
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(MODEL_INFER)
        while True:
            try:
                call(request, timeout=10, metadata=metadata)
                return
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"gRPC ModelInfer on {target} still fails after {timeout_s:.0f} s: {exc.code().name}") from exc
            time.sleep(0.5)


def start_uvicorn(models, s, log_dir) -> RunningSystem:
    return _peer("uvicorn", models, s, log_dir)


def start_rayserve(proxy: str) -> Callable[..., RunningSystem]:
    def start(models, s, log_dir) -> RunningSystem:
        from gateway.cli import proxy_env

        grpc_port = free_port() if proxy == "haproxy" else None  # the gRPC cells compare HAProxy-mode systems
        return _peer("rayserve", models, s, log_dir, proxy_env(proxy), ["--proxy-mode", proxy, "--replicas", str(s.replicas)],
                     grpc_port)

    return start


def start_triton(models, s: BenchSettings, log_dir) -> RunningSystem:
    python = s.triton_python if s.triton_python.is_absolute() else ROOT / s.triton_python
    if not python.exists():
        raise Unavailable(f"{python} is missing; create the Triton venv (see loadtests README section)")
    served = [m for m in models if not m.text]
    skips = {m.label: "text models need tokenizers, which .venv-triton does not have" for m in models if m.text}
    if not served:
        raise Unavailable("no model this Triton setup can serve (text models need tokenizers)")
    libdir = _python_libdir(python)
    port, grpc_port = free_port(), free_port()
    argv = [str(python), str(ROOT / "bench" / "triton_server.py"), "--http-port", str(port), "--grpc-port", str(grpc_port),
            "--max-batch-size", str(s.max_batch_size), "--max-queue-delay-us", str(int(s.batch_wait_timeout_s * 1e6)),
            *[a for m in served for a in ("--model", f"{m.peer_name}={m.path.resolve()}")]]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    server = ServerProcess(argv, log_dir / "triton.log", env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for m in served:
        server.wait_ready(f"{base}/v2/models/{m.peer_name}/ready", s.server_start_timeout_s)
    return RunningSystem("triton", server, {m.label: f"{base}/v2/models/{m.peer_name}/infer" for m in served}, skips,
                         grpc_system="triton-grpc", grpc_target=f"127.0.0.1:{grpc_port}")


def _python_libdir(python: Path) -> str:
    """The venv interpreter's LIBDIR: tritonserver links against its libpython."""
    import subprocess

    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or (sysconfig.get_config_var("LIBDIR") or "")


def start_wattgate(variant: str, cache_url: str | None = None, config: Path | None = None) -> Callable[..., RunningSystem]:
    """``wattgate`` (cache off), ``wattgate-cache`` (cache on) or ``wattgate-green`` (routing on, cache off)."""

    def start(models, s: BenchSettings, log_dir: Path, repository: Path) -> RunningSystem:
        port, grpc_port = free_port(), free_port()
        state = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-", dir=log_dir))
        overrides = {
            "server": {"host": "127.0.0.1", "port": port, "grpc_port": grpc_port, "proxy": "haproxy", "state_dir": str(state),
                       "ingress_replicas": s.replicas},
            "models": {"repository": str(repository.resolve()),
                       "defaults": {"max_batch_size": s.max_batch_size, "batch_wait_timeout_s": s.batch_wait_timeout_s}},
            "energy": {"ledger_path": str(state / "ledger.sqlite")},
            "cache": {"enabled": variant == "wattgate-cache", **({"url": cache_url} if cache_url and variant == "wattgate-cache" else {})},
        }
        if variant == "wattgate-green":
            # The example topology's three logical pools, each sized to this machine (bench/green-topology.yaml).
            overrides["routing"] = {"policy": "lowest-carbon", "topology_file": str(GREEN_TOPOLOGY)}
        else:
            # No topology file -> one local pool, no routing decision: isolates the cache / the bare gateway.
            overrides["routing"] = {"topology_file": str(state / "no-topology.yaml")}
        argv = [sys.executable, "-m", "bench.peer_servers", "wattgate", "--port", str(port), "--overrides", json.dumps(overrides)]
        if config:
            argv += ["--config", str(config)]
        server = ServerProcess(argv, log_dir / f"{variant}.log", env=_env(), cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        server.wait_ready(f"{base}/v2/health/ready", s.server_start_timeout_s)
        for name in dict.fromkeys(m.model for m in models):
            server.wait_ready(f"{base}/v2/models/{name}/ready", s.server_start_timeout_s)
        system = RunningSystem(variant, server, {m.label: f"{base}/v2/models/{m.model}/infer" for m in models})
        system.features = probe_features(f"{base}/v2/models/digits/infer")
        if variant == "wattgate":
            system.grpc_system, system.grpc_target = "wattgate-grpc", f"127.0.0.1:{grpc_port}"
        return system

    return start


def probe_features(infer_url: str) -> dict[str, str]:
    """Sends one digits body twice; returns the response parameters that say what the gateway did."""
    from loadtests.payloads import digits_images

    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                                   "data": digits_images()[7].tolist()}]}).encode()
    seen: dict[str, str] = {}
    for attempt in range(2):
        req = urllib.request.Request(infer_url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = json.loads(resp.read())
            params = doc.get("parameters") or {}
            for key in ("cache", "route_reason", "region", "pool", "energy_method"):
                if params.get(key) is not None:
                    seen[key if attempt == 0 else f"{key}_second"] = str(params[key])
    return seen


def feature_skip(variant: str, features: dict[str, str]) -> str | None:
    """Why a wattgate variant's cells would not measure what they claim, or None."""
    if variant == "wattgate-cache" and features.get("cache_second") != "hit":
        return f"cache not answering: a repeated request came back cache={features.get('cache_second', 'absent')}"
    if variant == "wattgate-green" and not features.get("route_reason"):
        return "green routing not wired: responses carry no route_reason"
    return None
