"""`h36m-prep build`: the store's geometry, masks, index columns, and a build that survives
being killed."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from h36m_prep import raw as R
from h36m_prep import store as S
from h36m_prep import build as B
from h36m_prep.background import SEEK_COST, sampling_cost
from h36m_prep.build import BuildConfig, build
from h36m_prep.cli import main as cli
from h36m_prep.geometry import bone_lengths, crop_sampling_map, joints17, project_virtual, world_to_camera
from h36m_prep.inspect_store import verify
from h36m_prep.synth.dataset import render_video


def _unit_rows(g):
    """(unit, sequence dict, rows slice) of every unit."""
    for u in g.attrs["units"]:
        yield u, g.attrs["sequences"][u["sequence"]], slice(u["start"], u["start"] + u["length"])


def test_geometry_invariants_hold_on_the_synthetic_store(small_store, small_raw, small_build_cfg):
    g = S.open_store(small_store)
    cams = R.calibration_for(small_raw)
    size = small_build_cfg.crop_size
    for u, seq, rows in _unit_rows(g):
        pose3d = g["pose3d"][rows].astype(np.float64)
        pose2d, K, R_v, root = g["pose2d"][rows], g["K"][rows], g["R_v"][rows], g["root_cam"][rows]
        depth = np.linalg.norm(root, axis=-1)
        # projecting pose3d + root depth with K gives pose2d, and the root is the crop centre
        uv = project_virtual(pose3d + np.stack([0 * depth, 0 * depth, depth], -1)[:, None], K)
        assert np.abs(uv - pose2d).max() < 0.5
        assert np.abs(pose2d[:, 0] - (size - 1) / 2).max() < 0.5
        # R_v is a proper rotation
        np.testing.assert_allclose(R_v @ np.swapaxes(R_v, 1, 2), np.broadcast_to(np.eye(3), R_v.shape), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(R_v), 1.0, atol=1e-9)
        # undoing R_v and adding the root recovers the camera-frame pose of the raw file
        world = joints17(R.read_poses(small_raw / seq["subject"] / "MyPoseFeatures" / "D3_Positions"
                                      / f"{seq['name']}.cdf"))
        cam_pose = world_to_camera(world, cams[seq["subject"]][u["camera"]])
        recovered = np.einsum("nji,nkj->nki", R_v, pose3d) + root[:, None]
        assert np.abs(recovered - cam_pose).max() < 0.1
        # bone lengths equal those of the raw world poses
        assert np.abs(bone_lengths(pose3d) - bone_lengths(world.astype(np.float64))).max() < 0.1


def test_masks_match_the_true_silhouettes(small_store, small_raw, small_cfg):
    g = S.open_store(small_store)
    cams = R.calibration_for(small_raw)
    size = g.attrs["crop_size"]
    ious = []
    for u, seq, rows in _unit_rows(g):
        truth = [m for _, m in render_video(small_cfg, seq["subject"], seq["name"], u["camera"], with_masks=True)]
        masks = g["masks"][rows]
        K, R_v = g["K"][rows], g["R_v"][rows]
        for t in range(0, u["length"], 6):
            mx, my = crop_sampling_map(R_v[t], K[t], cams[seq["subject"]][u["camera"]], size)
            import cv2

            true = cv2.remap(truth[t].astype(np.uint8), mx, my, cv2.INTER_NEAREST).astype(bool)
            ious.append((masks[t].astype(bool) & true).sum() / max((masks[t].astype(bool) | true).sum(), 1))
    # The fixture's takes last 48 frames (1 s): the person hardly leaves the spot it stands on,
    # which no label-free background can tell from the room (0.64 here); at the demo's size (5 s
    # takes) the same build measures 0.928 (benchmarks/mask_quality.py).
    assert np.mean(ious) >= 0.6, np.mean(ious)
    assert set(np.unique(g["masks"][:64])) <= {0, 1}


def test_index_columns(small_store, small_cfg):
    g = S.open_store(small_store)
    a = g.attrs
    assert a["format_version"] == S.FORMAT_VERSION and a["source"] == "synthetic" and a["complete"]
    assert a["joint_names"][0] == "pelvis" and len(a["parents"]) == 17 and len(a["flip_pairs"]) == 6
    for u, seq, rows in _unit_rows(g):
        np.testing.assert_array_equal(g["frame"][rows], np.arange(u["length"]))
        assert (g["sequence"][rows] == u["sequence"]).all()
        assert (np.asarray(a["cameras"])[g["camera"][rows]] == u["camera"]).all()
        assert (np.asarray(a["subjects"])[g["subject"][rows]] == seq["subject"]).all()
        assert (np.asarray(a["actions"])[g["action"][rows]] == seq["action"]).all()
        assert (g["split"][rows] == (1 if seq["subject"] in ("S9", "S11") else 0)).all()
    moving = g["moving"][:]
    assert 0.5 < moving.mean() < 0.98  # the paper drops about one training frame in four
    assert g["images"].chunks[0] == 1 and g["masks"].chunks[0] == 1  # random access by frame
    assert g["backgrounds"].shape[0] == 4 * 2 * 4  # bg_crops x subjects x cameras
    assert g["backgrounds"][0].std() > 5  # a textured room, not a blank


def test_verify_accepts_the_store_and_catches_damage(small_store, tmp_path):
    assert verify(small_store) == []
    out = CliRunner().invoke(cli, ["verify", str(small_store)])
    assert out.exit_code == 0 and "OK" in out.output
    bad = tmp_path / "bad.zarr"
    shutil.copytree(small_store, bad)
    g = zarr.open_group(str(bad), mode="r+")
    g["pose2d"][:] = g["pose2d"][:] + 3.0
    g["unit_status"][2] = S.PENDING
    problems = verify(bad)
    assert any("projection" in p for p in problems) and any("not written" in p for p in problems)
    out = CliRunner().invoke(cli, ["verify", str(bad)])
    assert out.exit_code == 1 and "FAIL" in out.output
    g.attrs["format_version"] = 99
    with pytest.raises(S.StoreError, match="format version 99"):
        S.open_store(bad)


def test_info_reports_the_contents(small_store):
    out = CliRunner().invoke(cli, ["info", str(small_store)])
    assert out.exit_code == 0, out.output
    assert "S1 S9" in out.output and "Posing Walking" in out.output
    assert "384 train + 384 test" in out.output


def _arrays(path):
    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][:] for k in g.array_keys()} | {
        f"medians/{s}/{c}": g[f"medians/{s}/{c}"][:] for s in g.attrs["subjects"] for c in g.attrs["cameras"]}


def _assert_same_arrays(path, reference):
    """Every array of the store at `path` equals the reference store's (a fresh build)."""
    got, want = _arrays(path), _arrays(reference)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_killed_build_resumes_to_the_same_store(small_store, small_raw, small_build_cfg, tmp_path):
    out = tmp_path / "killed.zarr"
    c = small_build_cfg
    cmd = [sys.executable, "-m", "h36m_prep.cli", "build", str(small_raw), str(out), "--workers", "1",
           "--crop-size", str(c.crop_size), "--bg-samples", str(c.bg_samples), "--bg-crops", str(c.bg_crops)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_dir = out / "unit_status" / "c"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if status_dir.exists() and len(os.listdir(status_dir)) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    g = zarr.open_group(str(out), mode="r")
    assert not g.attrs["complete"]
    assert 0 < (g["unit_status"][:] == S.DONE).sum() < len(g.attrs["units"])
    assert verify(out) != []
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _assert_same_arrays(out, small_store)


def test_views_decoded_once_give_the_store_of_medians_first(small_store, small_raw, small_build_cfg, tmp_path,
                                                           monkeypatch):
    # the small takes are short: sampling a median decodes most frames, so the build decodes each view once
    assert "views" in build(small_raw, tmp_path / "once.zarr", small_build_cfg, workers=1,
                            progress=False)["stage_seconds"]
    _assert_same_arrays(tmp_path / "once.zarr", small_store)
    # pass 2 takes the crops and maps pass 1 kept while they fit, reads and maps the rest again
    monkeypatch.setattr(B, "HOLD_BYTES", 11 * small_build_cfg.crop_size ** 2 * 10)  # ten rows of a view
    build(small_raw, tmp_path / "held.zarr", small_build_cfg, workers=1, progress=False)
    _assert_same_arrays(tmp_path / "held.zarr", small_store)
    monkeypatch.setattr(B, "ONE_PASS", float("inf"))  # never: medians first, then the units
    report = build(small_raw, tmp_path / "twice.zarr", small_build_cfg, workers=1, progress=False)
    assert "views" not in report["stage_seconds"] and "medians" in report["stage_seconds"]
    _assert_same_arrays(tmp_path / "twice.zarr", small_store)


def test_a_view_is_decoded_once_only_where_that_is_cheaper(small_raw, small_build_cfg):
    videos = [(str(small_raw / "S1" / "Videos" / f"{a}.54138969.mp4"), 48) for a in ("Posing", "Walking")]
    units = [{"length": 48}, {"length": 48}]
    # 16 picks over 96 frames, 6 apart: sampling decodes every frame up to the last pick of each take
    picks = np.unique(np.linspace(0, 95, 16).round().astype(int))
    assert sampling_cost([(Path(v), n) for v, n in videos], 16) == picks[picks < 48].max() + 1 + picks.max() - 48 + 1
    cfg = small_build_cfg
    assert B._one_pass(videos, units, True, "lz4", cfg, 50.0)
    assert not B._one_pass(videos, units, False, "lz4", cfg, 50.0)  # label-free crops need the median first
    assert not B._one_pass(videos, units, True, "jpeg:90", cfg, 50.0)  # pass 2 would see the JPEG, not the crop
    assert not B._one_pass(videos, [{"length": 24, "every": 2}] * 2, True, "lz4", cfg, 50.0)
    # long takes with picks far apart: a seek a pick costs less than decoding every frame once more
    long = [(v, 48_000) for v, _ in videos]
    assert sampling_cost([(Path(v), n) for v, n in long], 16) == 1 + 15 * (SEEK_COST + 1)  # frame 0: no seek
    assert not B._one_pass(long, [{"length": 48_000}] * 2, True, "lz4", cfg, 50.0)


def test_bad_sequence_stops_the_build_or_is_skipped(small_raw, small_build_cfg, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    video = raw / "S9" / "Videos" / "Walking.58860488.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S9",)})
    with pytest.raises(R.RawDataError, match="Walking.58860488.mp4"):
        build(raw, tmp_path / "a.zarr", cfg, workers=1, progress=False)
    r = build(raw, tmp_path / "b.zarr", BuildConfig(**{**cfg.__dict__, "skip_bad": True}), workers=1, progress=False)
    assert [s["sequence"] for s in r["skipped"]] == ["S9/Walking"]
    assert "Walking.58860488.mp4" in r["skipped"][0]["error"]
    assert r["units_done"] == 4  # the four views of S9/Posing
    g = S.open_store(tmp_path / "b.zarr")
    assert [s["name"] for s in g.attrs["sequences"]] == ["Posing"]
    assert g.attrs["skipped"] == r["skipped"]
    assert verify(tmp_path / "b.zarr") == []


