"""Quality-guard exclusions shared across ingress replicas through the control board (the board's
plain class, no Ray): both directions, last writer wins, a new replica starts from the board."""

from __future__ import annotations

import asyncio
import json

from gateway.replica_sync import ControlBoard
from routing.exclusions import VariantExclusions


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sync(board: ControlBoard, *replicas: VariantExclusions) -> list[list[tuple[str, str]]]:
    """One round of every replica's sync loop: post what is unposted, adopt the view."""
    return [r.adopt(board.sync_exclusions(r.unposted())) for r in replicas]


def test_an_exclusion_reaches_the_other_replica_and_an_operator_re_enable_comes_back():
    board, clock = ControlBoard(), Clock(100.0)
    a, b = VariantExclusions(clock=clock), VariantExclusions(clock=clock)
    a.exclude("digits", "int8", "fp32", "top1_agreement 0.1 below the card's floor 0.95")
    assert b.substitute("digits", "int8")[0] == "int8", "not before a sync"
    sync(board, a, b)
    assert b.substitute("digits", "int8")[0] == "fp32" and b.is_excluded("digits", "int8")
    assert b.show()["excluded"] == a.show()["excluded"]
    assert a.unposted() == [] and b.unposted() == [], "the board confirmed the event: not posted again"

    clock.t = 200.0
    assert b.enable("digits", "int8", actor="alice", reason="new file")  # the operator hit replica b
    assert sync(board, b, a) == [[], [("digits", "int8")]], "a learns it was re-enabled (its window restarts)"
    assert not a.is_excluded("digits", "int8")
    for r in (a, b):  # the admin GET on either shows the same merged trail
        assert [(h["action"], h["actor"]) for h in r.show()["history"]] == [("excluded", "quality-guard"), ("enabled", "alice")]


def event(action: str, at_s: float, reason: str = "", actor: str = "quality-guard") -> dict:
    return {"id": f"{action}-{at_s}", "action": action, "model": "m", "variant": "int8", "instead": "fp32",
            "reason": reason, "actor": actor, "at_s": at_s}


def test_last_writer_wins_by_timestamp_and_a_late_stale_exclusion_does_not_undo_a_re_enable():
    board, replica = ControlBoard(), VariantExclusions()
    board.sync_exclusions([event("excluded", 100.0, "bad")])
    replica.adopt(board.sync_exclusions([event("enabled", 200.0, actor="ops")]))
    assert not replica.is_excluded("m", "int8")
    # Another replica's guard decided at t=150 but could only post now: older than the re-enable.
    view = board.sync_exclusions([event("excluded", 150.0, "bad again")])
    assert [e["action"] for e in view["latest"]] == ["enabled"]
    replica.adopt(view)
    assert not replica.is_excluded("m", "int8")
    assert [e["at_s"] for e in view["history"]] == [100.0, 150.0, 200.0], "the trail keeps every event, in time order"
    # A newer exclusion wins over that re-enable; posting the same event twice changes nothing.
    board.sync_exclusions([event("excluded", 300.0, "bad once more")])
    view = board.sync_exclusions([event("excluded", 300.0, "bad once more")])
    replica.adopt(view)
    assert replica.is_excluded("m", "int8") and replica.show()["excluded"][0]["reason"] == "bad once more"
    assert len(view["history"]) == 4


def test_at_equal_times_the_operator_re_enable_beats_the_exclusion():
    for order in ([event("excluded", 50.0), event("enabled", 50.0, actor="ops")],
                  [event("enabled", 50.0, actor="ops"), event("excluded", 50.0)]):
        board, replica = ControlBoard(), VariantExclusions()
        board.sync_exclusions(order[:1])
        view = board.sync_exclusions(order[1:])
        assert [e["action"] for e in view["latest"]] == ["enabled"]
        replica.adopt(view)
        assert not replica.is_excluded("m", "int8")


def test_a_new_replica_starts_from_the_board_and_an_unconfirmed_change_is_posted_again():
    board = ControlBoard()
    a = VariantExclusions(clock=Clock(10.0))
    a.exclude("m", "int8", "fp32", "bad")
    # The board was unreachable: the view a got back does not hold the event, so a keeps it to post.
    a.adopt({"latest": [], "history": []})
    assert len(a.unposted()) == 1 and a.is_excluded("m", "int8"), "the board's silence undoes nothing"
    sync(board, a)
    fresh = VariantExclusions()  # a replica started after the decision (or restarted)
    sync(board, fresh)
    assert fresh.substitute("m", "int8")[0] == "fp32"
    assert [h["reason"] for h in fresh.show()["history"]] == ["bad"]


def test_two_data_planes_share_the_guard_decision_and_the_re_enable(make_plane, guarded_repository, pixels):
    """Two replicas' real data planes and one board: b never samples int8, yet stops serving it; an
    operator's re-enable on b restarts a's window (else a would exclude it again on its next sample)."""
    sections = dict(models={"repository": str(guarded_repository),
                            "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.001}},
                    cache={"enabled": False},
                    quality_guard={"enabled": True, "sample_rate": 1.0, "min_rows": 8, "action": "exclude"})
    a, b = make_plane(**sections), make_plane(**sections)
    board = ControlBoard()

    def body(i: int) -> bytes:
        x = pixels[4 * i:4 * i + 4]
        return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape),
                                       "data": x.reshape(-1).tolist()}]}).encode()

    async def serve(plane, i: int) -> str:
        out, _ = await plane.dataplane.infer("digits", None, body(i), {})
        await plane.guard.join()
        return json.loads(out)["parameters"]["variant"]

    async def run():
        assert [await serve(a, i) for i in range(3)] == ["int8", "int8", "fp32"]  # a's guard trips on its 2nd sample
        assert await serve(b, 0) == "int8", "b has not heard yet"
        for plane in (a, b):
            plane.guard.adopt_exclusions(board.sync_exclusions(plane.guard.unposted_exclusions()))
        assert [await serve(b, i) for i in range(3)] == ["fp32"] * 3
        assert b.guard.samples.value(model="digits", variant="int8", outcome="compared") == 1, "b decided nothing itself"
        assert b.guard.enable("digits", "int8", actor="ops", reason="fixed")
        for plane in (b, a):
            plane.guard.adopt_exclusions(board.sync_exclusions(plane.guard.unposted_exclusions()))
        assert a.guard.live_value(a.host.resolve("digits", None), "int8") is None, "a's window restarted"
        assert await serve(a, 3) == "int8", "one more bad sample on a is below min_rows: no instant re-exclusion"
        assert not a.exclusions.is_excluded("digits", "int8")

    asyncio.run(run())
    a.snapshot()
    assert a.guard.excluded.value(model="digits", variant="int8") == 0.0
