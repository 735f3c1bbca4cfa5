"""`h36m-prep sync`: offsets recovered from the videos of an unsynchronized synthetic rig, per-take
tables read by the build, and the takes and cameras it cannot synchronize named, never guessed."""
import shutil
import tomllib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from h36m_prep.cli import main as h36m_prep
from h36m_prep.plan import plan_rig
from h36m_prep.raw import RawDataError, iter_frames, video_info
from h36m_prep.build import BuildConfig
from h36m_prep.sync import SyncError, sync_take
from h36m_prep.synth.rig import RigSynthConfig, recording, rig_cameras, true_offsets, video_path, write_rig

CFG = RigSynthConfig(takes=("Walking",), cameras=3, frames=240, scale=0.2, start_spread=1.0, seed=2)


@pytest.fixture(scope="module")
def unsynced(tmp_path_factory):
    raw = tmp_path_factory.mktemp("unsynced") / "rig"
    write_rig(raw, CFG, workers=1, progress=False)
    return raw


def _static(path, like):
    """A video of `like`'s first frame, as long as `like`: someone who never moves."""
    info = video_info(like)
    frame = cv2.cvtColor(next(iter_frames(like, 1)), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (info.width, info.height))
    for _ in range(info.frames):
        w.write(frame)
    w.release()


def test_the_unsynchronized_synthetic_rig_has_cameras_of_their_own_start_and_length(unsynced):
    truth = tomllib.loads((unsynced / "offsets_truth.toml").read_text())["walking"]
    assert truth == true_offsets(CFG, "Walking") and min(truth.values()) == 0 and len(set(truth.values())) == 3
    lengths = {c: video_info(video_path(unsynced, "Walking", c)).frames for c in rig_cameras(CFG)}
    assert lengths == {c: recording(CFG, "Walking", c)[1] - recording(CFG, "Walking", c)[0] for c in lengths}
    assert len(set(lengths.values())) > 1


def test_sync_recovers_every_offset_and_the_build_reads_the_per_take_table(unsynced, tmp_path, capfd):
    raw = tmp_path / "rig"
    shutil.copytree(unsynced, raw)
    plan_rig(raw, BuildConfig())  # without offsets.toml the build says the videos look unsynchronized
    out = capfd.readouterr().out
    assert "look unsynchronized" in out and f"h36m-prep sync {raw}" in out
    r = CliRunner().invoke(h36m_prep, ["sync", str(raw)])  # calibrated: motion and geometry together
    assert r.exit_code == 0, r.output
    truth = tomllib.loads((raw / "offsets_truth.toml").read_text())["walking"]
    found = tomllib.loads((raw / "offsets.toml").read_text())["walking"]
    assert found == truth
    assert "walking" in r.output and "confidence" in r.output and "motion+geometry" in r.output
    _, units, _, _, _ = plan_rig(raw, BuildConfig())  # the build reads the take's table
    assert {u["camera"]: u.get("offset", 0) for u in units} == found
    r = CliRunner().invoke(h36m_prep, ["sync", str(raw)])  # an existing file is kept
    assert r.exit_code == 2 and "--overwrite" in r.output
    for method in ("motion", "geometry"):  # each alone: what it writes is within a frame of the truth
        r = CliRunner().invoke(h36m_prep, ["sync", str(raw), "--method", method, "--overwrite"])
        assert r.exit_code == 0, r.output
        alone = tomllib.loads((raw / "offsets.toml").read_text())["walking"]
        low = min(truth[k] for k in alone)
        assert alone and max(abs(alone[c] - (truth[c] - low)) for c in alone) <= 1, (method, alone)


