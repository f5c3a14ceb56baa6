"""Pools (region + hardware + variants), their load-dependent energy curves, and the topology file.

A topology file (YAML or dict)::

    client_regions: [FR, DE, GB]
    pools:
      - name: fr-x86
        region: FR
        hardware: x86            # x86 | arm | gpu | tpu
        pue: 1.2
        capacity_rps: 400
        service_ms: 8            # per-request service time at low load
        rtt_ms: {FR: 2, DE: 12, GB: 10}   # from every client region
        energy:                  # J per inference, per variant served
          int8: {idle_w: 5.0, dynamic_j: 0.0145, source: "CCF x86 coefficients"}      # power model
          fp16: {points: [[200, 0.64], [1000, 0.13]], method: measured, source: "NVML on H200"}
          fp32: 0.06             # a constant, modelled
          "*": 0.02              # any other variant
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routing.queueing import servers_for, wait_quantile_ms
from wattgate.errors import BadRequest, NotFound
from wattgate.yamlfile import read_yaml

__all__ = ["ANY_VARIANT", "AutoscalingSpec", "EnergyCurve", "HARDWARE", "Pool", "Topology", "curve_from_spec", "load_topology"]

HARDWARE = ("x86", "arm", "gpu", "tpu")
# An energy key that stands for every variant the pool has no specific curve for.
ANY_VARIANT = "*"
Method = Literal["measured", "modelled"]


@dataclass(frozen=True)
class EnergyCurve:
    """J per inference as a function of the pool's arrival rate, and how the figure was obtained.

    Either a table of ``(rps, energy_j)`` points, interpolated log-log between points (energy per
    inference falls roughly as a power of the rate while idle power dominates), extrapolated below
    the first point along the first segment and held flat above the last (the dynamic floor); or a
    power model ``idle_w / rps + dynamic_j``, i.e. idle power shared by whatever traffic comes.
    """

    method: Method
    source: str
    points: tuple[tuple[float, float], ...] = ()
    idle_w: float | None = None
    dynamic_j: float | None = None
    _log_rps: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)
    _log_j: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in ("measured", "modelled"):
            raise BadRequest(f"energy curve method must be 'measured' or 'modelled', got {self.method!r}")
        is_model = self.dynamic_j is not None
        if is_model == bool(self.points):
            raise BadRequest("an energy curve is either a table of points or a power model (idle_w, dynamic_j)")
        if is_model:
            if not (self.dynamic_j > 0 and math.isfinite(self.dynamic_j)) or not (
                self.idle_w is not None and 0 <= self.idle_w < math.inf
            ):
                raise BadRequest(f"power model needs idle_w >= 0 and dynamic_j > 0, got {self.idle_w}, {self.dynamic_j}")
            return
        rps = [float(r) for r, _ in self.points]
        joules = [float(j) for _, j in self.points]
        if any(not (r > 0 and math.isfinite(r)) for r in rps) or any(not (j > 0 and math.isfinite(j)) for j in joules):
            raise BadRequest(f"energy curve points need rps > 0 and energy_j > 0, got {list(self.points)}")
        if any(b <= a for a, b in zip(rps, rps[1:])):
            raise BadRequest(f"energy curve points must have strictly increasing rps, got {rps}")
        object.__setattr__(self, "points", tuple(zip(rps, joules)))
        object.__setattr__(self, "_log_rps", tuple(math.log(r) for r in rps))
        object.__setattr__(self, "_log_j", tuple(math.log(j) for j in joules))

    @classmethod
    def from_table(cls, points: Iterable[tuple[float, float]], method: Method = "measured", source: str = "") -> "EnergyCurve":
        return cls(method=method, source=source, points=tuple((float(r), float(j)) for r, j in points))

    @classmethod
    def from_power_model(cls, idle_w: float, dynamic_j: float, source: str = "", method: Method = "modelled") -> "EnergyCurve":
        return cls(method=method, source=source, idle_w=float(idle_w), dynamic_j=float(dynamic_j))

    @classmethod
    def constant(cls, energy_j: float, method: Method = "modelled", source: str = "") -> "EnergyCurve":
        return cls(method=method, source=source, points=((1.0, float(energy_j)),))

    def at(self, rps: float) -> float:
        """J per inference when the pool receives ``rps`` requests per second in total (rps > 0)."""
        if not rps > 0:
            raise ValueError(f"energy per inference is defined for a positive arrival rate, got {rps}")
        if self.dynamic_j is not None:
            return self.idle_w / rps + self.dynamic_j
        xs, ys = self._log_rps, self._log_j
        x = math.log(rps)
        if len(xs) == 1 or x >= xs[-1]:
            return math.exp(ys[-1])
        i = max(1, min(bisect.bisect_right(xs, x), len(xs) - 1))
        slope = (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])
        return math.exp(ys[i - 1] + slope * (x - xs[i - 1]))

    def power_w(self, rps: float) -> float:
        """Power attributed to the pool's traffic at ``rps`` (0 with no traffic)."""
        return rps * self.at(rps) if rps > 0 else 0.0

    def min_j_up_to(self, rps: float) -> float:
        """The lowest J per inference reachable at any rate in (0, rps]."""
        candidates = [self.at(rps)] + [j for r, j in self.points if r <= rps]
        return min(candidates)

    def affine_bound(self, max_rps: float) -> tuple[float, float]:
        """``(idle_w, j_per_request)`` with ``power_w(r) >= idle_w + j_per_request * r`` on (0, max_rps].

        Exact for a power model or a constant; for a table, no idle and the lowest J per inference
        reached up to ``max_rps`` (a valid, looser bound). The oracle optimises against this.
        """
        if self.dynamic_j is not None:
            return self.idle_w, self.dynamic_j
        return 0.0, self.min_j_up_to(max_rps)

    def to_dict(self) -> dict[str, Any]:
        if self.dynamic_j is not None:
            return {"idle_w": self.idle_w, "dynamic_j": self.dynamic_j, "method": self.method, "source": self.source}
        return {"points": [list(p) for p in self.points], "method": self.method, "source": self.source}


