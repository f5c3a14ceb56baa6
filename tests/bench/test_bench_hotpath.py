"""bench.hotpath runs the data plane in-process and counts its cost per request."""

from __future__ import annotations

import json

from bench import hotpath


def test_hotpath_measures_both_cases_and_writes_json(digits_repository, tmp_path, capsys):
    assert hotpath.main(["--repository", str(digits_repository), "--requests", "64", "--concurrency", "8",
                         "--rounds", "1", "--results-dir", str(tmp_path), "--profile", "5"]) == 0
    out = capsys.readouterr().out
    assert "cache-off" in out and "cache-hit" in out and "grpc" in out and "top functions by own time" in out
    (written,) = tmp_path.glob("hotpath-*.json")
    cells = {c["case"]: c for c in json.loads(written.read_text())["cells"]}
    assert set(cells) == {"cache-off", "cache-hit", "grpc"}  # a failed gRPC call raises out of main()
    for c in cells.values():
        assert c["cpu_us_per_request_best"] > 0 and c["python_calls_per_request"] > 50
    # A hit skips the model and, with the body memo, the parse: fewer Python calls than a miss's parse + run.
    assert cells["cache-hit"]["python_calls_per_request"] < 2 * cells["cache-off"]["python_calls_per_request"]
