"""Faults a careful user meets: a second writer, a signal from a cluster, an edited store. Each
test makes the fault, checks the clear error or refusal, the recovery, and that nothing wrong
was written."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from h36m_prep import store as S
from h36m_prep.build import BuildConfig, build
from h36m_prep.inspect_store import verify
from h36m_prep.lock import LOCK_NAME, LockedError, exclusive
from test_store import _assert_same_arrays


def _build_cmd(raw, out, cfg, workers=1):
    return [sys.executable, "-m", "h36m_prep.cli", "build", str(raw), str(out), "--workers", str(workers),
            "--crop-size", str(cfg.crop_size), "--bg-samples", str(cfg.bg_samples), "--bg-crops", str(cfg.bg_crops)]


def _wait_for(cond, proc, seconds=600):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.02)
    return False


def _units_done(out):
    d = Path(out) / "unit_status" / "c"
    return len(os.listdir(d)) if d.exists() else 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        out += [int(c) for c in text.split()]
    return out


def _gone(pid: int, seconds: float = 10) -> bool:
    """Whether the process has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- one writer at a time

def test_a_second_build_into_a_store_in_use_is_refused_naming_the_first(small_store, small_raw, small_build_cfg,
                                                                        tmp_path):
    out = tmp_path / "busy.zarr"
    proc = subprocess.Popen(_build_cmd(small_raw, out, small_build_cfg), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert _wait_for(lambda: _units_done(out) >= 1, proc), proc.communicate()[1].decode()
    other = BuildConfig(**{**small_build_cfg.__dict__, "margin": 0.3})  # another build's options
    with pytest.raises(LockedError, match=rf"busy.zarr: this store is in use by another writer \(pid {proc.pid} on "):
        build(small_raw, out, other, workers=1, progress=False)
    assert proc.wait(900) == 0, proc.stderr.read().decode()
    assert not (out / LOCK_NAME).exists()
    _assert_same_arrays(out, small_store)  # the refused writer wrote nothing
    assert verify(out) == []


def test_a_lock_left_by_a_killed_build_is_taken_over_with_a_note(small_store, small_raw, small_build_cfg, tmp_path,
                                                                 capfd):
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_build_cmd(small_raw, out, small_build_cfg), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: _units_done(out) >= 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid  # left behind, no longer held
    build(small_raw, out, small_build_cfg, workers=1, progress=False)
    assert f"taking over the lock of pid {proc.pid}" in capfd.readouterr().err
    _assert_same_arrays(out, small_store)


def test_the_lock_is_refused_while_held_and_free_after(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom h36m_prep.lock import exclusive\n"
                               f"with exclusive({str(folder)!r}, 'run folder'):\n print('held', flush=True)\n"
                               " sys.stdin.readline()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    with pytest.raises(LockedError, match=f"pid {holder.pid}"):
        with exclusive(folder, "run folder"):
            pass
    holder.communicate(b"\n")
    with exclusive(folder, "run folder"):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_a_second_training_into_the_same_out_is_refused_and_the_first_is_intact(small_store, tmp_path):
    from train.config import PRETRAIN_PRESETS
    from train.pretrain import pretrain

    out = tmp_path / "run"
    args = [sys.executable, "-m", "train.cli", "pretrain", "--store", str(small_store), "--out", str(out),
            "--preset", "tiny", "--batch", "4", "--input-size", "48", "--steps", "30", "--log-every", "1",
            "--eval-batches", "2", "--workers", "0", "--d-max", "20"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait_for(lambda: (out / "log.jsonl").exists(), proc, 240), proc.communicate()[1].decode()
    import dataclasses
    cfg = dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=48, steps=30, workers=0)
    with pytest.raises(LockedError, match="this run folder is in use by another writer"):
        pretrain(small_store, out, cfg, progress=False)
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True)  # the command line says the same
    assert r.returncode == 2 and "in use by another writer" in r.stderr and "Traceback" not in r.stderr
    assert proc.wait(900) == 0, proc.stderr.read().decode()
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))  # each step logged once: the refused runs wrote nothing


# ---------------------------------------------------------------- signals a cluster sends

