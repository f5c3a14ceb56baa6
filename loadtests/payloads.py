"""Open Inference Protocol request bodies for load tests: JSON or binary tensors, Zipf draws, malformed ones.

Binary bodies come from ``tritonclient.http``'s own encoder (``generate_request_body``), so they are
exactly what Triton clients send: a JSON header of ``Inference-Header-Content-Length`` bytes, then
the raw tensor bytes sized by ``parameters.binary_data_size``. Plain Python, no locust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from wattgate.errors import BadRequest

JSON_HEADERS = {"content-type": "application/json"}

# A small, fixed English corpus for text models: varied lengths, no network, no dataset download.
SENTENCES = (
    "The grid is cleaner at night when the wind picks up.",
    "A cached prediction costs almost no energy.",
    "Route the request to the region with the lowest carbon intensity.",
    "Batching many small requests keeps the accelerator busy.",
    "How much energy does one inference take on this machine?",
    "Quantised models trade a little accuracy for a lot of speed.",
    "Solar output peaks around noon and fades in the evening.",
    "The load balancer spreads requests over every healthy replica.",
    "Latency percentiles tell you more than the average does.",
    "Each request carries its own energy and carbon figures.",
    "Short texts tokenise quickly.",
    "Sentence embeddings map meaning to a vector of a few hundred numbers, so similar sentences land close together.",
)


@dataclass(frozen=True)
class ModelTarget:
    """One entry of the model mix: ``name[:variant][@weight]``."""

    name: str
    variant: str | None = None
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.name}:{self.variant}" if self.variant else self.name


def parse_models(spec: str | Sequence[str]) -> list[ModelTarget]:
    """``"digits:fp32,minilm:int8@0.5"`` (or a list of such items) -> targets; bad items raise BadRequest."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        head, _, weight = raw.partition("@")
        name, _, variant = head.partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise BadRequest(f"model mix item {raw!r}: weight {weight!r} is not a number") from None
        if not name or w <= 0:
            raise BadRequest(f"model mix item {raw!r} needs a name and a positive weight")
        out.append(ModelTarget(name, variant or None, w))
    if not out:
        raise BadRequest("the model mix is empty")
    return out


