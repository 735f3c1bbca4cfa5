"""A user's own rig: the anipose calibration, the rig layout and its errors, label-free crops,
and the whole line (build, verify, pretrain, fine-tune elsewhere) on a synthetic rig without poses."""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from h36m_prep import store as S
from h36m_prep.build import BuildConfig, build
from h36m_prep.plan import plan_rig
from h36m_prep.cli import main as h36m_prep
from h36m_prep.geometry import (Camera, CalibrationError, crop_sampling_map, distort, load_rig_calibration, pixel_rays,
                                project, save_rig_calibration, undistort)
from h36m_prep.inspect_store import info, verify
from h36m_prep.raw import RawDataError
from h36m_prep.synth.rig import RigSynthConfig, rig_cameras, take_name, write_rig
from train.config import FINETUNE_PRESETS, PRETRAIN_PRESETS
from train.finetune import finetune
from train.pretrain import NO_TEST_NOTE, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from rig_crops import crop_quality  # noqa: E402

RIG = RigSynthConfig(frames=48, scale=0.3, seed=1)
RIG_BUILD = BuildConfig(crop_size=96, bg_samples=24, bg_crops=4)

CALIB = """
[cam_0]
name = "a"
size = [640, 480]
matrix = [[812.5, 0.0, 322.25], [0.0, 806.0, 236.5], [0.0, 0.0, 1.0]]
distortions = [-0.21, 0.07, 0.0012, -0.0008, 0.013]
rotation = [0.12, -0.31, 0.05]
translation = [0.15, -0.4, 3.2]

[cam_1]
name = "b"
size = [1080, 1920]
matrix = [[1500.0, 0.0, 539.5], [0.0, 1500.0, 959.5], [0.0, 0.0, 1.0]]
distortions = [0.04]
rotation = [-0.02, 1.4, 0.3]
translation = [-1.1, 0.2, 4.0]
fisheye = false

[metadata]
adjusted = true
error = 0.31
"""


# ---------------------------------------------------------------- calibration

def _cv2_project(X_mm: np.ndarray, entry: dict, units: float) -> np.ndarray:
    """cv2.projectPoints of world points given in mm, with the calibration in `units` mm per unit."""
    d = np.zeros(5)
    d[:len(entry["distortions"])] = entry["distortions"]
    uv, _ = cv2.projectPoints(X_mm / units, np.array(entry["rotation"]), np.array(entry["translation"]),
                              np.array(entry["matrix"]), d)
    return uv[:, 0]


@pytest.mark.parametrize("units", ["m", "mm"])
def test_anipose_calibration_projects_as_cv2_project_points(tmp_path, units):
    import tomllib

    path = tmp_path / "calibration.toml"
    path.write_text(CALIB)
    doc = tomllib.loads(CALIB)
    cams = load_rig_calibration(path, units)
    assert list(cams) == ["a", "b"] and (cams["b"].width, cams["b"].height) == (1080, 1920)
    scale = 1000.0 if units == "m" else 1.0
    rng = np.random.default_rng(0)
    for entry in (doc["cam_0"], doc["cam_1"]):
        cam = cams[entry["name"]]
        # points in front of the camera, spread over the image
        X_cam = np.concatenate([rng.uniform(-0.4, 0.4, (200, 2)), np.ones((200, 1))], 1) * rng.uniform(1500, 6000, (200, 1))
        X = X_cam @ cam.R.T + cam.C  # world mm
        ref = _cv2_project(X, entry, scale)
        assert np.abs(project(X, cam) - ref).max() < 1e-6
        # pixel rays invert the projection (the OpenCV model's Newton undistortion)
        rays = pixel_rays(project(X, cam), cam)
        assert np.abs(rays - X_cam / np.linalg.norm(X_cam, axis=1, keepdims=True)).max() < 1e-9


def test_opencv_and_h36m_distortion_differ_and_each_inverts(tmp_path):
    k, p = np.array([-0.2, 0.05, 0.01]), np.array([0.004, -0.003])
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (100, 2))
    for model in ("h36m", "opencv"):
        assert np.abs(undistort(distort(x, k, p, model), k, p, model=model) - x).max() < 1e-10
    assert np.abs(distort(x, k, p, "h36m") - distort(x, k, p, "opencv")).max() > 1e-4
    # the crop map samples where the camera's own model projects
    path = tmp_path / "c.toml"
    path.write_text(CALIB)
    cam = load_rig_calibration(path)["a"]
    from h36m_prep.geometry import crop_intrinsics, virtual_rotation

    R_v = virtual_rotation(np.array([0.2, -0.1, 1.0]))
    K = crop_intrinsics(300.0, 64)
    mx, my = crop_sampling_map(R_v, K, cam, 64)
    jj, ii = np.meshgrid(np.arange(64.0), np.arange(64.0))
    rays = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1) @ R_v
    uv = project(rays @ cam.R.T + cam.C, cam)
    assert np.abs(uv[..., 0] - mx).max() < 1e-3 and np.abs(uv[..., 1] - my).max() < 1e-3


