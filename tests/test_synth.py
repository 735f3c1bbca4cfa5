"""The synthetic dataset: what it renders is what its poses say, it is reproducible, and its
files are complete or absent."""
import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from h36m_prep import raw as R
from h36m_prep.cli import main as cli
from h36m_prep.geometry import FLIP_PAIRS, bone_lengths, joints17, project
from h36m_prep.synth.body import primitives
from h36m_prep.synth.dataset import (SynthConfig, empty_room, render_video, subject_appearance,
                                     video_path, write_dataset)
from h36m_prep.synth.motion import to_h36m32


def _visible_joint_foreground(raw, cfg, subject, action, frames):
    """Per visible joint: does the decoded frame differ from the empty room at its pixel?"""
    cams = R.calibration_for(raw)[subject]
    pose = joints17(R.read_poses(R.discover(raw, (subject,))[0].poses_path.with_name(f"{action}.cdf")))
    hits = []
    for cam_id, cam in cams.items():
        room = empty_room(cfg, subject, cam_id).astype(int)
        video = R.read_frames(video_path(raw, subject, action, cam_id))
        for t in frames:
            for u, v in np.round(project(pose[t], cam)).astype(int):
                if 0 <= u < cam.width and 0 <= v < cam.height:
                    hits.append(np.abs(video[t, v, u] - room[v, u]).sum() > 30)
    return np.array(hits)


def test_projected_joints_land_on_the_rendered_body(small_raw, small_cfg):
    for subject in small_cfg.subjects:
        for action in small_cfg.actions:
            hits = _visible_joint_foreground(small_raw, small_cfg, subject, action, range(0, 24, 3))
            assert hits.size > 0.9 * 8 * 4 * 17  # the person is in view of every camera
            assert hits.mean() >= 0.9, (subject, action, hits.mean())


def test_true_silhouettes_cover_every_projected_joint(small_cfg):
    from h36m_prep.synth.dataset import synth_cameras, sequence_motion

    cam = synth_cameras(small_cfg)["S1"]["60457274"]
    pose17, _ = sequence_motion(small_cfg, "S1", "Walking")
    for t, (frame, mask) in enumerate(render_video(small_cfg, "S1", "Walking", "60457274", with_masks=True)):
        uv = np.round(project(pose17[t], cam)).astype(int)
        assert mask[uv[:, 1], uv[:, 0]].all()
        assert 0.005 < mask.mean() < 0.3
        if t == 5:
            break


def _decoded(path):
    return hashlib.sha256(R.read_frames(path).tobytes()).hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    cfg = SynthConfig(subjects=("S5",), actions=("Greeting",), frames=10, scale=0.2, seed=11,
                      cameras=("58860488",))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_dataset(a, cfg, workers=1, progress=False)
    write_dataset(b, cfg, workers=2, progress=False)
    write_dataset(c, SynthConfig(**{**cfg.to_json(), "seed": 12}), workers=1, progress=False)
    cdf = "S5/MyPoseFeatures/D3_Positions/Greeting.cdf"
    mp4 = "S5/Videos/Greeting.58860488.mp4"
    assert (a / cdf).read_bytes() == (b / cdf).read_bytes()
    assert _decoded(a / mp4) == _decoded(b / mp4)
    assert (a / cdf).read_bytes() != (c / cdf).read_bytes()
    assert _decoded(a / mp4) != _decoded(c / mp4)


def test_a_sequence_does_not_depend_on_what_else_is_written(small_raw, small_cfg, tmp_path):
    alone = SynthConfig(**{**small_cfg.to_json(), "subjects": ("S9",), "actions": ("Posing",)})
    write_dataset(tmp_path, alone, workers=1, progress=False)
    cdf = "S9/MyPoseFeatures/D3_Positions/Posing.cdf"
    assert (tmp_path / cdf).read_bytes() == (small_raw / cdf).read_bytes()


def test_interrupted_run_resumes_to_the_same_files(tmp_path):
    cfg = SynthConfig(subjects=("S6",), actions=("Walking",), frames=8, scale=0.2, seed=5)
    raw = tmp_path / "raw"
    write_dataset(raw, cfg, workers=1, progress=False)
    done = video_path(raw, "S6", "Walking", "55011271")
    before = _decoded(done)
    # an interruption leaves a partial temp file and no final file
    done.rename(done.with_name(f".tmp.{done.name}"))
    assert R.discover(raw)[0].videos.keys() == {"54138969", "58860488", "60457274"}
    report = write_dataset(raw, cfg, workers=1, progress=False)
    assert report["frames_written"] == cfg.frames  # only the missing video was rendered again
    assert _decoded(done) == before