@dataclass(frozen=True)
class Pool:
    """Where a request can run: a region, a hardware class, the variants it serves and what they cost."""

    name: str
    region: str
    hardware: str
    energy: Mapping[str, EnergyCurve]
    capacity_rps: float
    service_ms: float
    rtt_ms: Mapping[str, float]
    pue: float = 1.0
    # Carbon-aware autoscaling (routing/autoscale.py ScalingSpec.from_pool), when the pool scales.
    autoscaling: Mapping[str, Any] | None = None
    _servers: int = field(default=1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.hardware not in HARDWARE:
            raise BadRequest(f"pool {self.name}: hardware must be one of {HARDWARE}, got {self.hardware!r}")
        if not self.energy:
            raise BadRequest(f"pool {self.name}: serves no variant (energy is empty)")
        if not (self.capacity_rps > 0 and self.service_ms > 0 and self.pue >= 1.0):
            raise BadRequest(f"pool {self.name}: need capacity_rps > 0, service_ms > 0 and pue >= 1")
        if any(not (v >= 0 and math.isfinite(v)) for v in self.rtt_ms.values()):
            raise BadRequest(f"pool {self.name}: rtt_ms values must be finite and >= 0")
        object.__setattr__(self, "_servers", servers_for(self.capacity_rps, self.service_ms))

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.energy)

    @property
    def servers(self) -> int:
        """Parallel slots of the M/M/c model: ``round(capacity_rps x service_ms / 1000)``."""
        return self._servers

    @property
    def label(self) -> str:
        return f"{self.region}/{self.hardware}"

    def serves(self, variant: str) -> bool:
        return variant in self.energy or ANY_VARIANT in self.energy

    def curve(self, variant: str) -> EnergyCurve:
        """The energy curve for ``variant`` (or the pool's ``"*"`` curve); KeyError if not served."""
        found = self.energy.get(variant) or self.energy.get(ANY_VARIANT)
        if found is None:
            raise KeyError(f"pool {self.name} does not serve variant {variant!r}")
        return found

    def curve_for(self, variant: str | None) -> EnergyCurve:
        """The curve of ``variant`` when the pool serves it, else the pool's first (what sizing and idle defaults use)."""
        return self.curve(variant) if variant and self.serves(variant) else next(iter(self.energy.values()))

    def server_p99_ms(self, load_rps: float) -> float:
        """Queueing p99 plus service time at ``load_rps`` (``inf`` at or beyond capacity)."""
        return wait_quantile_ms(0.99, load_rps, self.capacity_rps, self.service_ms, self._servers) + self.service_ms

    def latency_p99_ms(self, client_region: str, load_rps: float) -> float:
        """RTT from ``client_region`` + queueing p99 + service; ``inf`` if that region cannot reach the pool."""
        rtt = self.rtt_ms.get(client_region)
        return math.inf if rtt is None else rtt + self.server_p99_ms(load_rps)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name, "region": self.region, "hardware": self.hardware, "pue": self.pue,
            "capacity_rps": self.capacity_rps, "service_ms": self.service_ms, "rtt_ms": dict(self.rtt_ms),
            "energy": {v: c.to_dict() for v, c in self.energy.items()},
        }
        if self.autoscaling is not None:
            out["autoscaling"] = dict(self.autoscaling)
        return out