@lru_cache(maxsize=1)
def digits_images() -> np.ndarray:
    """The 1,797 scikit-learn 8x8 digits as raw 0-16 pixel values, float32 [N, 64]."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def oip_body(
    inputs: dict[str, np.ndarray], binary: bool, parameters: dict | None = None
) -> tuple[bytes, dict[str, str]]:
    """An infer body with these named inputs: JSON in and out, or binary in and out as
    ``tritonclient`` sends by default (it sets ``binary_data_output`` when no outputs are named)."""
    if not binary:
        doc: dict = {"inputs": [
            {"name": name, "datatype": "BYTES" if arr.dtype == object else triton_datatype(arr.dtype), "shape": list(arr.shape),
             "data": [v.decode() if isinstance(v, bytes) else v for v in arr.ravel().tolist()]}
            for name, arr in inputs.items()
        ]}
        if parameters:
            doc["parameters"] = parameters
        return json.dumps(doc).encode(), dict(JSON_HEADERS)
    import tritonclient.http as triton

    infer_inputs = []
    for name, arr in inputs.items():
        inp = triton.InferInput(name, list(arr.shape), "BYTES" if arr.dtype == object else triton_datatype(arr.dtype))
        inp.set_data_from_numpy(arr, binary_data=True)
        infer_inputs.append(inp)
    body, json_size = triton.InferenceServerClient.generate_request_body(infer_inputs, parameters=parameters)
    return body, {"content-type": "application/octet-stream", "inference-header-content-length": str(json_size)}


def triton_datatype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(np.dtype(dtype))


class ZipfSampler:
    """Draws item indices with P(rank k) ∝ 1/k**s over ``n`` items, ranks shuffled over the items."""

    def __init__(self, n: int, s: float, seed: int = 0) -> None:
        if n < 1 or s <= 0:
            raise BadRequest("a Zipf sampler needs n >= 1 items and s > 0")
        rng = np.random.default_rng(seed)
        p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
        self._cdf = np.cumsum(p / p.sum())
        self._items = rng.permutation(n)
        self._rng = rng

    def draw(self) -> int:
        return int(self._items[min(int(np.searchsorted(self._cdf, self._rng.random())), len(self._items) - 1)])

    def expected_hit_rate(self, requests: int) -> float:
        """Hit rate of an unbounded cache after ``requests`` draws (1 - distinct/requests), by simulation."""
        rng = np.random.default_rng(1)
        ranks = np.searchsorted(self._cdf, rng.random(requests))
        return 1.0 - len(np.unique(ranks)) / requests


class BodyFactory:
    """Bodies for one model target; cached per (item, binary) because encoding costs client CPU."""

    def __init__(self, target: ModelTarget, input_name: str, datatype: str, rows: int = 1) -> None:
        self.target = target
        self.input_name = input_name
        self.datatype = datatype
        self.rows = rows
        self._params = {"variant": target.variant} if target.variant else None
        if datatype == "BYTES":
            self._items = len(SENTENCES)
        else:
            self._items = len(digits_images())
        self._cache: dict[tuple[int, bool], tuple[bytes, dict[str, str]]] = {}

    @property
    def items(self) -> int:
        return self._items

    @property
    def path(self) -> str:
        return f"/v2/models/{self.target.name}/infer"

    def body(self, item: int, binary: bool) -> tuple[bytes, dict[str, str]]:
        key = (item % self._items, binary)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = oip_body({self.input_name: self._rows(key[0])}, binary, self._params)
        return hit

    def _rows(self, item: int) -> np.ndarray:
        idx = [(item + r) % self._items for r in range(self.rows)]
        if self.datatype == "BYTES":
            return np.array([SENTENCES[i].encode() for i in idx], dtype=object)
        return digits_images()[idx]


def factory_from_metadata(target: ModelTarget, metadata: dict | None, rows: int = 1) -> BodyFactory:
    """Input name and datatype from ``GET /v2/models/{name}``; digits' ``pixels`` FP32 if unavailable."""
    if metadata and metadata.get("inputs"):
        first = metadata["inputs"][0]
        datatype = first.get("datatype", "FP32")
        if datatype not in ("FP32", "BYTES"):
            raise BadRequest(f"load tests send FP32 pixels or BYTES text; {target.name} wants {datatype}")
        return BodyFactory(target, first["name"], datatype, rows)
    return BodyFactory(target, "pixels", "FP32", rows)


@lru_cache(maxsize=16)
def malformed_bodies(model: str = "digits") -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(kind, path, body, headers) of requests a correct OIP server must refuse with 4xx (shared: do not mutate)."""
    infer = f"/v2/models/{model}/infer"
    good = {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}

    def doc(**change) -> bytes:
        return json.dumps({"inputs": [{**good, **change}]}).encode()

    return [
        ("not-json", infer, b'{"inputs": [', JSON_HEADERS),
        ("no-inputs", infer, b'{"inputs": []}', JSON_HEADERS),
        ("wrong-datatype", infer, doc(datatype="INT64", data=[0] * 64), JSON_HEADERS),
        ("wrong-shape", infer, doc(shape=[1, 63], data=[0.0] * 63), JSON_HEADERS),
        ("data-shape-mismatch", infer, doc(data=[0.0] * 10), JSON_HEADERS),
        ("wrong-input-name", infer, doc(name="pixles"), JSON_HEADERS),
        ("non-numeric-data", infer, doc(data=["x"] * 64), JSON_HEADERS),
        ("unknown-model", "/v2/models/no-such-model/infer", doc(), JSON_HEADERS),
        ("binary-header-too-long", infer, doc(), {"content-type": "application/octet-stream", "inference-header-content-length": "99999"}),
    ]