def test_another_build_into_the_same_store_is_refused(small_store, small_raw, small_build_cfg):
    other = BuildConfig(**{**small_build_cfg.__dict__, "margin": 0.3})
    with pytest.raises(S.StoreError, match="other data or options"):
        build(small_raw, small_store, other, workers=1, progress=False)
    # the same build again finds it complete and writes nothing
    assert build(small_raw, small_store, small_build_cfg, workers=1, progress=False)["frames_written"] == 0


def test_build_never_replaces_a_folder_that_is_not_a_store(small_raw, small_build_cfg, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(S.StoreError, match="not an h36m-prep store"):
        build(small_raw, precious, small_build_cfg, workers=1, progress=False)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_a_build_killed_while_creating_the_store_starts_over(small_raw, small_build_cfg, tmp_path):
    out = tmp_path / "half.zarr"
    zarr.open_group(str(out), mode="w", attributes={"h36m_prep_store": True}).create_array(
        "images", shape=(3,), dtype="uint8")  # creation interrupted: no attributes, few arrays
    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S1",)})
    r = build(small_raw, out, cfg, workers=1, progress=False)
    assert r["units_done"] == 8 and verify(out) == []


def test_medians_use_no_pose_two_builds_with_other_poses_have_identical_medians(small_raw, small_build_cfg, tmp_path):
    from h36m_prep.synth.dataset import write_cdf

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    rng = np.random.default_rng(0)
    for cdf in (raw / "S1" / "MyPoseFeatures" / "D3_Positions").glob("*.cdf"):
        pose = R.read_poses(cdf)
        write_cdf(cdf, pose + rng.normal(0, 60, (1, 1, 3)).astype(np.float32))  # the person elsewhere
    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S1",)})
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    build(small_raw, a, cfg, workers=1, progress=False)
    build(raw, b, cfg, workers=1, progress=False)
    ga, gb = S.open_store(a), S.open_store(b)
    assert not np.array_equal(ga["pose2d"][:], gb["pose2d"][:]) or not np.array_equal(ga["box"][:], gb["box"][:])
    for cam in ga.attrs["cameras"]:
        np.testing.assert_array_equal(ga[f"medians/S1/{cam}"][:], gb[f"medians/S1/{cam}"][:], err_msg=cam)


def test_known_damaged_takes_are_excluded_by_default_recorded_and_kept_on_request(small_raw, small_build_cfg, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    for f in (raw / "S9").rglob("Posing.*"):  # S9's only Waiting take is Waiting-1, which toolkits exclude
        f.rename(f.with_name(f.name.replace("Posing", "Waiting")))
    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S9",)})
    r = build(raw, tmp_path / "a.zarr", cfg, workers=1, progress=False)
    assert r["excluded"] == [{"sequence": "S9/Waiting", "camera": None, "reason": "damaged take"}]
    g = S.open_store(tmp_path / "a.zarr")
    assert [s["name"] for s in g.attrs["sequences"]] == ["Walking"] and g.attrs["excluded"] == r["excluded"]
    out = CliRunner().invoke(cli, ["info", str(tmp_path / "a.zarr")])
    assert "excluded  S9/Waiting: damaged take" in out.output
    kept = build(raw, tmp_path / "b.zarr", BuildConfig(**{**cfg.__dict__, "keep_damaged": True}), workers=1,
                 progress=False)
    assert kept["excluded"] == [] and kept["units_done"] == 8


def test_a_damaged_camera_removes_that_view_only_and_takes_are_counted_from_the_unnumbered_one():
    def seq(subject, name, cams=("54138969", "55011271")):
        action, sub = R.parse_action(name)
        return R.Sequence(subject, action, sub, name, None, {c: None for c in cams})

    seqs = [seq("S11", "Directions 1"), seq("S11", "Directions"), seq("S9", "Greeting"), seq("S9", "Greeting 1"),
            seq("S9", "SittingDown 1"), seq("S1", "Greeting 1"), seq("S1", "Waiting")]
    kept, excluded = R.exclude_known_damaged(seqs)
    assert {(e["sequence"], e["camera"]) for e in excluded} == {
        ("S11/Directions", "54138969"), ("S9/Greeting 1", None)}  # SittingDown 1 is S9's first SittingDown take
    by_key = {q.key: q for q in kept}
    assert list(by_key["S11/Directions"].videos) == ["55011271"]
    assert len(by_key["S11/Directions 1"].videos) == 2 and "S9/Greeting 1" not in by_key
    assert {"S9/Greeting", "S9/SittingDown 1", "S1/Greeting 1", "S1/Waiting"} <= set(by_key)


def test_a_missing_or_damaged_chunk_is_an_error_verify_names_it_and_a_repair_equals_a_fresh_build(
        small_store, small_raw, small_build_cfg, tmp_path):
    from h36m_prep.store import StoreReader, StoreReadError

    g0 = S.open_store(small_store)
    rows = int(S.done_rows(g0).sum())
    for name in ("images", "masks"):  # every written chunk is stored, an empty one too
        assert sum(1 for _ in (small_store / name / "c").iterdir()) == rows
    bad = tmp_path / "bad.zarr"
    shutil.copytree(small_store, bad)
    units = g0.attrs["units"]
    gone, noise = units[3]["start"] + 5, units[9]["start"] + 7
    (bad / "images" / "c" / str(gone) / "0" / "0" / "0").unlink()  # a deleted chunk: not a black image
    (bad / "masks" / "c" / str(noise) / "0" / "0").write_bytes(np.random.default_rng(0).bytes(300))
    reader = StoreReader(bad)
    with pytest.raises(StoreReadError, match=rf"images/c/{gone}/0/0/0: row {gone} of 'images' is missing"):
        reader.image(gone)
    with pytest.raises(StoreReadError, match=rf"masks/c/{noise}/0/0.*cannot be decoded"):
        reader.mask(noise)
    problems = verify(bad)
    assert any(f"damaged images row {gone}" in p for p in problems)
    assert any(f"damaged masks row {noise}" in p for p in problems)
    out = CliRunner().invoke(cli, ["verify", str(bad), "--mark-damaged"])
    assert out.exit_code == 1 and "marked for re-rendering: 2 unit(s)" in out.output
    r = build(small_raw, bad, small_build_cfg, workers=1, progress=False)
    assert r["frames_written"] == units[3]["length"] + units[9]["length"]  # exactly the damaged units
    assert verify(bad) == []
    # a metadata chunk spans many units: all of them are re-rendered
    (bad / "pose3d" / "c" / "0" / "0" / "0").write_bytes(np.random.default_rng(1).bytes(300))
    problems = verify(bad)
    assert len(problems) == 1 and "damaged pose3d rows 0-" in problems[0] and "pose3d/c/0/0/0" in problems[0]
    assert CliRunner().invoke(cli, ["verify", str(bad), "--mark-damaged"]).exit_code == 1
    build(small_raw, bad, small_build_cfg, workers=1, progress=False)
    assert verify(bad) == []
    _assert_same_arrays(bad, small_store)


def test_a_build_resumed_from_other_raw_data_is_refused_naming_the_first_file_that_differs(
        small_store, small_raw, small_build_cfg, tmp_path):
    from h36m_prep.synth.dataset import write_cdf

    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    g = zarr.open_group(str(store), mode="r+")
    g["unit_status"][5] = S.PENDING  # as if killed before this unit
    g.attrs["complete"] = False
    other = tmp_path / "other"
    shutil.copytree(small_raw, other)
    cdf = other / "S1" / "MyPoseFeatures" / "D3_Positions" / "Walking.cdf"
    write_cdf(cdf, R.read_poses(cdf) + 1.0)  # same layout, same lengths, other content
    with pytest.raises(S.StoreError, match=r"first difference S1/MyPoseFeatures/D3_Positions/Walking.cdf \(changed\)"):
        build(other, store, small_build_cfg, workers=1, progress=False)
    assert not S.open_store(store).attrs["complete"]  # nothing was written
    out = CliRunner().invoke(cli, ["info", str(store)])
    assert f"raw data  {len(g.attrs['raw_fingerprint']['files'])} files, fingerprint" in out.output
    build(small_raw, store, small_build_cfg, workers=1, progress=False)  # its own raw data: resumes
    assert verify(store) == []


def test_a_full_disk_stops_the_build_naming_the_store_and_the_space_and_the_rerun_resumes(
        small_store, small_raw, small_build_cfg, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs for a real full disk (mount as root)")
    try:
        cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S1",)})
        with pytest.raises(S.StoreError, match=r"no space left on the device.*about [\d.]+ (GB|MB|KB) more for the \d+ frames left \([\d.]+ KB a frame\).*resumes"):
            build(small_raw, disk / "s.zarr", cfg, workers=1, progress=False)
        shutil.copytree(disk / "s.zarr", tmp_path / "moved.zarr")  # more room: the same store elsewhere
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    build(small_raw, tmp_path / "moved.zarr", cfg, workers=1, progress=False)
    assert verify(tmp_path / "moved.zarr") == []
    fresh = tmp_path / "fresh.zarr"
    build(small_raw, fresh, cfg, workers=1, progress=False)
    _assert_same_arrays(tmp_path / "moved.zarr", fresh)


def test_a_build_stopped_by_a_video_that_ends_early_resumes_with_skip_bad_added(small_raw, small_build_cfg, tmp_path):
    import cv2

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    video = raw / "S9" / "Videos" / "Walking.58860488.mp4"
    frames = R.read_frames(video)
    avi = tmp_path / "v.avi"  # a container whose header promises every frame, cut at 60 %
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 50, frames.shape[2:0:-1])
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    video.write_bytes(avi.read_bytes()[: avi.stat().st_size * 6 // 10])
    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S9",)})
    out = tmp_path / "s.zarr"
    with pytest.raises(R.RawDataError, match=r"Walking.58860488.mp4: .*(truncated|cannot decode).*--skip-bad"):
        build(raw, out, cfg, workers=1, progress=False)
    assert S.is_started(out)  # stopped part-way
    r = build(raw, out, BuildConfig(**{**cfg.__dict__, "skip_bad": True}), workers=1, progress=False)
    assert [s["sequence"] for s in r["skipped"]] == ["S9/Walking"] and r["units_done"] == 4
    assert verify(out) == []


def test_an_uncompressed_store_holds_the_lz4_stores_pixels_and_reads_them_without_a_decode(
        small_raw, small_store, small_build_cfg, tmp_path):
    """`--image-codec raw`: every crop's chunk file is its pixels (3 S^2 bytes), read straight into
    the row; the same pixels as the lossless LZ4 store, and a damaged file is named."""
    import dataclasses

    out = tmp_path / "raw.zarr"
    build(small_raw, out, dataclasses.replace(small_build_cfg, image_codec="raw"), workers=1, progress=False)
    assert verify(out) == []
    raw, lz4 = S.StoreReader(out), S.StoreReader(small_store)
    assert raw._layout("images")[6] is True  # read directly, no codec
    size = small_build_cfg.crop_size
    assert os.path.getsize(out / "images" / "c" / "3" / "0" / "0" / "0") == 3 * size * size
    rows = range(0, zarr.open_group(str(out))["images"].shape[0], 53)
    assert all(np.array_equal(raw.image(r), lz4.image(r)) for r in rows)
    assert np.array_equal(zarr.open_group(str(out))["images"][7], raw.image(7))
    (out / "images" / "c" / "9" / "0" / "0" / "0").write_bytes(b"short")
    with pytest.raises(S.StoreReadError, match="row 9 of 'images' cannot be decoded .*5 bytes, where a row takes"):
        S.StoreReader(out).image(9)


@pytest.mark.parametrize("codec", ["lz4", "raw", "jpeg:85"])
def test_rows_written_straight_into_chunk_files_are_the_bytes_zarr_writes(codec, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((5, 32, 32)) > 0.5).astype(np.uint8)
    backgrounds = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    stores = {}
    for how in ("zarr", "direct"):
        path = tmp_path / f"{how}.zarr"
        g = S.create(path, n=5, size=32, n_backgrounds=2, n_units=1, attrs={}, codec=codec)
        writer = S.RowWriter(S.StoreReader(path).location, g)
        with S.writing():
            for name, rows in (("images", images), ("masks", masks), ("backgrounds", backgrounds)):
                if how == "zarr":
                    g[name][1:1 + len(rows)] = rows[:4]
                else:
                    writer.write(name, 1, rows[:4])
        stores[how] = path
    for name, rows in (("images", 4), ("masks", 4), ("backgrounds", 1)):
        files = sorted(p.relative_to(stores["zarr"]) for p in (stores["zarr"] / name / "c").rglob("*") if p.is_file())
        assert len(files) == rows  # one chunk file per row written, none for the rows left alone
        for f in files:
            assert (stores["direct"] / f).read_bytes() == (stores["zarr"] / f).read_bytes(), f
    g = zarr.open_group(str(stores["direct"]), mode="r")
    assert np.array_equal(g["masks"][1:5], masks[:4]) and not g["masks"][0].any()
    if codec != "jpeg:85":
        assert np.array_equal(g["images"][1:5], images[:4])
