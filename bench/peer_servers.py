"""The servers ``make bench`` compares, each started as its own process by ``bench.peers``.

- ``uvicorn``: plain uvicorn + ONNX Runtime, one process, no batching (the cheapest HTTP path).
- ``rayserve``: plain Ray Serve, one deployment per model with ``@serve.batch``, behind the
  default proxy or HAProxy (the proxy env vars are read at Ray start, hence one process per mode);
  with ``--grpc-port``, tensor models also answer OIP ``ModelInfer`` (raw tensors) on Serve's own gRPC
  ingress, tritonclient's generated service registered as it is: the plain-Serve twin of wattgate's gRPC.
- ``wattgate``: the gateway itself via ``gateway.cli.start`` with bench settings.

The peers speak just enough of the Open Inference Protocol (JSON tensors) to answer the same
request bodies as wattgate and Triton. Each runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32", np.dtype(np.float64): "FP64"}


@dataclass(frozen=True)
class PeerModel:
    name: str  # the URL name: /v2/models/<name>/infer
    path: str
    tokenizer: str | None = None
    max_length: int = 128


class PeerRunner:
    """One ONNX model on ONNX Runtime (wattgate's own session options), with optional tokenisation."""

    def __init__(self, spec: PeerModel) -> None:
        from models.runtime import OnnxRuntime, RuntimeOptions

        self.spec = spec
        self.runtime = OnnxRuntime(spec.path, RuntimeOptions(intra_op_threads=1))
        self.tokenizer = None
        if spec.tokenizer:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(spec.tokenizer)
            self.tokenizer.enable_truncation(spec.max_length)
            self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def decode(self, body: bytes) -> dict[str, np.ndarray]:
        inp = json.loads(body)["inputs"][0]
        if self.tokenizer is None:
            return {inp["name"]: np.asarray(inp["data"], np.float32).reshape(inp["shape"])}
        return self.tokenize([str(t) for t in inp["data"]])

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
        }
        return {k: v for k, v in feeds.items() if k in self.runtime.input_names}

    def encode(self, outputs: dict[str, np.ndarray]) -> bytes:
        return json.dumps({"model_name": self.spec.name, "outputs": [
            {"name": k, "datatype": _DATATYPES.get(v.dtype, "FP32"), "shape": list(v.shape), "data": v.ravel().tolist()}
            for k, v in outputs.items()
        ]}).encode()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runtime.run(feeds)


def merge(feeds: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Stack requests' rows; token arrays of different lengths are right-padded with 0 (the pad id)."""
    rows = [next(iter(f.values())).shape[0] for f in feeds]
    merged = {}
    for key in feeds[0]:
        parts = [f[key] for f in feeds]
        if parts[0].ndim == 2 and parts[0].dtype == np.int64:
            width = max(p.shape[1] for p in parts)
            parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts]
        merged[key] = np.concatenate(parts, axis=0)
    return merged, rows


def split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    bounds = np.cumsum([0, *rows])
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()} for i in range(len(rows))]


# -- plain uvicorn + ONNX Runtime ---------------------------------------------------------------

def uvicorn_app(runners: dict[str, PeerRunner]):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        parts = scope["path"].strip("/").split("/")  # v2/models/<name>[/infer]
        runner = runners.get(parts[2]) if len(parts) >= 3 else None
        status, out = 200, b'{"ready":true}'
        if runner is None:
            status, out = 404, b'{"error":"unknown model"}'
        elif scope["method"] == "POST":
            try:
                out = runner.encode(runner.run(runner.decode(body)))
            except Exception as exc:  # a peer, not the product: any bad input is the client's
                status, out = 400, json.dumps({"error": str(exc)}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})

    return app