@dataclass(frozen=True)
class Topology:
    """The pools a router may choose from and the client regions requests come from."""

    pools: tuple[Pool, ...]
    client_regions: tuple[str, ...]
    names: tuple[str, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.pools]
        object.__setattr__(self, "names", tuple(names))
        if not names:
            raise BadRequest("topology has no pools")
        if len(set(names)) != len(names):
            raise BadRequest(f"pool names must be unique, got {names}")
        for pool in self.pools:
            missing = [c for c in self.client_regions if c not in pool.rtt_ms]
            if missing:
                raise BadRequest(f"pool {pool.name}: no rtt_ms from client region(s) {missing}")

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise NotFound(f"no pool {name!r} (pools: {[p.name for p in self.pools]})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Topology":
        try:
            spec = _TopologySpec.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(f"invalid topology: {validation_message(exc)}") from exc
        pools = tuple(
            Pool(
                name=p.name, region=p.region, hardware=p.hardware, pue=p.pue, capacity_rps=p.capacity_rps,
                service_ms=p.service_ms, rtt_ms=dict(p.rtt_ms),
                energy={v: curve_from_spec(s, where=f"pool {p.name} variant {v}") for v, s in p.energy.items()},
                autoscaling=p.autoscaling.model_dump(exclude_none=True) if p.autoscaling else None,
            )
            for p in spec.pools
        )
        return cls(pools=pools, client_regions=tuple(spec.client_regions))

    def to_dict(self) -> dict[str, Any]:
        return {"client_regions": list(self.client_regions), "pools": [p.to_dict() for p in self.pools]}


def load_topology(path: str | Path) -> Topology:
    data = read_yaml(path, "topology")
    if not isinstance(data, dict):
        raise BadRequest(f"topology file {path} must hold a mapping")
    return Topology.from_dict(data)


def curve_from_spec(spec: Any, where: str = "energy") -> EnergyCurve:
    """A number (constant, modelled), ``{points: [[rps, J], ...]}`` or ``{idle_w, dynamic_j}``."""
    if isinstance(spec, EnergyCurve):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return EnergyCurve.constant(float(spec), source=f"{where}: constant")
    if not isinstance(spec, Mapping):
        raise BadRequest(f"{where}: energy must be a number, {{points: ...}} or {{idle_w, dynamic_j}}, got {spec!r}")
    allowed = {"points", "idle_w", "dynamic_j", "energy_j", "method", "source"}
    unknown = set(spec) - allowed
    if unknown:
        raise BadRequest(f"{where}: unknown energy field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    source = str(spec.get("source", ""))
    try:
        if "points" in spec:
            points = [(float(r), float(j)) for r, j in spec["points"]]
            return EnergyCurve.from_table(points, method=spec.get("method", "measured"), source=source)
        if "dynamic_j" in spec:
            return EnergyCurve.from_power_model(
                float(spec.get("idle_w", 0.0)), float(spec["dynamic_j"]), source=source, method=spec.get("method", "modelled")
            )
        if "energy_j" in spec:
            return EnergyCurve.constant(float(spec["energy_j"]), method=spec.get("method", "modelled"), source=source)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{where}: malformed energy spec {spec!r}: {exc}") from exc
    raise BadRequest(f"{where}: energy needs 'points', 'dynamic_j' or 'energy_j', got {sorted(spec)}")


class AutoscalingSpec(BaseModel):
    """A pool's ``autoscaling:`` block: replica bounds, delays and the policy's weights."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(0, ge=0, le=256)
    max_replicas: int = Field(1, ge=1, le=256)
    initial_replicas: int | None = Field(None, ge=0, le=256)
    replica_capacity_rps: float | None = Field(None, gt=0)  # default: capacity_rps / max_replicas
    idle_w_per_replica: float | None = Field(None, ge=0)  # default: the curve's idle_w / max_replicas
    startup_s: float = Field(30.0, ge=0, le=3600)
    upscale_delay_s: float = Field(0.0, ge=0, le=3600)
    downscale_delay_s: float = Field(60.0, ge=0, le=86400)
    headroom: float = Field(0.1, ge=0, le=4)

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSpec":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas {self.initial_replicas} outside [{self.min_replicas}, {self.max_replicas}]")
        return self


class _PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    region: str = Field(min_length=1)
    hardware: Literal["x86", "arm", "gpu", "tpu"]
    pue: float = Field(1.0, ge=1.0, le=3.0)
    capacity_rps: float = Field(gt=0)
    service_ms: float = Field(gt=0)
    rtt_ms: dict[str, float]
    energy: dict[str, Any] = Field(min_length=1)
    variants: list[str] | None = None
    autoscaling: AutoscalingSpec | None = None

    @model_validator(mode="after")
    def _variants_match(self) -> "_PoolSpec":
        if self.variants is not None and set(self.variants) != set(self.energy):
            raise ValueError(f"pool {self.name}: variants {self.variants} differ from energy keys {sorted(self.energy)}")
        return self


class _TopologySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_regions: list[str] = Field(min_length=1)
    pools: list[_PoolSpec] = Field(min_length=1)


def validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
