"""JPEG crops in the store: a registered Zarr codec, quality against the lossless store, the
reduced decode of the OpenCV backend, reproducible batches, and damage reported by file."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import zarr

from h36m_prep import store as S
from h36m_prep.build import build
from h36m_prep.inspect_store import info, verify
from h36m_prep.store import JpegError, decode_jpeg, encode_jpeg
from pairloader import PairLoader
from h36m_prep.store import StoreReader, StoreReadError
from pairloader.fetch import reduction
from pairloader.sampler import SamplerConfig

PSNR_MIN = 35.0          # dB: JPEG-90 crops against the lossless crops of the same frames
REDUCED_MEAN, REDUCED_P99 = 1.0, 6.0  # grey levels: reduced decode against full decode + area resize


@pytest.fixture(scope="module")
def jpeg_store(small_raw, small_build_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("jpeg") / "jpeg.zarr"
    build(small_raw, out, dataclasses.replace(small_build_cfg, image_codec="jpeg:90"), workers=1, progress=False)
    return out


def test_a_jpeg_store_holds_one_jpeg_file_per_frame_that_plain_zarr_reads(jpeg_store):
    g = S.open_store(jpeg_store)
    assert g.attrs["image_codec"] == "jpeg:90" and verify(jpeg_store) == []
    chunk = jpeg_store / "images" / "c" / "5" / "0" / "0" / "0"
    data = chunk.read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    plain = zarr.open_group(str(jpeg_store), mode="r")["images"][5]  # through the registered codec
    assert np.array_equal(plain, StoreReader(jpeg_store).image(5))
    assert np.array_equal(plain, cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                                              cv2.COLOR_BGR2RGB))
    assert S.open_store(jpeg_store)["masks"].metadata.codecs[-1].to_dict()["name"] == "blosc"  # masks lossless
    i = info(jpeg_store)
    assert i["image_codec"] == "jpeg:90" and i["projected_h36m_bytes"] == pytest.approx(2.5e6 * i["bytes_per_frame"])


def test_jpeg_crops_are_within_the_stated_psnr_of_the_lossless_ones(jpeg_store, small_store):
    a, b = zarr.open_group(str(small_store), mode="r"), zarr.open_group(str(jpeg_store), mode="r")
    rows = np.arange(0, a["images"].shape[0], 7)
    mse = np.mean((a["images"].get_orthogonal_selection((rows,)).astype(np.float64)
                   - b["images"].get_orthogonal_selection((rows,))) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= PSNR_MIN
    for name in ("masks", "pose3d", "K", "box", "moving"):  # everything but the crops is the same
        assert np.array_equal(a[name][:], b[name][:])
    assert info(jpeg_store)["bytes_per_frame"] < 0.4 * info(small_store)["bytes_per_frame"]


def test_reduced_decode_matches_a_full_decode_and_area_resize():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([120 + 60 * np.sin(xx / 9.0), 100 + 50 * np.cos(yy / 13.0), (xx + yy) / 2.0], -1)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    data = encode_jpeg(img, 90)
    full = decode_jpeg(data)
    for k in (2, 4, 8):
        reduced = decode_jpeg(data, k)
        assert reduced.shape == (256 // k, 256 // k, 3)
        d = np.abs(reduced.astype(int) - cv2.resize(full, (256 // k, 256 // k), interpolation=cv2.INTER_AREA))
        assert d.mean() <= REDUCED_MEAN and np.percentile(d, 99) <= REDUCED_P99, (k, d.mean(), np.percentile(d, 99))
    with pytest.raises(JpegError, match="truncated"):
        decode_jpeg(data[:len(data) // 2])


def test_the_reduction_follows_the_output_size(jpeg_store, small_store):
    jpeg, lz4 = StoreReader(jpeg_store), StoreReader(small_store)
    scale = lambda s: np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])  # noqa: E731  crop px per output px
    assert [reduction(scale(s), jpeg) for s in (0.9, 1.0, 1.9, 2.0, 3.5, 4.0, 9.0)] == [1, 1, 1, 2, 2, 4, 8]
    assert reduction(scale(4.0), lz4) == 1  # lossless crops decode whole


@pytest.mark.parametrize("out_size", [48, 24])  # at 24 px the 96 px crops decode at half their side
def test_jpeg_batches_are_reproducible_and_close_to_the_full_decode(jpeg_store, out_size):
    def batches(workers, backend="opencv"):
        loader = PairLoader(jpeg_store, batch_size=4, seed=3, steps=2, backend=backend, workers=workers,
                            sampler=SamplerConfig(d_max=20, out_size=out_size))
        return [b["x1"].clone() for b in loader]

    first = batches(0)
    for again in (batches(0), batches(2)):
        assert all(torch.equal(x, y) for x, y in zip(first, again))
    reference = batches(0, backend="torch")  # decodes every crop whole
    diff = torch.cat([(x - y).abs().flatten() for x, y in zip(first, reference)])
    assert diff.mean() < 0.05  # normalised units (1 grey level is about 0.017)


def test_a_corrupt_jpeg_chunk_stops_the_loader_naming_the_file(small_raw, small_build_cfg, tmp_path):
    out = tmp_path / "broken.zarr"
    build(small_raw, out, dataclasses.replace(small_build_cfg, image_codec="jpeg:75", subjects=("S1",)),
          workers=1, progress=False)
    chunk = out / "images" / "c" / "10" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:200])  # truncated
    with pytest.raises(StoreReadError, match=str(chunk)):
        StoreReader(out).image(10)
    problems = verify(out)
    assert any(str(chunk) in p for p in problems)


def test_a_valid_jpeg_of_the_wrong_size_is_damage_found_by_verify_the_loader_and_the_dali_path(jpeg_store, tmp_path):
    """A chunk that is a complete, decodable JPEG, but 32 x 32 in a store of 96 px crops."""
    import shutil

    import numpy as np
    from click.testing import CliRunner

    from h36m_prep.cli import main as h36m_prep
    from h36m_prep.store.codec import encode_jpeg

    out = tmp_path / "small_jpegs.zarr"
    shutil.copytree(jpeg_store, out)
    chunk = out / "images" / "c" / "10" / "0" / "0" / "0"
    chunk.write_bytes(encode_jpeg(np.full((32, 32, 3), 128, np.uint8), 90))
    with pytest.raises(StoreReadError, match=r"a valid JPEG of 32 x 32 px, where the store's crops are 96 x 96"):
        StoreReader(out).image(10)
    with pytest.raises(StoreReadError, match=r"row 10 of 'images' is a JPEG of 32 x 32 px, where the store's crops"):
        StoreReader(out).encoded_image(10)  # what DALI's decoder is given
    assert any(str(chunk) in p and "32 x 32" in p for p in verify(out))
    r = CliRunner().invoke(h36m_prep, ["verify", str(out), "--mark-damaged"])
    assert r.exit_code == 1 and "marked for re-rendering: 1 unit(s)" in r.output


@pytest.mark.parametrize("which", ["lz4", "jpeg"])
def test_uint8_batches_normalized_after_the_transfer_equal_the_float_path(small_store, jpeg_store, which):
    """uint8 batches, normalized after the transfer, equal the float batches; they are
    channels-last in memory (each image warped straight into the batch), as a GPU's convolutions
    prefer."""
    from pairloader import PoseLoader, normalize

    store = small_store if which == "lz4" else jpeg_store
    cfg = SamplerConfig(d_max=20, out_size=24)
    args = dict(batch_size=4, seed=5, steps=2, backend="opencv", workers=0, sampler=cfg)
    floats, bytes_ = list(PairLoader(store, **args)), list(PairLoader(store, uint8=True, **args))
    for f, b in zip(floats, bytes_):
        assert b["x1"].dtype == torch.uint8 and b["x1"].element_size() * 4 == f["x1"].element_size()
        assert b["x1"].is_contiguous(memory_format=torch.channels_last) and b["x1"].shape == f["x1"].shape
        assert (normalize(b["x1"]) - f["x1"]).abs().max() <= 1e-6
        assert (normalize(b["x2"]) - f["x2"]).abs().max() <= 1e-6
    pose = dict(batch_size=4, seed=1, steps=1, backend="opencv", workers=0, out_size=24)
    f, b = next(iter(PoseLoader(store, **pose))), next(iter(PoseLoader(store, uint8=True, **pose)))
    assert (normalize(b["image"]) - f["image"]).abs().max() <= 1e-6
    assert b["image"].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="OpenCV backend"):
        PairLoader(store, uint8=True, backend="torch")


def test_pretraining_on_uint8_batches_gives_the_same_losses(small_store, tmp_path):
    import json

    from train.config import PRETRAIN_PRESETS
    from train.pretrain import pretrain

    cfg = dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=32, steps=3, log_every=1,
                              checkpoint_every=3, eval_batches=1, workers=0, d_max=20, backend="opencv")
    pretrain(small_store, tmp_path / "f", cfg, progress=False)
    pretrain(small_store, tmp_path / "u", dataclasses.replace(cfg, uint8_batches=True), progress=False)
    loss = lambda d: [json.loads(line)["loss"] for line in open(tmp_path / d / "log.jsonl")]  # noqa: E731
    assert loss("f") == loss("u")


def _dali_available() -> bool:
    from pairloader.loader import dali_available

    return dali_available()


@pytest.mark.skipif(not _dali_available(), reason="nvidia-dali not installed")
def test_dali_decodes_the_jpeg_files_itself_and_agrees_with_the_reference(jpeg_store):
    from pairloader.fetch import fetch_encoded

    reader = StoreReader(jpeg_store)
    data, weight, behind = fetch_encoded(reader, 3, 1, -1)
    assert data.ndim == 1 and bytes(data[:2]) == b"\xff\xd8" and weight.shape == (96, 96, 1)
    cfg = SamplerConfig(d_max=20, out_size=48)

    def batches(backend, workers):
        return list(PairLoader(jpeg_store, batch_size=4, seed=2, steps=2, backend=backend, workers=workers,
                               sampler=cfg))

    ref, dali = batches("torch", 0), batches("dali", 2)
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for r, d in zip(ref, dali, strict=True):
        assert torch.equal(r["row1"], d["row1"]) and torch.equal(r["row2"], d["row2"])
        for x in ("x1", "x2"):
            assert ((r[x] - d[x]).abs() * std).mean() < 2 / 255  # libjpeg in both, DALI's own warp
    again = batches("dali", 1)
    assert all(torch.equal(a["x1"], b["x1"]) for a, b in zip(dali, again))


@pytest.mark.gpu
@pytest.mark.skipif(not (_dali_available() and torch.cuda.is_available()), reason="needs a CUDA GPU and DALI")
def test_dali_gpu_decodes_jpeg_with_nvjpeg_and_agrees_with_the_reference(jpeg_store):
    cfg = SamplerConfig(d_max=20, out_size=48)
    ref = list(PairLoader(jpeg_store, batch_size=4, seed=2, steps=1, backend="torch", workers=0, sampler=cfg))
    gpu = list(PairLoader(jpeg_store, batch_size=4, seed=2, steps=1, backend="dali", workers=2, device_id=0,
                          sampler=cfg))
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for x in ("x1", "x2"):  # nvJPEG's IDCT differs from libjpeg's by a grey level or so
        assert ((ref[0][x] - gpu[0][x].cpu()).abs() * std).mean() < 3 / 255


def test_every_k_stores_every_kth_training_frame_and_the_sampler_stays_in_source_frames(small_raw, small_build_cfg,
                                                                                      small_store, tmp_path):
    from pairloader.index import load_index
    from pairloader.sampler import PairSampler

    out = tmp_path / "every3.zarr"
    build(small_raw, out, dataclasses.replace(small_build_cfg, every=3), workers=1, progress=False)
    g, full = S.open_store(out), S.open_store(small_store)
    assert verify(out) == [] and g.attrs["build"]["every"] == 3
    train, test = g["split"][:] == 0, g["split"][:] == 1
    assert (g["frame"][:][train] % 3 == 0).all() and np.array_equal(np.unique(g["frame"][:][train]), np.arange(0, 48, 3))
    assert test.sum() == (full["split"][:] == 1).sum()  # the test frames the evaluation needs: all of them
    # a stored row is the same crop and pose as the full store's row of the same (sequence, camera, frame)
    ix, ix_full = load_index(out, moving_only=False), load_index(small_store, moving_only=False)
    for r in (0, 7, 20, int(np.flatnonzero(test)[5])):
        s, c, t = ix.row_seq[r], ix.row_cam[r], ix.row_t[r]
        assert ix.row(s, c, t) == r
        twin = ix_full.row(s, c, t)
        assert np.array_equal(g["images"][r], full["images"][twin]) and np.array_equal(g["pose3d"][r], full["pose3d"][twin])
    with pytest.raises(KeyError):
        ix.row(int(ix.row_seq[0]), int(ix.row_cam[0]), 1)  # frame 1 of a training sequence is not stored
    # pairs: partners are stored frames, gaps in source frames within (d_min, d_max)
    cfg = SamplerConfig(batch=8, d_min=4, d_max=20, motion=False)
    frame = g["frame"][:]
    for step in range(5):
        plan = PairSampler(load_index(out), cfg).plan(0, step)
        dt = np.abs(frame[plan.rows[1::3, 1]].astype(int) - frame[plan.rows[1::3, 0]])
        assert ((dt > 4) & (dt < 20) & (dt % 3 == 0)).all()
        assert (frame[plan.rows[0::3, 1]] == frame[plan.rows[0::3, 0]]).all()
