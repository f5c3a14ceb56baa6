"""A hit whose stored bytes are unchanged reuses the tensors decoded last time; anything else decodes."""

from __future__ import annotations

import numpy as np
import pytest

import cache.service as service
from cache.service import DecodedValues
from cache.values import encode_outputs
from wattgate.errors import CacheUnavailable
from wattgate.tensors import Tensor


def _value(x: float) -> bytes:
    return encode_outputs([Tensor.from_numpy("y", np.array([[x, 2 * x]], dtype=np.float32))])


def test_unchanged_bytes_are_decoded_once_and_changed_bytes_again(monkeypatch):
    calls = []
    real = service.decode_outputs
    monkeypatch.setattr(service, "decode_outputs", lambda raw: calls.append(raw) or real(raw))
    memo = DecodedValues()
    a = _value(1.0)
    first = memo.decode("k", a)
    again = memo.decode("k", bytes(a))  # equal bytes from another read (Redis returns a new object)
    assert len(calls) == 1 and np.array_equal(first[0].data, again[0].data) and first is not again
    changed = memo.decode("k", _value(3.0))
    assert len(calls) == 2 and changed[0].data.tolist() == [[3.0, 6.0]]


def test_a_corrupt_value_raises_and_is_not_kept():
    memo = DecodedValues()
    with pytest.raises(CacheUnavailable):
        memo.decode("k", b"not a cache value")
    assert len(memo) == 0


def test_bounded_by_entries_and_bytes():
    memo = DecodedValues(max_entries=3, max_bytes=10_000)
    for i in range(5):
        memo.decode(f"k{i}", _value(float(i)))
    assert len(memo) == 3 and list(memo._entries) == ["k2", "k3", "k4"]
    small = DecodedValues(max_entries=100, max_bytes=len(_value(1.0)) * 2)
    for i in range(5):
        small.decode(f"k{i}", _value(float(i)))
    assert len(small) == 2 and small._bytes <= small.max_bytes