def test_calibration_round_trip(tmp_path):
    path = tmp_path / "calibration.toml"
    path.write_text(CALIB)
    cams = load_rig_calibration(path)
    save_rig_calibration(tmp_path / "again.toml", cams)
    again = load_rig_calibration(tmp_path / "again.toml")
    for name in cams:
        for f in ("R", "C", "f", "c", "k", "p"):
            assert np.allclose(getattr(cams[name], f), getattr(again[name], f), atol=1e-9)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("fisheye = false", "fisheye = true"), "fisheye"),
    (lambda s: s.replace('name = "b"\n', ""), "no `name`"),
    (lambda s: s.replace("[0.0, 1500.0, 959.5]", "[0.0, 1500.0]"), "`matrix`"),
    (lambda s: s.replace("[[812.5, 0.0,", "[[812.5, 2.0,"), "skew"),
    (lambda s: s.replace("[0.04]", "[0.04, 0, 0, 0, 0, 0.3, 0, 0]"), "rational"),
    (lambda s: s.replace('name = "b"', 'name = "a"'), "appears twice"),
    (lambda s: s.replace("rotation = [0.12, -0.31, 0.05]", "rotation = [0.12, -0.31]"), "`rotation`"),
    (lambda s: s.replace("translation = [-1.1, 0.2, 4.0]", 'translation = "far"'), "`translation`"),
    (lambda s: s.replace("[cam_0]", "[cam_0"), "not valid TOML"),
    (lambda s: "[metadata]\nerror = 1\n", "no camera tables"),
])
def test_a_malformed_calibration_is_a_clear_error_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "calibration.toml"
    path.write_text(edit(CALIB))
    with pytest.raises(CalibrationError, match=message) as e:
        load_rig_calibration(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------- the rig layout and its errors

def _video(path: Path, size: tuple[int, int], frames: int = 12, fps: float = 30.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*{".avi": "MJPG", ".webm": "VP90"}.get(path.suffix, "mp4v"))
    w = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert w.isOpened(), path
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


def _cam(name: str, w: int, h: int, k=(0.0, 0.0, 0.0)) -> Camera:
    x = float(sum(map(ord, name)) % 7 - 3) * 400  # cameras stand apart, as on a real rig
    return Camera(id=name, R=np.eye(3), C=np.array([x, 0.0, -3000.0]), f=np.array([200.0, 200.0]), k=np.array(k),
                  c=np.array([(w - 1) / 2, (h - 1) / 2]), p=np.zeros(2), width=w, height=h, model="opencv")


def _tiny_rig(root: Path, sizes=None, calib: bool = True, frames: int = 12) -> Path:
    """Two takes; the camera `right` records VP9 in WebM, the others MPEG-4 in mp4."""
    sizes = sizes or {"left": (64, 48), "right": (48, 64)}
    for j, take in enumerate(("t1", "t2")):
        for i, (name, wh) in enumerate(sizes.items()):
            _video(root / take / f"{name}.{'webm' if name == 'right' else 'mp4'}", wh, frames, seed=10 * j + i)
    if calib:
        save_rig_calibration(root / "calibration.toml", {n: _cam(n, *wh) for n, wh in sizes.items()})
    return root


def _build_fails(raw: Path, out: Path, match: str, **cfg):
    with pytest.raises(RawDataError, match=match) as e:
        build(raw, out, dataclasses.replace(RIG_BUILD, **cfg), workers=1, progress=False)
    assert not out.exists(), "nothing may be written before the input is checked"
    return str(e.value)


def test_rig_layout_is_detected_and_planned(tmp_path):
    raw = _tiny_rig(tmp_path / "rig")
    (raw / "offsets.toml").write_text("right = 3\nleft = 1\n")
    sequences, units, skipped, takes, facts = plan_rig(raw, dataclasses.replace(RIG_BUILD, test_takes=("t2",)))
    assert [q["name"] for q in sequences] == ["t1", "t2"]
    assert [q["split"] for q in sequences] == ["train", "test"]
    assert [q["subject"] for q in sequences] == ["rig", "rig-test"]  # no test pixels in a training median
    assert all(q["frames"] == 12 - 2 for q in sequences)  # offsets shifted so that the smallest is 0
    assert {u["camera"]: u.get("offset", 0) for u in units} == {"left": 0, "right": 2}
    assert facts["calibrated"] and not facts["poses"] and abs(facts["fps"] - 30) < 0.01
    _, _, _, _, facts = plan_rig(raw, dataclasses.replace(RIG_BUILD, median_per="take"))
    assert set(facts["cams"]) == {"t1", "t2"}
    out = tmp_path / "tiny.zarr"  # VP9 in WebM and MPEG-4, offsets, a test take: builds and verifies
    build(raw, out, dataclasses.replace(RIG_BUILD, test_takes=("t2",)), workers=1, progress=False)
    assert verify(out) == [] and S.open_store(out)["images"].shape[0] == 2 * 2 * 10


def test_each_bad_rig_input_is_a_clear_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out.zarr"
    # a video whose size differs from its calibration
    raw = _tiny_rig(tmp_path / "size")
    _video(raw / "t1" / "left.mp4", (40, 48))
    msg = _build_fails(raw, out, "40 x 48 pixels, but camera 'left'")
    assert "t1/left.mp4" in msg
    # a camera of the calibration without a video
    raw = _tiny_rig(tmp_path / "novideo")
    (raw / "t2" / "right.webm").unlink()
    assert "t2" in _build_fails(raw, out, "no video of camera")
    # a video without a camera
    raw = _tiny_rig(tmp_path / "nocam")
    _video(raw / "t1" / "top.mp4", (64, 48))
    assert "top.mp4" in _build_fails(raw, out, "does not have")
    # fewer than two cameras
    raw = _tiny_rig(tmp_path / "one", sizes={"left": (64, 48)})
    _build_fails(raw, out, "at least two cameras")
    # an unreadable video
    raw = _tiny_rig(tmp_path / "garbage")
    (raw / "t1" / "right.webm").write_bytes(b"not a video at all" * 100)
    assert "right.webm" in _build_fails(raw, out, "cannot be opened|0 frames")
    # a take shorter than d_min + 2 frames
    raw = _tiny_rig(tmp_path / "short", frames=5)
    _build_fails(raw, out, "fewer than d_min \\+ 2")
    # a malformed calibration
    raw = _tiny_rig(tmp_path / "badcal")
    (raw / "calibration.toml").write_text("[cam_0]\nname = 'left'\nsize = [64, 48]\n")
    assert "calibration.toml" in _build_fails(raw, out, "no `matrix`")
    # mixed frame rates within a take
    raw = _tiny_rig(tmp_path / "rates")
    _video(raw / "t2" / "right.webm", (48, 64), fps=25.0)
    _build_fails(raw, out, "mixed frame rates")
    # a bad offsets file
    raw = _tiny_rig(tmp_path / "offsets")
    (raw / "offsets.toml").write_text("middle = 2\n")
    assert "offsets.toml" in _build_fails(raw, out, "unknown camera")
    # videos straight in the rig folder, not in a take folder: the error points at the rig layout
    loose = tmp_path / "loose"
    _video(loose / "front.mp4", (64, 48))
    with pytest.raises(RawDataError, match="folder per take") as e:
        build(loose, out, RIG_BUILD, workers=1, progress=False)
    assert "front.mp4" in str(e.value) and not out.exists()
    # --test-takes naming no take
    raw = _tiny_rig(tmp_path / "tests")
    _build_fails(raw, out, "no folder", test_takes=("t9",))
    # a test take that is a training take under another name (a symlink), or a copy of one
    raw = _tiny_rig(tmp_path / "twice")
    shutil.rmtree(raw / "t2")
    (raw / "t2").symlink_to(raw / "t1", target_is_directory=True)
    msg = _build_fails(raw, out, r"t2/left.mp4: the same footage as .*t1/left.mp4 \(one file under two names\), in two "
                       r"takes, of the train and the test split", test_takes=("t2",))
    (raw / "t2").unlink()
    shutil.copytree(raw / "t1", raw / "t2")
    _build_fails(raw, out, r"\(an identical copy\), in two takes", test_takes=("t2",))
    # offsets longer than the take: the offsets file is named, not the take
    raw = _tiny_rig(tmp_path / "late")
    (raw / "offsets.toml").write_text("right = 250\n")  # milliseconds written for frames
    _build_fails(raw, out, r"offsets.toml: camera right starts 250 frames late, which leaves take t1 0 frames")
    # takes named like Human3.6M subjects: the error suggests the rig layout
    raw = _tiny_rig(tmp_path / "named", calib=False)
    for take in ("t1", "t2"):
        (raw / take).rename(raw / {"t1": "S1", "t2": "S2"}[take])
    with pytest.raises(RawDataError, match="S1 holds videos itself .*pass --layout rig"):
        build(raw, out, RIG_BUILD, workers=1, progress=False)
    assert not out.exists()


def test_unit_and_lens_mistakes_in_a_calibration_are_refused_naming_the_cause(tmp_path):
    out = tmp_path / "out.zarr"
    # translations in metres read as millimetres: the cameras would stand 1.2 mm apart
    raw = _tiny_rig(tmp_path / "units")
    msg = _build_fails(raw, out, r"the cameras stand 1.2 mm apart .* in metres but read as millimetres", calib_units="mm")
    assert "calibration.toml" in msg and "drop --calib-units mm" in msg
    assert plan_rig(raw, RIG_BUILD)[0]  # the recovery: the default units
    # a distortion that throws the border of the image diagonals away (k1 = 50)
    raw = _tiny_rig(tmp_path / "wild", calib=False)
    save_rig_calibration(raw / "calibration.toml", {"left": _cam("left", 64, 48, (50.0, 0, 0)),
                                                    "right": _cam("right", 48, 64)})
    msg = _build_fails(raw, out, r"camera left: the distortion .* moves the frame's border by up to")
    assert "calibration.toml" in msg
    # a distortion that folds the image over inside the frame
    save_rig_calibration(raw / "calibration.toml", {"left": _cam("left", 64, 48, (-30.0, 0, 0)),
                                                    "right": _cam("right", 48, 64)})
    _build_fails(raw, out, r"camera left: the distortion .* folds the image over")


def test_rig_poses_in_metres_or_in_another_frame_are_refused(rig, tmp_path):
    out = tmp_path / "out.zarr"
    raw = tmp_path / "rig"
    shutil.copytree(rig["raw"], raw)
    take, pose = next(iter(rig["poses"].items()))
    np.save(raw / take / "poses3d.npy", pose / 1000)
    msg = _build_fails(raw, out, r"poses3d.npy: its bones are 0.\d+ long .* in metres: write them in millimetres")
    assert take in msg
    np.save(raw / take / "poses3d.npy", pose + np.array([0.0, 0.0, 40000.0]))  # 40 m away: another world frame
    _build_fails(raw, out, r"only \d+% of its joints project inside the .* frame of camera .* do not agree")
    for other, p in rig["poses"].items():  # the recovery: every take's own poses, in mm
        np.save(raw / other / "poses3d.npy", p)
    assert plan_rig(raw, RIG_BUILD)[4]["poses"]


def test_codec_alignment_padding_passes_with_a_warning(tmp_path):
    from h36m_prep.rig import discover_rig, rig_calibration, take_length

    raw = _tiny_rig(tmp_path / "pad", sizes={"left": (64, 48), "right": (48, 64)})
    save_rig_calibration(raw / "calibration.toml", {"left": _cam("left", 64, 40), "right": _cam("right", 48, 64)})
    take = discover_rig(raw, rig_calibration(raw))[0]
    with pytest.warns(UserWarning, match="codec alignment"):
        assert take_length(take, rig_calibration(raw))[0] == 12
    save_rig_calibration(raw / "calibration.toml", {"left": _cam("left", 64, 30), "right": _cam("right", 48, 64)})
    with pytest.raises(RawDataError, match="calibrated size"):
        take_length(take, rig_calibration(raw))


# ---------------------------------------------------------------- a synthetic rig without poses, end to end

@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The synthetic rig with its poses moved aside, and its store."""
    root = tmp_path_factory.mktemp("rig")
    raw = root / "rig"
    write_rig(raw, RIG, workers=1, progress=False)
    poses = {}
    for action in RIG.takes:
        src = raw / take_name(action) / "poses3d.npy"
        poses[take_name(action)] = np.load(src)
        src.unlink()
    store = root / "store.zarr"
    build(raw, store, RIG_BUILD, workers=1, progress=False)
    return {"raw": raw, "store": store, "poses": poses, "root": root}


def test_synthetic_rig_matches_its_description(rig):
    cams = load_rig_calibration(rig["raw"] / "calibration.toml")
    assert len(cams) == 5 and len({round(c.C[2], -2) for c in cams.values()}) >= 4  # varied heights
    assert {c.width > c.height for c in cams.values()} == {True, False}  # portrait and landscape
    assert {p.suffix for p in (rig["raw"] / "walking").iterdir()} >= {".mp4", ".avi"}
    assert cap_fps(rig["raw"] / "walking" / "front.mp4") == pytest.approx(60, abs=0.01)
    for name, cam in rig_cameras(RIG).items():
        assert np.allclose(cams[name].R, cam.R, atol=1e-9) and np.allclose(cams[name].C, cam.C, atol=1e-6)


def cap_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()


def test_label_free_crops_hold_the_person(rig):
    q = crop_quality(rig["store"], rig["raw"], rig["poses"])
    o = q["overall"]
    assert o["joints_inside"] >= 0.98, q
    assert o["centre_max"] <= 0.2, q
    g = S.open_store(rig["store"])
    assert not S.has_poses(g) and g.attrs["layout"] == "rig" and g.attrs["fps"] == pytest.approx(60)
    assert np.isnan(g["pose3d"][:5]).all() and np.isnan(g["root_cam"][:5]).all()
    assert 0.2 < g["moving"][:].mean() < 0.9  # the label-free motion measure keeps a share of frames


def test_rig_store_verifies_and_shows(rig):
    assert verify(rig["store"]) == []
    i = info(rig["store"])
    assert i["layout"] == "rig" and not i["poses"] and [t["take"] for t in i["takes"]] == ["directions", "walking"]
    r = CliRunner().invoke(h36m_prep, ["info", str(rig["store"])])
    assert r.exit_code == 0 and "without poses" in r.output and "take      walking" in r.output
    r = CliRunner().invoke(h36m_prep, ["preview", str(rig["raw"]), str(rig["root"] / "p.png"), "--action", "walking"])
    assert r.exit_code == 0 and cv2.imread(str(rig["root"] / "p.png")) is not None
    from h36m_prep.preview import store_preview

    assert cv2.imread(str(store_preview(rig["store"], rig["root"] / "s.png"))).shape[0] == 3 * 96


def test_pretrain_on_a_rig_without_test_split_then_finetune_on_a_labelled_store(rig, small_store):
    cfg = dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=48, steps=4, log_every=2,
                              checkpoint_every=4, eval_batches=1, workers=0, eval_every=2)
    metrics = pretrain(rig["store"], rig["root"] / "pre", cfg, progress=False)
    assert metrics["test_note"] == NO_TEST_NOTE and 0 <= metrics["train_acc_sync"] <= 1
    curves = [json.loads(line) for line in open(rig["root"] / "pre" / "eval.jsonl")]
    assert curves and all("train_acc_sync" in c and "test_acc_sync" not in c for c in curves)
    ft = dataclasses.replace(FINETUNE_PRESETS["tiny"], init=str(rig["root"] / "pre"), protocol="S1", batch=8,
                             input_size=48, steps=2, log_every=1, checkpoint_every=2, workers=0)
    assert finetune(small_store, rig["root"] / "ft", ft, progress=False)["steps"] == 2
    with pytest.raises(ValueError, match="has no poses"):  # the rig store itself has no labels to fine-tune on
        finetune(rig["store"], rig["root"] / "ft_rig", ft, progress=False)


def test_rig_without_calibration_with_a_late_camera(rig, tmp_path):
    """Uncalibrated (square image crops), one camera started 2 frames late (offsets.toml)."""
    raw = tmp_path / "rig"
    shutil.copytree(rig["raw"], raw, ignore=shutil.ignore_patterns("calibration.toml", "back_high*", "corner*"))
    (raw / "offsets.toml").write_text("front = 2\n")
    store = tmp_path / "store.zarr"
    build(raw, store, RIG_BUILD, workers=1, progress=False)
    g = S.open_store(store)
    assert not g.attrs["calibrated"] and verify(store) == []
    assert np.allclose(g["R_v"][:], np.eye(3))  # square image crops: no rotation
    # the boxes follow the true joints in each camera's own frames: the late camera's row t shows frame t + 2
    cams = load_rig_calibration(rig["raw"] / "calibration.toml")
    box = g["box"][:]
    for u in g.attrs["units"]:
        take = g.attrs["sequences"][u["sequence"]]["name"]
        shift = 2 if u["camera"] == "front" else 0
        assert u.get("offset", 0) == shift and u["length"] == RIG.frames - 2
        b = box[u["start"]:u["start"] + u["length"]]
        assert np.allclose(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], atol=1.5)  # square
        uv = project(rig["poses"][take][shift:shift + u["length"]], cams[u["camera"]])
        inside = ((uv[..., 0] >= b[:, None, 0]) & (uv[..., 0] <= b[:, None, 2])
                  & (uv[..., 1] >= b[:, None, 1]) & (uv[..., 1] <= b[:, None, 3]))
        assert inside.mean() >= 0.98, (take, u["camera"], inside.mean())


def test_test_takes_make_a_test_split_with_its_own_backgrounds(rig, tmp_path):
    raw = tmp_path / "rig"
    shutil.copytree(rig["raw"], raw, ignore=shutil.ignore_patterns("back_high*", "corner*", "left_low*"))
    (raw / "calibration.toml").write_text("\n".join(
        block for block in (rig["raw"] / "calibration.toml").read_text().split("\n\n")
        if 'name = "front"' in block or 'name = "right"' in block or block.startswith("[metadata]")))
    store = tmp_path / "store.zarr"
    build(raw, store, dataclasses.replace(RIG_BUILD, test_takes=("walking",)), workers=1, progress=False)
    g = S.open_store(store)
    assert g.attrs["subjects"] == ["rig", "rig-test"]
    assert {q["name"]: q["split"] for q in g.attrs["sequences"]} == {"directions": "train", "walking": "test"}
    from pairloader.index import load_index

    train, test = load_index(store, "train"), load_index(store, "test")
    assert len(test.anchors) > 0 and len(train.anchors) > 0
    assert (g["split"][:][test.anchors] == 1).all()
    # substituted backgrounds come from the training take's views only
    assert set(g["bg_subject"][:][train.bg_pool]) == {g.attrs["subjects"].index("rig")}


def test_a_rig_with_its_own_estimated_poses_builds_labelled_and_verify_warns_about_bones(rig, tmp_path):
    raw = tmp_path / "rig"
    shutil.copytree(rig["raw"], raw, ignore=shutil.ignore_patterns("back_high*", "corner*", "left_low*", ".synth"))
    (raw / "calibration.toml").write_text("\n".join(
        block for block in (rig["raw"] / "calibration.toml").read_text().split("\n\n")
        if 'name = "front"' in block or 'name = "right"' in block or block.startswith("[metadata]")))
    rng = np.random.default_rng(0)
    for take, pose in rig["poses"].items():  # an estimator's poses: a few cm of noise, bones not rigid
        np.save(raw / take / "poses3d.npy", pose + rng.normal(0, 15, pose.shape))
    store = tmp_path / "store.zarr"
    r = CliRunner().invoke(h36m_prep, ["build", str(raw), str(store), "--workers", "1", "--crop-size", "96",
                                       "--bg-samples", "24", "--bg-crops", "4", "--test-takes", "walking"])
    assert r.exit_code == 0, r.output
    g = S.open_store(store)
    assert S.has_poses(g) and g.attrs["source"] == "real" and np.isfinite(g["pose3d"][:]).all()
    assert "silhouette" not in g
    notes = []
    assert verify(store, warnings=notes) == []  # the pose geometry is exact; the bones are estimates
    assert notes and "bone" in notes[0]
    r = CliRunner().invoke(h36m_prep, ["verify", str(store)])
    assert r.exit_code == 0 and "WARN bone" in r.output
    from pairloader import PoseLoader

    batch = next(iter(PoseLoader(store, batch_size=4, split="test", out_size=48, workers=0, steps=1)))
    assert batch["pose"].shape[0] == 4 and np.isfinite(batch["pose"].numpy()).all()
    # fine-tuned on the store's own training takes (the Human3.6M protocols name subjects it lacks)
    cfg = dataclasses.replace(FINETUNE_PRESETS["tiny"], protocol="S1", steps=4, batch=4, input_size=48, workers=0,
                              log_every=1, checkpoint_every=4)
    with pytest.raises(ValueError, match="--protocol store trains on every training subject"):
        finetune(store, tmp_path / "ft_s1", cfg, progress=False)
    m = finetune(store, tmp_path / "ft", dataclasses.replace(cfg, protocol="store"), progress=False)
    assert m["train_subjects"] == ["rig"] and m["steps"] == 4