def test_a_camera_that_never_sees_anyone_move_is_named_and_left_out_and_the_build_refuses_until_it_has_an_offset(
        unsynced, tmp_path):
    raw = tmp_path / "rig"
    shutil.copytree(unsynced, raw)
    still = video_path(raw, "Walking", "back_high")
    _static(still.with_name("tmp.mp4"), still)
    still.with_name("tmp.mp4").replace(still)
    r = CliRunner().invoke(h36m_prep, ["sync", str(raw), "--method", "motion"])
    # a person who never moves is part of the median background: nobody is seen in that camera
    assert r.exit_code == 0 and "back_high" in r.output and "sees someone in 0% of its frames" in r.output, r.output
    text = (raw / "offsets.toml").read_text()
    assert "# back_high = ?  unresolved: sees someone in 0%" in text
    with pytest.raises(RawDataError, match="the table of take walking has no offset for camera.s. back_high"):
        plan_rig(raw, BuildConfig())
    r = CliRunner().invoke(h36m_prep, ["sync", str(raw), "--method", "motion", "--overwrite", "--force"])
    assert r.exit_code == 0 and "back_high = 0  # a guess (--force)" in (raw / "offsets.toml").read_text()


def test_takes_that_cannot_be_synchronized_are_refused_naming_the_take(unsynced, tmp_path):
    videos = {c: video_path(unsynced, "Walking", c) for c in rig_cameras(CFG)}
    still = {}
    for c, v in videos.items():  # nobody moves in any camera
        still[c] = tmp_path / f"{c}.mp4"
        _static(still[c], v)
    with pytest.raises(SyncError, match="take walking: fewer than two cameras see someone move"):
        sync_take("walking", still, method="motion")
    short = {}
    for c, v in videos.items():  # five frames: no lag can be told apart
        short[c] = tmp_path / f"short_{c}.mp4"
        size = (video_info(v).width, video_info(v).height)
        w = cv2.VideoWriter(str(short[c]), cv2.VideoWriter_fourcc(*"mp4v"), 60.0, size)
        for f in iter_frames(v, 5):
            w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        w.release()
    with pytest.raises(SyncError, match="too short to tell lags apart"):
        sync_take("walking", short, method="motion")
    with pytest.raises(SyncError, match="--method geometry needs"):
        sync_take("walking", videos, None, method="geometry")


# ---------------------------------------------------------------- the learned method (sync-train sync)


class _SameInstant:
    """A sync head that knows the answer: each instant has its own random non-negative feature
    vector, and the Siamese product fusion summed by a linear head scores two frames by their
    features' overlap, highest for the same instant (what a perfect pretrained head would do)."""

    def __init__(self, features: int = 64):
        import torch

        self.model = torch.nn.Module()
        self.model.fusion = "mult"
        self.model.omega_sync = torch.nn.Linear(features, 1)
        with torch.no_grad():
            self.model.omega_sync.weight.fill_(1.0)
            self.model.omega_sync.bias.fill_(-0.5)


def test_the_learned_synchronizer_recovers_offsets_from_a_head_that_tells_instants_apart():
    import torch

    from train.synchronize import sync_features

    rng = np.random.default_rng(0)
    instants = torch.from_numpy(np.abs(rng.normal(size=(400, 64))).astype(np.float32))
    instants /= instants.norm(dim=1, keepdim=True)
    starts = {"a": 0, "b": 37, "c": 81, "d": 12}  # each camera's first instant; b, c stop early too
    ends = {"a": 400, "b": 360, "c": 390, "d": 400}
    entry = {"fps": 60.0, "features": {c: instants[starts[c]:ends[c]] for c in starts},
             "seen": {c: np.ones(ends[c] - starts[c], bool) for c in starts}}
    r = sync_features("take", entry, _SameInstant())
    late = max(starts.values())
    assert r.offsets == {c: late - s for c, s in starts.items()} and not r.unresolved and r.method == "learned"
    entry["seen"]["d"][:] = False  # a camera that shows nobody is named, not guessed
    r = sync_features("take", entry, _SameInstant())
    assert "d" in r.unresolved and "shows nobody" in r.unresolved["d"] and "d" not in r.offsets


