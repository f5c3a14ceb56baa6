
import numpy as np

from optimizers.profile import energy_per_inference, matmul_flops_per_token, measure_batch, profile_variant
from optimizers.settings import ProfileSettings

FAST = ProfileSettings(batch_sizes=(1, 8), min_calls=2, min_time_s=0.01, warmup_calls=1)


def _inputs(batch):
    return {"pixels": np.ones((batch, 64), np.float32)}


def test_profile_has_the_documented_format_and_labels_its_method(tiny_mlp):
    profile = profile_variant(tiny_mlp[0], _inputs, FAST)
    x86 = profile["x86"]
    assert x86["method"] == "cpu-time-model" and x86["measured"] is False and x86["threads"] == 1
    assert set(x86["batches"]) == {"1", "8"}
    for row in x86["batches"].values():
        assert row["latency_ms"] > 0 and row["cpu_s_per_inference"] > 0 and row["energy_j_per_inference"] > 0
    for cls in ("arm", "gpu"):
        assert profile[cls]["method"] == "modelled" and profile[cls]["measured"] is False and profile[cls]["basis"]
    # Graviton's CCF watts are below the x86 average, with the same CPU-seconds assumed.
    assert profile["arm"]["batches"]["8"]["energy_j_per_inference"] < x86["batches"]["8"]["energy_j_per_inference"]


def test_batching_amortises_per_call_overhead(tiny_mlp):
    profile = profile_variant(tiny_mlp[0], _inputs, ProfileSettings(batch_sizes=(1, 64), min_time_s=0.05))
    rows = profile["x86"]["batches"]
    assert rows["64"]["cpu_s_per_inference"] < rows["1"]["cpu_s_per_inference"]


def test_a_gpu_only_variant_gets_only_the_modelled_gpu_entry(tiny_mlp):
    profile = profile_variant(tiny_mlp[0], _inputs, FAST, hardware=("gpu",))
    assert set(profile) == {"gpu"} and profile["gpu"]["method"] == "modelled"


def test_flops_count_the_weight_matrices(tiny_mlp):
    assert matmul_flops_per_token(tiny_mlp[0]) == 2 * (64 * 16 + 16 * 8 + 8 * 10)


def test_energy_per_inference_falls_back_to_the_nearest_batch(tiny_mlp):
    profile = {"x86": {"batches": {"1": {"energy_j_per_inference": 2.0}, "8": {"energy_j_per_inference": 0.5}}}}
    assert energy_per_inference(profile, "x86", 8) == 0.5
    assert energy_per_inference(profile, "x86", 6) == 0.5
    assert energy_per_inference(profile, "x86", 2) == 2.0


def test_measure_batch_times_one_batch(tiny_mlp):
    row = measure_batch(tiny_mlp[0], _inputs(4), FAST)
    assert row["calls"] >= 2 and row["throughput_per_s"] > 0
