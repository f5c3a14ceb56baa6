"""Triton 2.51 (PyTriton, Python backend calling ONNX Runtime) serving ONNX models with dynamic batching.

Runs in the separate ``.venv-triton`` (nvidia-pytriton 0.7.0 needs numpy<2), so it imports nothing
from this repository. SIGTERM becomes KeyboardInterrupt, which leaves ``with Triton(...)`` and stops
tritonserver; a killed parent would orphan it.

    LD_LIBRARY_PATH=$(.venv-triton/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
    .venv-triton/bin/python bench/triton_server.py --model digits=model_repository/digits/1/fp32.onnx --http-port 8010
"""

from __future__ import annotations

import argparse
import logging
import signal


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def make_infer(path: str, intra_op_threads: int):
    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch

    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Same as wattgate's runtime: spinning threads would bill idle CPU to this peer.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    outputs = sess.get_outputs()

    @batch
    def infer(**feeds):
        results = sess.run(None, {k: v for k, v in feeds.items()})
        out = {}
        for meta, arr in zip(outputs, results):
            # Triton wants a per-row dimension: a [N] output travels as [N, 1].
            out[meta.name] = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        return out

    return infer, inputs, outputs, np


def tensor_specs(metas, np):
    from pytriton.model_config import Tensor

    dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(double)": np.float64}
    specs = []
    for m in metas:
        shape = tuple(-1 if not isinstance(d, int) else d for d in m.shape[1:]) or (1,)
        specs.append(Tensor(name=m.name, dtype=dtypes[m.type], shape=shape))
    return specs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="NAME=PATH.onnx (repeatable)")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, default=0, help="0: gRPC off")
    p.add_argument("--metrics-port", type=int, default=0, help="0: metrics off")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--intra-op-threads", type=int, default=1)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING)

    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.http_port,
        allow_grpc=bool(args.grpc_port), grpc_address="127.0.0.1", grpc_port=args.grpc_port or None,
        allow_metrics=bool(args.metrics_port), metrics_port=args.metrics_port or None,
        log_verbose=0,
    )
    try:
        with Triton(config=config) as triton:
            for item in args.model:
                name, _, path = item.partition("=")
                infer, inputs, outputs, np = make_infer(path, args.intra_op_threads)
                triton.bind(
                    model_name=name, infer_func=infer,
                    inputs=tensor_specs(inputs, np), outputs=tensor_specs(outputs, np),
                    config=ModelConfig(max_batch_size=args.max_batch_size,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us)),
                    strict=False,
                )
            triton.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
