"""Runtimes execute one model variant; ONNX Runtime is the one we ship.

A runtime sees plain numpy arrays keyed by the graph's input names and knows nothing of HTTP,
batching or energy. The execution provider follows the node's hardware class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from wattgate.errors import BackendError, BadRequest


class Runtime(Protocol):
    """Runs a batch: inputs by graph name -> outputs by graph name, rows on axis 0."""

    providers: Sequence[str]

    def run(self, inputs: dict[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class RuntimeOptions:
    hardware: str = "x86"  # "x86" | "arm" | "gpu" | "tpu"
    intra_op_threads: int = 1
    inter_op_threads: int = 1


_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(hardware: str, available: Sequence[str]) -> list[str]:
    """GPU nodes use TensorRT or CUDA when that provider is installed; everything else runs on CPU."""
    if hardware == "gpu":
        gpu = [p for p in _GPU_PROVIDERS if p in available]
        return gpu + ["CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntime:
    def __init__(self, path: str | Path, options: RuntimeOptions = RuntimeOptions()) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning intra-op threads burn CPU while the replica idles; that is energy we would meter.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.providers = choose_providers(options.hardware, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=self.providers)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime could not load {Path(path).name}: {exc}") from exc
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(output_names) if output_names else self.output_names
        try:
            results = self._session.run(names, inputs)
        except Exception as exc:
            # A shape the card allowed but the graph rejects is the caller's fault, not ours.
            if "INVALID_ARGUMENT" in str(exc) or "Invalid" in str(exc):
                raise BadRequest(f"the model rejected the input: {exc}") from exc
            raise BackendError(f"inference failed: {exc}") from exc
        return dict(zip(names, results))


def make_runtime(path: str | Path, options: RuntimeOptions = RuntimeOptions(), precision: str = "fp32") -> Runtime:
    """ONNX Runtime wherever it can use the node's hardware; on a GPU node whose onnxruntime has no
    CUDA provider, PyTorch CUDA through onnx2torch (fp16 when the variant is fp16)."""
    if options.hardware == "gpu":
        import onnxruntime as ort

        if not any(p in ort.get_available_providers() for p in _GPU_PROVIDERS):
            from models.torch_runtime import TorchCudaRuntime, cuda_available

            if cuda_available():
                return TorchCudaRuntime(path, fp16=precision == "fp16")
    return OnnxRuntime(path, options)
