"""The raw reader on the Human3.6M layout, and its clear errors on bad input."""
import shutil

import numpy as np
import pytest

from h36m_prep import raw as R
from h36m_prep.geometry import CAMERA_IDS, joints17
from h36m_prep.synth.dataset import sequence_motion, write_cdf


def test_action_names_as_the_dataset_spells_them():
    assert R.parse_action("Walking 1") == ("Walking", "1")
    assert R.parse_action("TakingPhoto") == ("Photo", "")
    assert R.parse_action("Photo 1") == ("Photo", "1")
    assert R.parse_action("WalkingDog 1") == ("WalkDog", "1")
    assert R.parse_action("SittingDown") == ("SittingDown", "")


def test_reader_finds_every_sequence_synth_wrote(small_raw, small_cfg):
    seqs = R.discover(small_raw)
    assert [s.key for s in seqs] == [f"{s}/{a}" for s in small_cfg.subjects for a in sorted(small_cfg.actions)]
    for s in seqs:
        assert tuple(s.videos) == CAMERA_IDS
        assert R.sequence_length(s) == small_cfg.frames


def test_poses_read_back_equal_the_ones_synth_used(small_raw, small_cfg):
    for s in R.discover(small_raw):
        pose32 = R.read_poses(s.poses_path)
        assert pose32.shape == (small_cfg.frames, 32, 3) and pose32.dtype == np.float32
        pose17, _ = sequence_motion(small_cfg, s.subject, s.name)
        np.testing.assert_array_equal(joints17(pose32), pose17)


def test_videos_decode_at_the_calibrated_size(small_raw):
    cams = R.calibration_for(small_raw)
    s = R.discover(small_raw, ("S9",))[0]
    for cam_id, path in s.videos.items():
        info = R.video_info(path)
        assert info.fps == 50
        assert (info.width, info.height) == (cams["S9"][cam_id].width, cams["S9"][cam_id].height)
        frames = R.read_frames(path, 3, start=5)
        assert frames.shape == (3, info.height, info.width, 3) and frames.dtype == np.uint8


def _copy(small_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    return raw


def test_more_video_frames_than_poses_uses_the_shorter_and_warns(small_raw, small_cfg, tmp_path):
    raw = _copy(small_raw, tmp_path)
    seq = R.discover(raw, ("S1",))[0]
    write_cdf(seq.poses_path, R.read_poses(seq.poses_path)[:-4])
    with pytest.warns(UserWarning, match=f"using the first {small_cfg.frames - 4}"):
        assert R.sequence_length(seq) == small_cfg.frames - 4


def _error(match, fn, *args):
    with pytest.raises(R.RawDataError) as e:
        fn(*args)
    msg = str(e.value)
    assert match in msg, msg
    return msg


def test_missing_video_names_the_pose_file(small_raw, tmp_path):
    raw = _copy(small_raw, tmp_path)
    for p in (raw / "S1" / "Videos").glob("Walking.*.mp4"):
        p.unlink()
    msg = _error("Walking.cdf", R.discover, raw)
    assert "no videos" in msg and "restore" in msg


def test_missing_pose_file_names_the_video(small_raw, tmp_path):
    raw = _copy(small_raw, tmp_path)
    (raw / "S9" / "MyPoseFeatures" / "D3_Positions" / "Posing.cdf").unlink()
    msg = _error("Posing.", R.discover, raw)
    assert "no pose file" in msg


def test_unknown_camera_id(small_raw, tmp_path):
    raw = _copy(small_raw, tmp_path)
    v = raw / "S1" / "Videos" / "Walking.54138969.mp4"
    v.rename(v.with_name("Walking.12345678.mp4"))
    msg = _error("Walking.12345678.mp4", R.discover, raw)
    assert "unknown camera id '12345678'" in msg and "cameras.json" in msg


def test_truncated_video(small_raw, tmp_path):
    raw = _copy(small_raw, tmp_path)
    v = raw / "S1" / "Videos" / "Walking.55011271.mp4"
    v.write_bytes(v.read_bytes()[: v.stat().st_size // 2])
    with pytest.raises(R.RawDataError) as e:
        R.read_frames(v)
    assert str(v) in str(e.value) and "--skip-bad" in str(e.value)


def test_not_a_video(tmp_path):
    v = tmp_path / "Walking.54138969.mp4"
    v.write_bytes(b"this is not an mp4 file" * 100)
    msg = _error(str(v), R.video_info, v)
    assert "cannot be opened" in msg or "0 frames" in msg


def test_cdf_without_pose_variable(tmp_path):
    from cdflib import cdfwrite

    path = tmp_path / "Walking.cdf"
    cdf = cdfwrite.CDF(str(path))
    cdf.write_var({"Variable": "Angles", "Data_Type": cdfwrite.CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [4, 78]}, var_attrs={},
                  var_data=np.zeros((1, 4, 78), np.float32))
    cdf.close()
    msg = _error(str(path), R.read_poses, path)
    assert "no variable 'Pose'" in msg and "Angles" in msg


def test_cdf_with_nans(tmp_path):
    path = tmp_path / "Walking.cdf"
    pose = np.zeros((10, 32, 3), np.float32)
    pose[6, 3, 1] = np.nan
    write_cdf(path, pose)
    msg = _error(str(path), R.read_poses, path)
    assert "NaN" in msg and "frame 6" in msg


def test_damaged_cdf_and_missing_files(tmp_path):
    bad = tmp_path / "Walking.cdf"
    bad.write_bytes(b"\x00" * 64)
    assert "not a readable CDF" in _error(str(bad), R.read_poses, bad)
    assert "not found" in _error("Nope.cdf", R.read_poses, tmp_path / "Nope.cdf")
    assert "not found" in _error("Nope.mp4", R.video_info, tmp_path / "Nope.mp4")
    assert "no subject folders" in _error(str(tmp_path), R.discover, tmp_path)


def test_subject_missing_from_calibration(small_raw, tmp_path):
    raw = _copy(small_raw, tmp_path)
    shutil.copytree(raw / "S9", raw / "S2")
    assert "no entry in the calibration" in _error("S2", R.discover, raw)


def test_truncated_pose_files_malformed_calibrations_and_wrong_video_sizes_are_named(small_raw, tmp_path):
    import json
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    cdf = raw / "S1" / "MyPoseFeatures" / "D3_Positions" / "Walking.cdf"
    cdf.write_bytes(cdf.read_bytes()[: cdf.stat().st_size * 2 // 3])
    with pytest.raises(R.RawDataError, match="Walking.cdf.*(truncated|not a readable CDF)"):
        R.read_poses(cdf)
    cal = json.loads((raw / "cameras.json").read_text())
    entry = cal["cameras"]["S9"]["55011271"]
    entry["focal_length"] = [1.0, "x"]
    (raw / "cameras.json").write_text(json.dumps(cal))
    with pytest.raises(ValueError, match=r"cameras.json: subject S9 camera 55011271: field 'focal_length'"):
        R.calibration_for(raw)
    entry["focal_length"] = [500.0, 500.0]
    entry["width"] += 16  # the calibration of a wider video
    (raw / "cameras.json").write_text(json.dumps(cal))
    seq = next(s for s in R.discover(raw, ("S9",)) if s.name == "Walking")
    with pytest.raises(R.RawDataError, match=r"Walking.55011271.mp4: \d+ x \d+ pixels, but the calibration"):
        R.sequence_length(seq, R.calibration_for(raw)["S9"])
