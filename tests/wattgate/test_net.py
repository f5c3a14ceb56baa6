"""Loopback port helpers: a reserved port (one another process chose for this one) is never handed out."""

from wattgate import net


def _free_window(size: int, low: int = 29_000) -> int:
    while not all(net._is_free(p) for p in range(low, low + size)):
        low += size
    return low


def test_reserved_ports_are_never_handed_out_while_they_are_still_free(monkeypatch):
    low = _free_window(8)
    for _ in range(20):  # random draws: without the reservation most of these would start below low + 6
        monkeypatch.setattr(net, "_given", set())
        net.reserve(*range(low, low + 6), None, 0)
        assert net.free_port_range(2, low=low, high=low + 8) == low + 6
    assert all(net._is_free(p) for p in range(low, low + 6))  # still unbound, yet not given


def test_reserve_ignores_none_and_zero(monkeypatch):
    monkeypatch.setattr(net, "_given", set())
    net.reserve(None, 0)
    assert net._given == set()
