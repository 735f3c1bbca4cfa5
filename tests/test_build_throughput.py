"""benchmarks/build_throughput.py: the per-frame work an exact build cannot skip."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import build_throughput  # noqa: E402


def test_the_floor_times_the_operations_that_wrote_the_store(small_raw, small_store):
    """The operations the floor times write the store's own chunk files, byte for byte: the
    crops through the stored crop cameras, the masks against the stored median; so the ceiling
    it derives is one for a build of this very store."""
    floor = build_throughput.exact_floor(small_raw, small_store, decode_fps=1000.0, workers=1, rows=12)
    assert floor["chunks_equal_store"]
    assert floor["frames"] == 12
    assert all(ms > 0 for ms in floor["ms_per_frame"].values())
    assert floor["floor_ms"] == sum(floor["ms_per_frame"].values())
    assert floor["ceiling_ratio"] == floor["decode_ms_per_core"] / (floor["decode_ms_per_core"] + floor["floor_ms"])
    assert floor["decode_ms_per_core"] == 1.0


def test_repeated_runs_each_build_anew_and_the_median_run_is_reported(small_raw, tmp_path):
    result = build_throughput.measure(small_raw, ("S1",), 1, tmp_path / "store.zarr", repeats=2)
    runs = result["runs"]
    assert len(runs) == 2
    assert all(r["build"]["frames"] == runs[0]["build"]["frames"] > 0 for r in runs)  # a resumed build writes 0
    assert all(r["exact_floor"]["chunks_equal_store"] for r in runs)
    ratios = sorted(r["ratio_build_over_decode"] for r in runs)
    assert result["ratio_build_over_decode"] == ratios[0]  # of two runs, the lower middle one
    assert result["build"] in [r["build"] for r in runs]


def test_long_views_build_medians_first_and_report_the_units_rate(small_raw, tmp_path):
    result = build_throughput.measure(small_raw, ("S1",), 1, tmp_path / "store.zarr", long_views=True)
    stages = result["build"]["stage_seconds"]
    assert "views" not in stages and stages["medians"] > 0 and stages["units"] > 0  # short takes, built as long ones
    assert result["units_ratio"] > result["ratio_build_over_decode"]  # the medians' time left out
    assert result["exact_floor"]["chunks_equal_store"]
    plain = build_throughput.measure(small_raw, ("S1",), 1, tmp_path / "plain.zarr")
    assert "views" in plain["build"]["stage_seconds"] and "units_ratio" not in plain