def test_other_options_into_the_same_folder_are_refused(tmp_path):
    cfg = SynthConfig(subjects=("S6",), actions=("Walking",), frames=4, scale=0.1, cameras=("54138969",))
    write_dataset(tmp_path, cfg, workers=1, progress=False)
    with pytest.raises(ValueError, match="other options"):
        write_dataset(tmp_path, SynthConfig(**{**cfg.to_json(), "frames": 5}), workers=1, progress=False)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown synthetic action"):
        SynthConfig(actions=("Juggling",))
    with pytest.raises(ValueError, match="unknown subject"):
        SynthConfig(subjects=("S2",))


def test_bodies_are_left_right_symmetric_and_rigid(small_raw, small_cfg):
    for subject in small_cfg.subjects:
        app = subject_appearance(small_cfg, subject)
        seq = R.discover(small_raw, (subject,))[0]
        pose17 = joints17(R.read_poses(seq.poses_path))
        bones = bone_lengths(pose17)  # [T, 16], bone b ends at joint b + 1
        np.testing.assert_allclose(bones, np.broadcast_to(app.bones, bones.shape), atol=0.05)
        for a, b in FLIP_PAIRS:
            np.testing.assert_allclose(bones[:, a - 1], bones[:, b - 1], atol=0.05)
        caps, cap_rgb, ells, _ = primitives(to_h36m32(pose17[:1], app.bones)[0], app)
        # limbs come in left/right pairs of equal radius and colour
        for left, right in ((0, 1), (2, 3), (4, 5), (7, 8), (9, 10), (11, 12)):
            assert caps[left, 6] == caps[right, 6]
            np.testing.assert_array_equal(cap_rgb[left], cap_rgb[right])
        assert pose17[..., 2].min() > 0  # above the floor


def test_cli_synth_reports_and_previews(tmp_path):
    out = CliRunner().invoke(cli, ["synth", str(tmp_path / "raw"), "--subjects", "S11", "--actions",
                                   "Walking 1", "--frames", "6", "--scale", "0.2", "--workers", "1",
                                   "--preview", str(tmp_path / "p.png")])
    assert out.exit_code == 0, out.output
    assert "1 sequences, 4 videos of 6 frames" in out.output
    seq = R.discover(tmp_path / "raw")[0]
    assert (seq.action, seq.subaction, seq.name) == ("Walking", "1", "Walking 1")
    import cv2

    png = cv2.imread(str(tmp_path / "p.png"))
    assert png.shape == (2 * 200, 2 * 200, 3)
    report = json.loads((tmp_path / "raw" / ".synth" / "report.json").read_text())
    assert report["videos"] == 4
    bad = CliRunner().invoke(cli, ["synth", str(tmp_path / "raw2"), "--actions", "Juggling"])
    assert bad.exit_code == 2 and "unknown synthetic action" in bad.output


def test_cameras_of_a_sequence_do_not_share_their_keyframes(small_raw, small_cfg):
    """Each camera starts its keyframe interval at its own phase: no two cameras of a sequence
    put their keyframes on the same frames (frame 0 aside, where every stream starts)."""
    from h36m_prep.synth.video import GOP, keyframe_indices

    for subject in small_cfg.subjects:
        for action in small_cfg.actions:
            keys = {c: set(keyframe_indices(video_path(small_raw, subject, action, c))) - {0}
                    for c in small_cfg.cameras}
            phases = set()
            for c, k in keys.items():
                assert len(k) >= small_cfg.frames // GOP - 1, (subject, action, c, sorted(k))
                assert len({t % GOP for t in k}) == 1, (c, sorted(k))  # one phase, every GOP frames
                phases.add(next(iter(k)) % GOP)
            assert len(phases) == len(keys), (subject, action, keys)


def test_aligned_keyframes_share_their_phase(tmp_path):
    from h36m_prep.synth.video import keyframe_indices

    cfg = SynthConfig(subjects=("S1",), actions=("Walking",), frames=30, scale=0.1, keyframes="aligned")
    write_dataset(tmp_path, cfg, workers=1, progress=False)
    keys = [keyframe_indices(video_path(tmp_path, "S1", "Walking", c)) for c in cfg.cameras]
    assert all(k == [0, 12, 24] for k in keys), keys
    with pytest.raises(ValueError, match="keyframes"):
        SynthConfig(keyframes="shared")
