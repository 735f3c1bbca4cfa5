"""Sources: the layout is detected or named, the build knows it only through its plan, and an
option only another layout reads is refused instead of ignored."""
import pytest
from click.testing import CliRunner

from h36m_prep.cli import main as h36m_prep
from h36m_prep.config import BuildConfig
from h36m_prep.errors import ConfigError
from h36m_prep.sources import SOURCES, H36M, Rig, source_for


def test_the_layout_is_detected_and_its_plan_says_what_the_build_needs(small_raw, small_cfg):
    source = source_for(small_raw)
    assert isinstance(source, H36M)
    plan = source.plan(small_raw, BuildConfig())
    assert plan.layout == "h36m" and plan.poses and plan.calibrated and plan.fps == 50
    assert len(plan.sequences) == len(small_cfg.subjects) * len(small_cfg.actions)
    assert len(plan.units) == 4 * len(plan.sequences) and plan.units[-1]["start"] + plan.units[-1]["length"] == sum(
        u["length"] for u in plan.units)
    pose = source.load_poses(plan.takes[0].poses_path)
    assert pose.shape == (small_cfg.frames, 17, 3)
    assert isinstance(source_for(small_raw, "rig"), Rig) and set(SOURCES) == {"h36m", "rig"}


def test_an_option_of_another_layout_is_refused(small_raw, tmp_path):
    with pytest.raises(ConfigError, match="--test-takes"):
        source_for(small_raw, cfg=BuildConfig(test_takes=("walking",)))
    with pytest.raises(ConfigError, match="--layout"):
        source_for(small_raw, "vicon")
    r = CliRunner().invoke(h36m_prep, ["build", str(small_raw), str(tmp_path / "s.zarr"), "--calib-units", "mm"])
    assert r.exit_code == 2 and "--calib-units" in r.output and "h36m layout" in r.output
    assert not (tmp_path / "s.zarr").exists()  # refused before anything is written
    # and the other way: a Human3.6M-only option on a rig
    rig = tmp_path / "rig"
    for take in ("t1", "t2"):
        (rig / take).mkdir(parents=True)
        for cam in ("a", "b"):
            (rig / take / f"{cam}.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="read as the rig layout, which does not use --keep-damaged"):
        source_for(rig, cfg=BuildConfig(keep_damaged=True))