def serve_uvicorn(models: list[PeerModel], port: int) -> None:
    import uvicorn

    runners = {m.name: PeerRunner(m) for m in models}
    uvicorn.run(uvicorn_app(runners), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- plain Ray Serve with @serve.batch ----------------------------------------------------------

GRPC_SERVICER = "tritonclient.grpc.service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
_NP_DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def decode_infer_message(request) -> dict[str, np.ndarray]:
    """A ``ModelInferRequest``'s raw input tensors (the shape tritonclient sends), as arrays."""
    return {t.name: np.frombuffer(raw, _NP_DATATYPES[t.datatype]).reshape(tuple(t.shape))
            for t, raw in zip(request.inputs, request.raw_input_contents)}


def encode_infer_message(name: str, outputs: dict[str, np.ndarray]):
    from tritonclient.grpc import service_pb2 as pb

    response = pb.ModelInferResponse(model_name=name)
    for key, value in outputs.items():
        value = np.ascontiguousarray(value)
        response.outputs.add(name=key, datatype=_DATATYPES.get(value.dtype, "FP32"), shape=list(value.shape))
        response.raw_output_contents.append(value.tobytes())
    return response


def serve_rayserve(models: list[PeerModel], port: int, max_batch_size: int, batch_wait_timeout_s: float, num_cpus: float,
                   replicas: int = 1, grpc_port: int | None = None) -> None:
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    @serve.deployment(max_ongoing_requests=256, num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus})
    class PlainModel:
        def __init__(self, spec: dict) -> None:
            self.runner = PeerRunner(PeerModel(**spec))
            self.infer_batch.set_max_batch_size(max_batch_size)
            self.infer_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
        async def infer_batch(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            merged, rows = merge(feeds)
            return split(self.runner.run(merged), rows)

        async def __call__(self, request: Request) -> Response:
            if request.method != "POST":
                return Response(b'{"ready":true}', media_type="application/json")
            feeds = self.runner.decode(await request.body())
            out = await self.infer_batch(feeds)
            return Response(self.runner.encode(out), media_type="application/json")

        async def ModelInfer(self, request):  # noqa: N802 (Serve calls the method named after the RPC)
            out = await self.infer_batch(decode_infer_message(request))
            return encode_infer_message(self.runner.spec.name, out)

    root = str(Path(__file__).resolve().parent.parent)
    ray.init(include_dashboard=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": root}})
    grpc = {"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER]} if grpc_port else None
    serve.start(http_options={"host": "127.0.0.1", "port": port}, grpc_options=grpc)
    for m in models:
        serve.run(PlainModel.options(name=f"plain-{m.name}").bind(m.__dict__), name=m.name, route_prefix=f"/v2/models/{m.name}", blocking=False)
    _wait_for_sigterm()
    ray.shutdown()


# -- wattgate ---------------------------------------------------------------------------------

def serve_wattgate(overrides: dict[str, Any], config: str | None) -> None:
    from gateway.cli import shutdown, start
    from wattgate.settings import load_settings

    start(load_settings(config, **overrides))
    try:
        _wait_for_sigterm()
    finally:
        shutdown()


def _wait_for_sigterm() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["uvicorn", "rayserve", "wattgate"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--models", default="[]", help="JSON list of {name, path, tokenizer, max_length}")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.002)
    p.add_argument("--num-cpus", type=float, default=0.5, help="Ray replica num_cpus (as the gateway's ingress)")
    p.add_argument("--replicas", type=int, default=1, help="plain Ray Serve replicas per model (as server.ingress_replicas)")
    p.add_argument("--overrides", default="{}", help="wattgate settings overrides (JSON)")
    p.add_argument("--config", help="wattgate YAML settings")
    p.add_argument("--grpc-port", type=int, help="rayserve: also serve OIP ModelInfer over Serve's gRPC ingress here")
    p.add_argument("--proxy-mode", default="default", help="label only: the proxy env vars come from the parent")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    models = [PeerModel(**m) for m in json.loads(args.models)]
    if args.kind == "uvicorn":
        serve_uvicorn(models, args.port)
    elif args.kind == "rayserve":
        serve_rayserve(models, args.port, args.max_batch_size, args.batch_wait_timeout_s, args.num_cpus, args.replicas,
                       args.grpc_port)
    else:
        serve_wattgate(json.loads(args.overrides), args.config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
