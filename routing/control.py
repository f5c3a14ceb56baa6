"""The active routing policy and its parameters: read and changed at run time, validated, with history."""

from __future__ import annotations

import copy
import json
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from routing.policies import RoutingPolicy, make_policy, policy_names
from wattgate.errors import BadRequest

__all__ = ["RoutingControl"]

DEFAULT_HISTORY_LEN = 100


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _validated(policy: Any, params: Any) -> tuple[str, dict[str, Any], RoutingPolicy]:
    if not isinstance(policy, str) or not policy:
        raise BadRequest(f"policy must be a non-empty string, one of {policy_names()}; got {policy!r}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise BadRequest(f"params must be an object such as {{'weights': {{'carbon': 1}}}}, got {params!r}")
    try:
        # Params travel as JSON (admin API, state file), so anything else is refused here, not later.
        params = json.loads(json.dumps(dict(params), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"params must be plain JSON values: {exc}") from None
    return policy, params, make_policy(policy, **params)


class RoutingControl:
    """Holds the active policy name + params; ``set`` validates by building the policy first.

    Thread-safe; ``to_dict``/``from_dict`` let the gateway keep it in a Ray actor or a file.
    ``version`` increases on every change so replicas can poll cheaply for a new policy.
    """

    def __init__(
        self,
        policy: str = "lowest-carbon",
        params: Mapping[str, Any] | None = None,
        history_len: int = DEFAULT_HISTORY_LEN,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not isinstance(history_len, int) or history_len < 1:
            raise BadRequest(f"history_len must be a positive integer, got {history_len!r}")
        self._policy, self._params, self._active = _validated(policy, params)
        self._clock = clock
        self._lock = threading.Lock()
        self._history: deque[dict[str, Any]] = deque(maxlen=history_len)
        self._version = 0
        self._changed_at: str | None = None

    @property
    def policy(self) -> RoutingPolicy:
        """The active policy object (rebuilt only when ``set`` succeeds)."""
        return self._active

    @property
    def version(self) -> int:
        return self._version

    def show(self) -> dict[str, Any]:
        with self._lock:
            return {
                "policy": self._policy,
                "params": copy.deepcopy(self._params),
                "effective_params": self._active.params(),
                "version": self._version,
                "changed_at": self._changed_at,
                "known_policies": policy_names(),
                "history": list(copy.deepcopy(self._history)),
            }

    def set(self, policy: str, params: Mapping[str, Any] | None = None, actor: str = "unknown") -> dict[str, Any]:
        """Switch to ``policy`` with ``params`` (replacing the old params); BadRequest if invalid."""
        if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
            raise BadRequest("actor must be a non-empty string of at most 128 characters")
        name, clean, active = _validated(policy, params)
        with self._lock:
            at = self._clock().astimezone(timezone.utc).isoformat()
            self._history.append(
                {
                    "at": at,
                    "actor": actor,
                    "policy": name,
                    "params": copy.deepcopy(clean),
                    "previous": {"policy": self._policy, "params": copy.deepcopy(self._params)},
                }
            )
            self._policy, self._params, self._active = name, clean, active
            self._version += 1
            self._changed_at = at
        return self.show()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "policy": self._policy,
                "params": copy.deepcopy(self._params),
                "version": self._version,
                "changed_at": self._changed_at,
                "history_len": self._history.maxlen,
                "history": list(copy.deepcopy(self._history)),
            }

    def adopt(self, data: Mapping[str, Any]) -> bool:
        """Take another replica's state if it is newer than ours; True if anything changed."""
        other = RoutingControl.from_dict(data, clock=self._clock)
        with self._lock:
            if other._version <= self._version:
                return False
            self._policy, self._params, self._active = other._policy, other._params, other._active
            self._history, self._version, self._changed_at = other._history, other._version, other._changed_at
        return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], clock: Callable[[], datetime] = _utcnow) -> "RoutingControl":
        if not isinstance(data, Mapping) or "policy" not in data:
            raise BadRequest("routing control state must be an object with at least 'policy'")
        ctl = cls(
            data["policy"], data.get("params"), int(data.get("history_len", DEFAULT_HISTORY_LEN)), clock=clock
        )
        history = data.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
            raise BadRequest("routing control history must be a list of objects")
        ctl._history.extend(dict(h) for h in history)
        ctl._version = int(data.get("version", 0))
        ctl._changed_at = data.get("changed_at")
        return ctl
