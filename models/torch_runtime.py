"""ONNX models on a GPU through PyTorch CUDA, for nodes whose onnxruntime has no CUDA provider.

The ONNX graph is converted with onnx2torch (optional dependency, GPU nodes only) and run in fp16
when the variant is an fp16 variant. Inputs and outputs stay numpy, so batching and energy
attribution are the same as for ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wattgate.errors import BackendError, Unavailable


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class TorchCudaRuntime:
    def __init__(self, path: str | Path, fp16: bool = False, device: str = "cuda:0") -> None:
        try:
            import onnx
            import torch
            from onnx2torch import convert
        except ImportError as exc:
            raise Unavailable(f"the GPU runtime needs torch and onnx2torch: {exc}") from exc
        if not torch.cuda.is_available():
            raise Unavailable("no CUDA device for the GPU runtime")
        self._torch = torch
        model = onnx.load(str(path))
        self.input_names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self.output_names = [o.name for o in model.graph.output]
        self.fp16 = fp16
        self.device = torch.device(device)
        module = convert(model).eval().to(self.device)
        self._module = module.half() if fp16 else module
        self.providers = [f"torch-cuda{'-fp16' if fp16 else ''}"]

    def run(self, inputs: dict[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        torch = self._torch
        args = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device, non_blocking=True)
            if self.fp16 and t.is_floating_point():
                t = t.half()
            args.append(t)
        try:
            with torch.inference_mode():
                out = self._module(*args)
        except Exception as exc:
            raise BackendError(f"GPU inference failed: {exc}") from exc
        outs = out if isinstance(out, (tuple, list)) else (out,)
        result = {}
        for name, t in zip(self.output_names, outs):
            t = t.float() if t.is_floating_point() else t
            result[name] = t.cpu().numpy()  # the copy synchronises: the batch's energy ends here
        wanted = output_names or self.output_names
        return {n: result[n] for n in wanted}
