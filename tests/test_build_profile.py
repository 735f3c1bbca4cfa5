"""benchmarks/build_profile.py: a profiled build's time is put into its stages."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import build_profile  # noqa: E402


def test_built_in_and_python_functions_fall_into_their_stages():
    assert build_profile.stage_of("~", "<method 'read' of 'cv2.VideoCapture' objects>") == "decode"
    assert build_profile.stage_of("~", "<built-in method posix.mkdir>") == "file system"
    assert build_profile.stage_of("~", "<remap>") == "remaps"
    assert build_profile.stage_of("/x/h36m_prep/background.py", "_vote") == "median vote"
    assert build_profile.stage_of("/x/h36m_prep/geometry/virtual.py", "_sampling_map").startswith("crop geometry")
    assert build_profile.stage_of("/x/h36m_prep/plan.py", "plan").startswith("the rest")


def test_a_profiled_build_spends_time_decoding_voting_and_writing(small_raw, tmp_path):
    seconds, stages = build_profile.profile(small_raw, tmp_path / "store.zarr")
    assert (tmp_path / "store.zarr" / "zarr.json").exists()
    for stage in ("decode", "median vote", "remaps", "file system"):
        assert stages[stage] > 0, stage
    assert 0.5 * seconds < sum(stages.values()) <= 1.05 * seconds  # own times add up to the run
