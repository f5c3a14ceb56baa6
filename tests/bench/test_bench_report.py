"""Bench cells without a run: modelled energy from CPU time, ratios to the references, the text target, the table and plot."""

from __future__ import annotations

import pytest

from bench.report import Cell, add_ratios, finish, modelled_energy_j, render_table as bench_table, text_target
from loadtests.plots import plot_bench


def test_modelled_energy_uses_ccf_x86_coefficients():
    assert modelled_energy_j(cpu_s=0.0, window_s=10.0, vcpus=2) == pytest.approx(2 * 10 * 0.74)
    assert modelled_energy_j(cpu_s=4.0, window_s=10.0, vcpus=2) == pytest.approx(14.8 + 4 * (3.5 - 0.74))
    c = finish(Cell("digits", "x", "x", 8), ok_requests=2000, window_s=10.0, cpu_s=4.0, vcpus=2)
    assert c.requests_per_s == 200 and c.cpu_s_per_1k == 2.0 and c.j_per_1k_modelled == pytest.approx(1000 * 25.84 / 2000)


def test_ratios_compare_to_the_reference_at_the_same_cell(tmp_path):
    cells = [finish(Cell("digits", s, s, c), n, 10.0, cpu, 2) for s, c, n, cpu in (
        ("rayserve-haproxy", 8, 1000, 1.0), ("triton", 8, 2000, 1.0), ("wattgate", 8, 500, 1.0), ("wattgate", 32, 900, 1.0))]
    cells.append(Cell("digits", "triton", "t", 32, skipped="no venv"))
    add_ratios(cells)
    w8 = cells[2]
    assert w8.ratios["rps_x_rayserve_haproxy"] == pytest.approx(0.5) and w8.ratios["rps_x_triton"] == pytest.approx(0.25)
    assert w8.ratios["j_per_1k_x_triton"] == pytest.approx(4.0)
    assert cells[3].ratios == {}  # no reference ran at concurrency 32
    assert "rps_x_rayserve_haproxy" not in cells[0].ratios
    table = bench_table(cells, "test machine")
    assert "skipped triton / digits: no venv" in table and "0.50" in table
    assert plot_bench([c.to_dict() for c in cells], tmp_path / "b.png").stat().st_size > 10_000


def test_grpc_cells_are_compared_with_tritons_grpc_and_http_cells_are_not():
    cells = [finish(Cell("digits", s, s, 32), n, 10.0, 1.0, 2) for s, n in (
        ("triton", 3000), ("triton-grpc", 4000), ("wattgate", 2000), ("wattgate-grpc", 5000))]
    add_ratios(cells)
    assert cells[3].ratios["rps_x_triton_grpc"] == pytest.approx(1.25)
    assert "rps_x_triton_grpc" not in cells[2].ratios and "rps_x_triton_grpc" not in cells[1].ratios
    assert "rps xTritonGRPC" in bench_table(cells, "test machine") and "1.25" in bench_table(cells, "test machine")


def test_text_target_divides_wattgate_int8_by_naive_fp32_at_each_concurrency():
    cells = [finish(Cell(m, s, s, c), n, 10.0, 1.0, 2) for m, s, c, n in (
        ("minilm:fp32", "rayserve-haproxy", 8, 1500), ("minilm:int8", "rayserve-haproxy", 8, 3000),
        ("minilm:int8", "wattgate", 8, 4500), ("minilm:int8", "wattgate", 32, 5000), ("minilm:fp32", "wattgate", 8, 2000))]
    assert text_target(cells) == {8: pytest.approx(3.0)}  # not against the int8 peer; no naive cell at 32


def test_grpc_cells_are_also_compared_with_plain_serves_grpc():
    cells = [finish(Cell("digits", s, s, 32), n, 10.0, 1.0, 2) for s, n in (
        ("rayserve-haproxy", 3000), ("rayserve-grpc", 2000), ("triton-grpc", 4000), ("wattgate-grpc", 1000))]
    add_ratios(cells)
    assert cells[3].ratios["rps_x_rayserve_grpc"] == pytest.approx(0.5)
    assert cells[3].ratios["rps_x_triton_grpc"] == pytest.approx(0.25)
    assert cells[2].ratios["rps_x_rayserve_grpc"] == pytest.approx(2.0)
    assert "rps_x_rayserve_grpc" not in cells[0].ratios  # HTTP is not compared with gRPC
    assert "rps xRayGRPC" in bench_table(cells, "test machine")