def test_sigterm_stops_a_build_with_workers_leaves_no_orphan_and_the_rerun_equals_a_fresh_build(
        small_store, small_raw, small_build_cfg, tmp_path):
    out = tmp_path / "term.zarr"
    cmd = _build_cmd(small_raw, out, small_build_cfg, workers=2)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait_for(lambda: _units_done(out) >= 1, proc), proc.communicate()[1].decode()
    workers = [c for c in _children(proc.pid) if "multiprocessing" in Path(f"/proc/{c}/cmdline").read_text()]
    assert workers
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 2, err
    assert "build interrupted" in err and "rerun the same command" in err and "Traceback" not in err
    assert all(_gone(w) for w in workers), "a worker process outlived the build"
    g = zarr.open_group(str(out), mode="r")
    assert not g.attrs["complete"] and (g["unit_status"][:] == S.PENDING).any()
    assert not (out / LOCK_NAME).exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _assert_same_arrays(out, small_store)


# ---------------------------------------------------------------- edited or damaged stores

def test_a_store_without_its_format_version_is_refused_not_wiped(small_store, small_raw, small_build_cfg, tmp_path):
    import shutil

    out = tmp_path / "edited.zarr"
    shutil.copytree(small_store, out)
    meta = json.loads((out / "zarr.json").read_text())
    del meta["attributes"]["format_version"]
    (out / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(S.StoreError, match="lacks \"format_version\".*restore \"format_version\": 2"):
        build(small_raw, out, small_build_cfg, workers=1, progress=False)
    assert (out / "images").is_dir() and len(list((out / "images" / "c").iterdir())) > 0  # nothing deleted
    meta["attributes"]["format_version"] = S.FORMAT_VERSION  # the recovery the message names
    (out / "zarr.json").write_text(json.dumps(meta))
    assert build(small_raw, out, small_build_cfg, workers=1, progress=False)["frames_written"] == 0
    _assert_same_arrays(out, small_store)


def test_a_complete_flag_over_unwritten_units_is_refused_by_the_loaders(small_raw, small_build_cfg, tmp_path):
    from pairloader import PairLoader

    out = tmp_path / "half.zarr"
    cmd = _build_cmd(small_raw, out, small_build_cfg)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: _units_done(out) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    zarr.open_group(str(out), mode="r+").attrs["complete"] = True  # the edit
    with pytest.raises(S.StoreError, match=r"says it is complete, but \d+ of 16 .* units were never written"):
        PairLoader(out, batch_size=2, seed=0, steps=1)
    assert any("not written" in p for p in verify(out))
    zarr.open_group(str(out), mode="r+").attrs["complete"] = False  # the recovery the message names
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert verify(out) == []


# ---------------------------------------------------------------- time-true frames

def _write_timed(path, times_ms, levels, size=(64, 48)):
    """An mp4 whose frame k is shown at times_ms[k] and is uniformly grey at levels[k]."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=60)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.time_base = s.time_base = Fraction(1, 1000)
        s.codec_context.bit_rate = 20_000_000  # near lossless: the grey levels survive
        for t, level in zip(times_ms, levels):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def test_a_variable_frame_rate_video_is_read_by_timestamp_and_reported(tmp_path):
    """A phone's variable frame rate: a 50 ms hole (two frames missing) and two frames 8 ms apart.
    Counting frames would put row t up to three frames (50 ms) away from time t / 60 s; placed
    by timestamp, every row shows the frame nearest its time."""
    import numpy as np

    from h36m_prep.raw import iter_frames, video_info
    from h36m_prep.rig import RigTake, take_length

    gaps = [17, 16, 17, 17, 16, 17, 50, 17, 16, 8, 9, 17, 16, 17, 33, 17, 16, 17, 17]
    times = np.concatenate([[0], np.cumsum(gaps)])
    levels = (np.arange(len(times)) * 12 + 10) % 250
    vfr = tmp_path / "phone.mp4"
    _write_timed(vfr, times, levels)
    info = video_info(vfr, 60.0)
    rows = int(round(times[-1] * 60 / 1000)) + 1
    assert info.frames == rows and "variable frame rate" in info.variable and "placed by their timestamps" in info.variable
    got = np.array([f.mean() for f in iter_frames(vfr, rate=60.0)])
    nearest = np.abs(times[None, :] - (np.arange(rows) * 1000 / 60)[:, None]).argmin(axis=1)
    assert len(got) == rows
    np.testing.assert_allclose(got, levels[nearest], atol=4)  # the frame shown at each row's time
    counted = levels[np.minimum(np.arange(rows), len(levels) - 1)]
    assert np.abs(got - counted).max() > 24  # counting frames would have been two frames off and more
    # beside a steady 60 fps camera, the take has the steady camera's rate and the phone's rows by time
    steady = tmp_path / "steady.mp4"
    _write_timed(steady, np.round(np.arange(rows) * 1000 / 60), np.full(rows, 128))
    take = RigTake("rig", "t", "", "t", None, {"a": steady, "b": vfr}, {"a": 0, "b": 0})
    with pytest.warns(UserWarning, match="phone.mp4: variable frame rate"):
        n, fps, _ = take_length(take, None)
    assert fps == pytest.approx(60.0, abs=0.01) and n == rows


# ---------------------------------------------------------------- implausible raw data

def test_poses_in_metres_are_refused_before_anything_is_written(small_raw, small_build_cfg, tmp_path):
    import shutil

    from h36m_prep.plan import plan
    from h36m_prep.raw import RawDataError, calibration_for, read_poses
    from h36m_prep.synth.dataset import write_cdf

    raw = tmp_path / "raw"
    shutil.copytree(small_raw / "S1", raw / "S1")
    for extra in ("cameras.json", ".synth"):
        if (small_raw / extra).is_dir():
            shutil.copytree(small_raw / extra, raw / extra)
        elif (small_raw / extra).exists():
            shutil.copy(small_raw / extra, raw / extra)
    cdf = raw / "S1" / "MyPoseFeatures" / "D3_Positions" / "Walking.cdf"
    pose = read_poses(cdf)
    cdf.unlink()
    write_cdf(cdf, pose / 1000)
    out = tmp_path / "out.zarr"
    with pytest.raises(RawDataError, match=r"Walking.cdf: its bones are 0.\d+ long .* look like they are in metres"):
        build(raw, out, small_build_cfg, workers=1, progress=False)
    assert not out.exists()
    cdf.unlink()
    write_cdf(cdf, pose)  # the recovery: millimetres
    assert len(plan(raw, small_build_cfg, calibration_for(raw))[0]) == 2


def test_a_view_whose_masks_are_empty_is_reported_in_the_build_and_in_info(small_raw, small_build_cfg, tmp_path):
    from h36m_prep.inspect_store import info

    cfg = BuildConfig(**{**small_build_cfg.__dict__, "subjects": ("S9",), "mask_threshold": 254.0})
    out = tmp_path / "blind.zarr"
    build(small_raw, out, cfg, workers=1, progress=False)
    notes = info(out)["notes"]
    assert len(notes) == 8 and all(re.search(r"foreground mask is empty in \d+% of the 48 stored frames", n) for n in notes)
    assert "--mask-threshold" in notes[0]


def test_deleted_or_edited_array_metadata_is_named_and_written_anew(small_store, tmp_path):
    import shutil

    from click.testing import CliRunner

    from h36m_prep.cli import main as h36m_prep
    from pairloader import PairLoader

    out = tmp_path / "meta.zarr"
    shutil.copytree(small_store, out)
    (out / "masks" / "zarr.json").unlink()
    meta = json.loads((out / "images" / "zarr.json").read_text())
    meta["codecs"][-1]["name"] = "no_such_codec"
    (out / "images" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(S.StoreError, match=r"array 'images': its metadata cannot be read .*array 'masks': its metadata "
                                           r"\(zarr.json\) is missing; run `h36m-prep verify --mark-damaged"):
        PairLoader(out, batch_size=2, seed=0, steps=1)
    r = CliRunner().invoke(h36m_prep, ["info", str(out)])
    assert r.exit_code == 2 and "array 'masks'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(h36m_prep, ["verify", str(out)])
    assert r.exit_code == 1 and "FAIL array 'masks'" in r.output
    r = CliRunner().invoke(h36m_prep, ["verify", str(out), "--mark-damaged"])
    assert "wrote the metadata of images, masks anew" in r.output, r.output
    assert verify(out) == []
    _assert_same_arrays(out, small_store)  # the chunks were kept


def test_bad_build_and_verify_options_are_named_before_anything_is_written(small_raw, small_store, tmp_path):
    from click.testing import CliRunner

    from h36m_prep.cli import main as h36m_prep

    for option, value, message in (("--crop-size", "0", "--crop-size 0: expected a value from 16 to 4096"),
                                   ("--bg-samples", "-3", "--bg-samples -3: expected a value from 1 up"),
                                   ("--mask-threshold", "300", "--mask-threshold 300.0: expected a value from 0 to 254")):
        out = tmp_path / f"{option}.zarr"
        r = CliRunner().invoke(h36m_prep, ["build", str(small_raw), str(out), option, value])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
        assert not out.exists()
    r = CliRunner().invoke(h36m_prep, ["verify", str(small_store), "--sample", "-5"])
    assert r.exit_code == 2 and "--sample" in r.output and "damaged" not in r.output