def test_sync_train_sync_builds_the_rigs_frames_scores_with_a_run_and_writes_offsets(unsynced, tmp_path):
    import dataclasses

    from train.cli import main as sync_train
    from train.config import PRETRAIN_PRESETS
    from train.pretrain import pretrain

    raw = tmp_path / "rig"
    shutil.copytree(unsynced, raw)
    store = tmp_path / "synced.zarr"  # a tiny network, pretrained on the rig's own frames for a few steps
    from h36m_prep.build import build

    build(unsynced, store, BuildConfig(layout="rig", crop_size=64, bg_samples=8, bg_crops=2), workers=1,
          progress=False)
    run = tmp_path / "run"
    pretrain(store, run, dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=32, steps=3, log_every=1,
                                             workers=0))
    r = CliRunner().invoke(sync_train, ["sync", str(raw), "--model", str(run), "--crop-size", "64", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "learned" in r.output or "unresolved" in r.output
    table = tomllib.loads((raw / "offsets.toml").read_text())
    assert set(table) == {"walking"}  # one table per take; a camera left out is a comment, not a guess
    assert set(table["walking"]) <= set(rig_cameras(CFG)) and all(v >= 0 for v in table["walking"].values())
    r = CliRunner().invoke(sync_train, ["sync", str(raw), "--model", str(run)])
    assert r.exit_code == 2 and "exists; pass --overwrite" in r.output


def test_cameras_of_two_codecs_and_a_camera_that_dropped_frames_are_synchronized(unsynced, tmp_path):
    """Real rigs mix cameras (an action camera's MJPEG beside a phone's MPEG-4); an offset is
    injected by dropping a camera's first frames, as a late start would."""
    raw = tmp_path / "rig"
    shutil.copytree(unsynced, raw)
    truth = tomllib.loads((raw / "offsets_truth.toml").read_text())["walking"]
    mjpeg, late = list(rig_cameras(CFG))[:2]  # front (landscape) and left_low (portrait)
    src = video_path(raw, "Walking", mjpeg)
    info = video_info(src)
    w = cv2.VideoWriter(str(src.with_suffix(".avi")), cv2.VideoWriter_fourcc(*"MJPG"), info.fps,
                        (info.width, info.height))
    for f in iter_frames(src):
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    src.unlink()
    drop = 17  # the late camera loses its first 17 frames: its offset grows by 17
    src = video_path(raw, "Walking", late)
    frames = list(iter_frames(src))
    w = cv2.VideoWriter(str(src.with_name("tmp.mp4")), cv2.VideoWriter_fourcc(*"mp4v"), info.fps,
                        (frames[0].shape[1], frames[0].shape[0]))
    for f in frames[drop:]:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    src.with_name("tmp.mp4").replace(src)
    r = CliRunner().invoke(h36m_prep, ["sync", str(raw), "--method", "motion"])
    assert r.exit_code == 0, r.output
    found = tomllib.loads((raw / "offsets.toml").read_text())["walking"]
    # offsets count frames of each video: dropping d frames of a camera moves its offset by d
    want = {c: v - (drop if c == late else 0) for c, v in truth.items()}
    # every offset written is within a frame of the truth; a camera whose lag does not stand out at
    # this small test scale (192 px wide videos, 4 s) may be left out, but then it is named in the file
    assert len(found) >= 2 and set(found) <= set(want), (found, want, r.output)
    low = min(want[c] for c in found)
    assert max(abs(found[c] - (want[c] - low)) for c in found) <= 1, (found, want, r.output)
    text = (raw / "offsets.toml").read_text()
    assert all(f"# {c} = ?  unresolved:" in text for c in set(want) - set(found)), text


def test_the_two_cameras_of_a_pair_see_the_same_tangent_planes_at_the_same_instant(unsynced):
    """The geometry method's premise, on the rig's true poses: the epipolar planes tangent to the
    projected body (its outline being the projected joints) are the same planes in both cameras
    of every pair at the same instant, and differ at another instant."""
    from h36m_prep.geometry import project
    from h36m_prep.rig import rig_calibration
    from h36m_prep.sync import Track, outline_rays, tangent_planes

    cams = rig_calibration(unsynced)
    poses = np.load(unsynced / "walking" / "poses3d.npy")
    n = len(poses)

    def track(c):
        uv = project(poses, cams[c])
        return Track(c, video_path(unsynced, "Walking", c), 60.0, 1.0, np.zeros(n), np.zeros((n, 3)),
                     np.ones(n, bool), list(uv))

    names = sorted(cams)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            axis = cams[b].C - cams[a].C
            axis = axis / np.linalg.norm(axis)
            pa = tangent_planes(outline_rays(track(a), cams[a]), axis)
            pb = tangent_planes(outline_rays(track(b), cams[b]), axis)
            both = np.isfinite(pa).all(axis=1) & np.isfinite(pb).all(axis=1)
            assert both.mean() > 0.5, (a, b)
            assert np.abs(np.angle(np.exp(1j * (pa - pb))))[both].max() < 1e-6, (a, b)
            later = np.abs(np.angle(np.exp(1j * (pa[:-10] - pb[10:]))))
            assert np.nanmedian(later) > 1e-3, (a, b)


def test_a_camera_whose_pairs_disagree_by_more_than_half_a_frame_is_written_as_maybe_a_frame_off(tmp_path):
    from h36m_prep.sync import PairLag, TakeSync, write_offsets

    pairs = [PairLag("a", "b", 10.1, 0.0, 5.0, True), PairLag("b", "c", 4.9, 0.0, 5.0, True),
             PairLag("a", "c", 15.9, 0.0, 5.0, True), PairLag("a", "d", 3.0, 0.0, 5.0, True),
             PairLag("c", "d", 9.0, 0.0, 0.5, False)]  # not confident: not counted
    r = TakeSync("walking", {"a": 0, "b": 10, "c": 15, "d": 3}, {}, pairs, "motion", dict.fromkeys("abcd", 100))
    assert r.disagreement("b") == pytest.approx(0.1) and r.disagreement("a") == pytest.approx(0.9)
    assert r.doubtful() == ["a", "c"]
    lines = []
    write_offsets(tmp_path / "offsets.toml", [r], force=False, echo=lines.append)
    text = (tmp_path / "offsets.toml").read_text()
    assert tomllib.loads(text)["walking"] == {"a": 0, "b": 10, "c": 15, "d": 3}
    flagged = [line.split(" =")[0] for line in text.splitlines() if "may be a frame off" in line]
    assert flagged == ["a", "c"]
    assert "walking/a, walking/c" in lines[-1] and "may be a frame off" in lines[-1]


def test_the_sum_finds_a_pairs_peak_and_the_precise_scores_place_it_between_frames():
    from h36m_prep.sync import best_lag

    lags = np.arange(-20, 21)
    coarse = -0.05 * (lags - 3.0) ** 2  # a broad peak at 3
    precise = -1.0 * (lags - 4.3) ** 2  # a sharp one at 4.3, within the neighbourhood (2 frames at 20 fps)
    lag, score, _, ok = best_lag(lags, coarse, 20.0, 0.2)
    assert lag == pytest.approx(3.0) and ok
    lag, score2, _, _ = best_lag(lags, coarse, 20.0, 0.2, precise=precise)
    assert lag == pytest.approx(4.3) and score2 == score  # the score and margin stay the sum's
    far = -1.0 * (lags + 10.0) ** 2  # precise scores rising beyond the neighbourhood: no peak there
    lag, _, _, _ = best_lag(lags, coarse, 20.0, 0.2, precise=far)
    assert lag == pytest.approx(3.0)
    nan = np.full(len(lags), -np.inf)  # where the precise scores have nothing, the sum places it
    assert best_lag(lags, coarse, 20.0, 0.2, precise=nan)[0] == pytest.approx(3.0)
