"""Trace loading (plain and Electricity Maps CSVs, both header variants) and step-hold lookup."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from routing.intensity.traces import Trace, load_trace, parse_utc

UTC = timezone.utc
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_trace_step_holds_and_clamps(tmp_path):
    path = write(
        tmp_path,
        "DE_small.csv",
        "datetime_utc,carbon_intensity_g_per_kwh\n"
        "2020-01-01T00:30:00Z,300\n2020-01-01T00:00:00Z,100\n2020-01-01T00:15:00Z,200\n",
    )
    trace = load_trace(path)
    assert trace.region == "DE" and len(trace) == 3  # region from the file name; rows sorted
    assert trace.times == (T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=30))
    assert trace.at(T0 - timedelta(days=1)) == 100.0  # clamp before the start
    assert trace.at(T0) == 100.0
    assert trace.at(T0 + timedelta(minutes=14, seconds=59)) == 100.0  # step-hold, no interpolation
    assert trace.at(T0 + timedelta(minutes=15)) == 200.0
    assert trace.at(T0 + timedelta(days=9)) == 300.0  # clamp after the end
    with pytest.raises(ValueError, match="naive"):
        trace.at(datetime(2020, 1, 1))


def test_window_and_time_weighted_mean():
    trace = Trace.from_points([(T0 + timedelta(minutes=15 * i), v) for i, v in enumerate([100, 200, 300, 400])])
    window = trace.window(T0 + timedelta(minutes=20), T0 + timedelta(minutes=45))
    assert window.intensity_g_per_kwh == (200.0, 300.0)  # the value in force at the start, then samples < end
    assert trace.window(T0, T0 + timedelta(minutes=15)).intensity_g_per_kwh == (100.0,)
    mean = trace.mean_g_per_kwh(T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert mean == pytest.approx(150.0)


def test_vectorised_lookup_matches_scalar():
    trace = Trace.from_points([(T0 + timedelta(minutes=30 * i), float(i)) for i in range(10)])
    probes = [T0 - timedelta(hours=1)] + [T0 + timedelta(minutes=7 * k) for k in range(50)]
    vec = trace.at_epoch_s(np.array([p.timestamp() for p in probes]))
    assert list(vec) == [trace.at(p) for p in probes]


@pytest.mark.parametrize(
    "header",
    ["Carbon Intensity gCO₂eq/kWh (LCA)", "Carbon intensity gCO₂eq/kWh (Life cycle)"],
)
def test_electricity_maps_dataset_variants(tmp_path, header):
    direct = header.replace("(LCA)", "(direct)").replace("(Life cycle)", "(direct)")
    text = (
        "\ufeff"  # the downloads carry a UTF-8 byte-order mark
        f"Datetime (UTC),Country,Zone Name,Zone Id,{direct},{header},Data Source,Data Estimated\n"
        "2023-01-01 00:00:00,France,France,FR,20.1,45.5,entsoe.eu,false\n"
        "2023-01-01 01:00:00,France,France,FR,21.0,,entsoe.eu,true\n"  # missing value: skipped
        "2023-01-01 02:00:00,France,France,FR,22.2,47.25,entsoe.eu,false\n"
    )
    trace = load_trace(write(tmp_path, "FR_2023_hourly.csv", text))
    assert trace.region == "FR"
    assert trace.intensity_g_per_kwh == (45.5, 47.25)  # the LCA column, never the direct one
    assert trace.times[1] == datetime(2023, 1, 1, 2, tzinfo=UTC)
    assert trace.at(datetime(2023, 1, 1, 1, 30, tzinfo=UTC)) == 45.5


def test_unknown_header_and_bad_rows_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match="unrecognised trace header"):
        load_trace(write(tmp_path, "x.csv", "time,value\n2020-01-01T00:00:00Z,1\n"))
    with pytest.raises(ValueError, match=r"x2.csv:3"):
        load_trace(write(tmp_path, "x2.csv", "datetime_utc,carbon_intensity_g_per_kwh\n2020-01-01T00:00Z,1\nnot-a-date,2\n"))
    with pytest.raises(ValueError, match="no samples"):
        load_trace(write(tmp_path, "x3.csv", "datetime_utc,carbon_intensity_g_per_kwh\n"))


def _small_generated(tmp_path, region: str) -> "Trace":
    lines = ["datetime_utc,carbon_intensity_g_per_kwh"]
    lines += [f"{(T0 + timedelta(minutes=30 * i)).isoformat()},{100 + (i % 48)}" for i in range(48 * 7)]
    return load_trace(write(tmp_path, f"{region}_gen.csv", "\n".join(lines) + "\n"))


@pytest.mark.parametrize("region,lo,hi", [("DE", 108, 582), ("GB", 64, 392), ("FR", 19, 96)])
def test_real_2020_traces(grid_data, tmp_path, region, lo, hi):
    path = grid_data / f"{region}_2020H1.csv"
    if not path.exists():
        trace = _small_generated(tmp_path, region)  # shared data missing: still exercise the loader
        assert len(trace) == 48 * 7 and trace.at(T0 + timedelta(minutes=45)) == 101.0
        return
    trace = load_trace(path)
    step = timedelta(minutes=15 if region == "DE" else 30)
    assert trace.region == region and trace.start == T0
    assert trace.end == datetime(2020, 7, 1, tzinfo=UTC) - step
    assert lo - 1 <= min(trace.intensity_g_per_kwh) and max(trace.intensity_g_per_kwh) <= hi + 1
    assert trace.at(parse_utc("2020-01-01T00:00:00Z")) == trace.intensity_g_per_kwh[0]
    week = trace.window(T0, T0 + timedelta(days=7))
    assert len(week) == 7 * 24 * 3600 // int(step.total_seconds())
