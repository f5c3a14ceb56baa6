import pytest

from optimizers.metering import RunRecord, metered
from optimizers.stepcache import StepCache, content_hash


def test_a_finished_step_is_not_run_again(tmp_path):
    cache, calls = StepCache(tmp_path), []

    def fn(out):
        calls.append(out)
        (out / "model.bin").write_bytes(b"x")
        return {"n": 1}

    d1, r1 = cache.run("step", {"a": 1}, fn)
    d2, r2 = cache.run("step", {"a": 1}, fn)
    assert len(calls) == 1 and d1 == d2 and r1 == r2 == {"n": 1}
    assert (d1 / "model.bin").read_bytes() == b"x"
    assert cache.misses == ["step"] and cache.hits == ["step"]
    cache.run("step", {"a": 2}, fn)
    assert len(calls) == 2


def test_files_count_by_content_not_by_name(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(b"one")
    h1 = content_hash({"model": f})
    f.write_bytes(b"two")
    assert content_hash({"model": f}) != h1
    g = tmp_path / "other.bin"
    g.write_bytes(b"two")
    assert content_hash({"model": g}) == content_hash({"model": f})


def test_a_crashed_step_reruns_in_the_same_partial_dir(tmp_path):
    cache, seen = StepCache(tmp_path), []

    def crash(out):
        seen.append(out)
        (out / "checkpoint").write_text("epoch 3")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.run("train", {"x": 1}, crash)
    _, res = cache.run("train", {"x": 1}, lambda out: {"resumed": (out / "checkpoint").read_text()})
    assert res == {"resumed": "epoch 3"} and seen[0].name.endswith(".partial")


class _FakeMeter:
    method, measured = "cpu-time-model", False

    def __init__(self):
        self.open = {}

    def begin_window(self, name):
        self.open[name] = True

    def end_window(self, name):
        self.open.pop(name)
        return RunRecord("x", energy_j=12.5, duration_s=2.0, method="cpu-time-model", measured=False)


def test_metered_fills_the_record_from_the_meter_even_on_error():
    meter = _FakeMeter()
    with pytest.raises(ZeroDivisionError):
        with metered(meter, "step", seed=3) as rec:
            1 / 0
    assert rec.energy_j == 12.5 and rec.duration_s == 2.0 and not meter.open
    d = rec.to_dict()
    assert d["method"] == "cpu-time-model" and d["measured"] is False and d["details"] == {"seed": 3} and d["hardware"]


def test_the_real_meter_charges_cpu_work():
    from optimizers.metering import make_run_meter

    with metered(make_run_meter(), "busy") as rec:
        sum(i * i for i in range(300_000))
    assert rec.method == "cpu-time-model" and rec.measured is False
    assert rec.energy_j > 0 and rec.cpu_s > 0
