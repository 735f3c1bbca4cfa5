"""The pair loader: the paper's pair definitions, exact reproducibility, rank sharding, and
agreement between the DALI pipeline and the torch reference."""
import numpy as np
import pytest
import torch

from pairloader import PairLoader, PairSampler, SamplerConfig, load_index
from pairloader.loader import dali_available
from pairloader.sampler import JITTER, KEPT, REMOVED, SUBSTITUTED, VIEW

CFG = SamplerConfig(batch=8, out_size=80, d_min=4, d_max=20, **JITTER)  # with the optional jitter
SHARED = SamplerConfig(**{**CFG.__dict__, "share_anchor": True})


@pytest.fixture(scope="module")
def index(small_store):
    return load_index(small_store)


@pytest.fixture(scope="module")
def sampler(index):
    return PairSampler(index, CFG)


def _plans(sampler, steps=range(12), seed=0):
    return [sampler.plan(seed, s) for s in steps]


def test_anchors_are_moving_train_frames(small_store, index):
    import zarr

    g = zarr.open_group(str(small_store), mode="r")
    assert len(index.anchors) > 0
    assert (g["split"][:][index.anchors] == 0).all() and g["moving"][:][index.anchors].all()


def test_synchronized_pairs_share_sequence_and_frame_and_differ_in_camera(sampler, index):
    for plan in _plans(sampler):
        sync = plan.sync_label == 1
        for k in (0, 2):  # synchronized and flipped pairs are both synchronized in time
            r1, r2 = plan.rows[k::3, 0], plan.rows[k::3, 1]
            assert (index.row_seq[r1] == index.row_seq[r2]).all()
            assert (index.row_t[r1] == index.row_t[r2]).all()
            assert (index.row_cam[r1] != index.row_cam[r2]).all()
        assert sync.sum() == CFG.batch


def test_unsynchronized_pairs_are_between_d_min_and_d_max_apart(sampler, index):
    dts = []
    for plan in _plans(sampler, range(40)):
        un = plan.sync_label == 0
        r1, r2 = plan.rows[un, 0], plan.rows[un, 1]
        assert (index.row_seq[r1] == index.row_seq[r2]).all()
        assert (index.row_cam[r1] != index.row_cam[r2]).all()
        dt = np.abs(index.row_t[r2] - index.row_t[r1])
        assert ((CFG.d_min < dt) & (dt < CFG.d_max)).all()
        dts += list(index.row_t[r2] - index.row_t[r1])
    dts = np.array(dts)
    assert (dts > 0).any() and (dts < 0).any()  # both directions in time
    assert len(np.unique(np.abs(dts))) >= 10  # spread over the allowed range


def test_labels_follow_loss_1_and_flip_labels_agree_with_mirroring(sampler):
    for plan in _plans(sampler):
        np.testing.assert_array_equal(plan.sync_label, np.tile([1, 0, -1], CFG.batch))
        np.testing.assert_array_equal(plan.flip_label, np.tile([0, -1, 1], CFG.batch))
        trained = plan.flip_label >= 0
        np.testing.assert_array_equal(plan.flip_label[trained],
                                      (plan.mirrored[trained, 0] != plan.mirrored[trained, 1]).astype(np.int8))
        # unsynchronized pairs are mirrored consistently too
        assert (plan.mirrored[1::3, 0] == plan.mirrored[1::3, 1]).all()
    mirrored = np.concatenate([p.mirrored[0::3, 0] for p in _plans(sampler, range(40))])
    assert 0.3 < mirrored.mean() < 0.7  # the random flip of the whole pair


def test_a_triplet_shares_one_anchor_image_each_pair_mirroring_it_or_not(index):
    plan = PairSampler(index, SHARED).plan(0, 3)
    for i in range(CFG.batch):
        first, later = 3 * i, [3 * i + 1, 3 * i + 2]
        assert plan.same_as[first, 0] == -1 and (plan.same_as[later, 0] == 2 * first).all()
        assert (plan.same_as[:, 1] == -1).all()  # partners are drawn each on their own
        for k in later:
            assert plan.rows[k, 0] == plan.rows[first, 0]
            assert plan.bg_mode[k, 0] == plan.bg_mode[first, 0] and plan.bg_index[k, 0] == plan.bg_index[first, 0]
            a, b = plan.affine[k, 0], plan.affine[first, 0]
            if plan.mirrored[k, 0] != plan.mirrored[first, 0]:  # mirror: output x -> (O - 1) - x
                b = np.column_stack([-b[:, 0], b[:, 1], b[:, 2] + (CFG.out_size - 1) * b[:, 0]])
            np.testing.assert_allclose(a, b, atol=1e-9)
    own = PairSampler(index, CFG).plan(0, 3)  # the default: every image drawn on its own
    assert (own.same_as == -1).all()
    assert not np.allclose(np.abs(own.affine[0::3, 0, 0, 0]), np.abs(own.affine[1::3, 0, 0, 0]))


def test_background_modes_follow_the_mix(sampler, index):
    modes, idx = [], []
    for plan in _plans(sampler, range(40)):
        modes.append(plan.bg_mode.ravel())
        idx.append(plan.bg_index.ravel())
    modes, idx = np.concatenate(modes), np.concatenate(idx)
    assert not (modes == KEPT).any()  # the paper's 50:50 removed:substituted
    assert 0.4 < (modes == REMOVED).mean() < 0.6
    sub = modes == SUBSTITUTED
    assert (idx[sub] >= 0).all() and (idx[sub] < len(index.bg_subject)).all() and (idx[~sub] == -1).all()
    assert len(np.unique(index.bg_camera[idx[sub]])) == 4  # backgrounds of every view


def test_no_test_subject_background_reaches_a_training_batch(small_store, index):
    import zarr

    g = zarr.open_group(str(small_store), mode="r")
    names = list(g.attrs["subjects"])
    assert set(index.bg_subject) == {names.index("S1"), names.index("S9")}  # the bank has both
    for split in ("train", "test"):
        s = PairSampler(load_index(small_store, split), SamplerConfig(**{**CFG.__dict__, "bg_mix": (0.0, 0.0, 1.0)}))
        used = np.concatenate([s.plan(0, k).bg_index.ravel() for k in range(30)])
        assert {names[i] for i in index.bg_subject[used]} == {"S1"}  # training views only


def _substituted_plans(index, steps=200, **extra):
    s = PairSampler(index, SamplerConfig(**{**CFG.__dict__, "bg_mix": (0.0, 0.0, 1.0), **extra}))
    return [s.plan(0, k) for k in range(steps)]


@pytest.mark.parametrize("share_anchor", [False, True])
def test_a_substituted_background_is_mirrored_independently_of_the_person(index, share_anchor):
    plans = _substituted_plans(index, share_anchor=share_anchor)
    mirrored = np.concatenate([p.mirrored.ravel() for p in plans])
    bg = np.concatenate([p.bg_mirrored.ravel() for p in plans])
    assert 0.45 < bg.mean() < 0.55
    for m in (False, True):  # the background's mirror says nothing of the person's
        assert 0.44 < bg[mirrored == m].mean() < 0.56
    # nor does the pair's XOR say anything of the flip label (the shortcut of section 3.2)
    flip = np.concatenate([p.flip_label for p in plans])
    xor = np.concatenate([p.bg_mirrored[:, 0] != p.bg_mirrored[:, 1] for p in plans])
    for label in (0, 1):
        assert 0.43 < xor[flip == label].mean() < 0.57, label
    # while the persons' XOR is the flip label itself
    pxor = np.concatenate([p.mirrored[:, 0] != p.mirrored[:, 1] for p in plans])
    assert (pxor[flip >= 0] == flip[flip >= 0]).all()


def test_rendered_backgrounds_follow_bg_mirrored(small_store):
    """Each substituted background shows in the output unmirrored or mirrored as bg_mirrored
    says, whatever the person's mirror: checked on the pixels where the warped mask is 0."""
    from h36m_prep.store import StoreReader
    from pairloader.reference import compose
    from pairloader.draws import view_affine as _affine

    cfg = SamplerConfig(batch=4, out_size=80, d_min=4, d_max=20, bg_mix=(0.0, 0.0, 1.0))
    reader = StoreReader(small_store)
    plain = np.zeros((2, 3))
    _affine(plain, 0.5, 0.5, 0.5, 0.5, False, 96, 80, VIEW, VIEW, 0.0, 0.0)  # the default view, unmirrored
    cases = set()
    for backend in ("torch", "opencv"):
        loader = PairLoader(small_store, batch_size=4, seed=2, backend=backend, workers=0, steps=2, sampler=cfg)
        for batch in loader:
            plan = loader.plan(batch["step"])
            for side, x in ((0, batch["x1"]), (1, batch["x2"])):
                for k in range(len(x)):
                    row, m, b = plan.rows[k, side], plan.mirrored[k, side], plan.bg_mirrored[k, side]
                    assert batch[f"bg_mirrored{side + 1}"][k] == b and batch[f"bg_mode{side + 1}"][k] == SUBSTITUTED
                    bank = reader.background(plan.bg_index[k, side])
                    zero = np.zeros((96, 96, 1), np.uint8)
                    shown = compose(bank, zero, bank, plain, 80)  # the background as it is
                    weight = np.repeat(reader.mask(row)[..., None] * 255, 3, -1)
                    person = compose(weight, np.ones_like(zero), weight, plan.affine[k, side], 80)
                    bg = (person < person.amin((1, 2), keepdim=True) + 1e-3).all(0)  # no person pixel reaches these
                    want, other = (shown.flip(-1), shown) if b else (shown, shown.flip(-1))
                    err = (x[k] - want).abs()[:, bg].mean()
                    assert err < 0.02, (backend, k, side, float(err))
                    assert (x[k] - other).abs()[:, bg].mean() > 10 * err + 0.05
                    cases.add((bool(m), bool(b)))
    assert len(cases) == 4  # every combination of the person's and the background's mirror


def test_every_unsynchronized_pair_shows_motion(small_store, index):
    """Footnote 1: the partner's pose moved by more than the store's motion threshold, measured
    from the store's own columns in the partner's camera."""
    import zarr

    g = zarr.open_group(str(small_store), mode="r")
    threshold = g.attrs["build"]["move_threshold"]
    pose3d, R_v, root = g["pose3d"][:].astype(float), g["R_v"][:], g["root_cam"][:]

    def camera_pose(r):  # X = R_v^T (pose3d + (0, 0, |root|)), the real camera's frame
        return (pose3d[r] + [0, 0, np.linalg.norm(root[r])]) @ R_v[r]

    sampler = PairSampler(index, CFG)
    moved, still = [], 0
    for plan in _plans(sampler, range(40)):
        for r1, r2 in plan.rows[plan.sync_label == 0]:
            same_time = index.row(index.row_seq[r2], index.row_cam[r2], index.row_t[r1])
            moved.append(np.linalg.norm(camera_pose(r2) - camera_pose(same_time), axis=-1).max())
    assert min(moved) > threshold
    # the check is not vacuous: without it, some unsynchronized pairs would be rigid
    free = PairSampler(index, SamplerConfig(**{**CFG.__dict__, "motion": False}))
    for plan in _plans(free, range(40)):
        for r1, r2 in plan.rows[plan.sync_label == 0]:
            same_time = index.row(index.row_seq[r2], index.row_cam[r2], index.row_t[r1])
            still += np.linalg.norm(camera_pose(r2) - camera_pose(same_time), axis=-1).max() <= threshold
    assert still > 0


def test_the_default_view_is_the_papers_centred_crop_in_pretraining_and_fine_tuning(small_store, index):
    from pairloader import PoseLoader

    plan = PairSampler(index, SamplerConfig(batch=4, out_size=80)).plan(0, 0)
    k = VIEW * 96 / 80  # crop pixels per output pixel: the centred 224 of 256, no jitter
    np.testing.assert_allclose(np.abs(plan.affine[..., 0, 0]), k)
    np.testing.assert_allclose(plan.affine[..., 1, 1], k)
    pose = PoseLoader(small_store, batch_size=4, out_size=80, flip=False).plan(0)
    unmirrored = plan.affine[~plan.mirrored]
    np.testing.assert_allclose(pose.affine, np.broadcast_to(unmirrored[0], pose.affine.shape))


def test_same_seed_and_step_same_plan_other_seed_other_plan(sampler):
    a, b = sampler.plan(7, 123), sampler.plan(7, 123)
    for f in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.rows, sampler.plan(8, 123).rows)
    assert not np.array_equal(a.rows, sampler.plan(7, 124).rows)


def test_ranks_draw_disjoint_anchors(sampler):
    world = 4
    steps_per_epoch = len(sampler.anchors) // (world * CFG.batch)
    seen = []
    for step in range(steps_per_epoch):
        for rank in range(world):
            seen.append(sampler.plan(0, step, rank, world).rows[0::3, 0])
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen)  # within an epoch no anchor is drawn twice


def test_single_view_ablation_pairs_one_camera(index):
    s = PairSampler(index, SamplerConfig(**{**CFG.__dict__, "single_view": True, "rotation": 15.0}))
    plan = s.plan(0, 0)
    assert (index.row_cam[plan.rows[:, 0]] == index.row_cam[plan.rows[:, 1]]).all()
    sync = plan.rows[0::3]
    assert (sync[:, 0] == sync[:, 1]).all()  # the same frame, told apart only by augmentation
    assert not np.allclose(plan.affine[0::3, 0], plan.affine[0::3, 1])


def _batches(store, **kw):
    args = dict(batch_size=4, seed=5, backend="torch", workers=0, steps=3, sampler=CFG)
    return list(PairLoader(store, **{**args, **kw}))


def _same(a, b):
    for k in a:
        if torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k]


def test_loader_is_bitwise_reproducible_across_runs_and_worker_counts(small_store):
    a, b, c = _batches(small_store), _batches(small_store), _batches(small_store, workers=2)
    for x, y, z in zip(a, b, c):
        _same(x, y)
        _same(x, z)
    assert a[0]["x1"].shape == (12, 3, 80, 80) and a[0]["x1"].dtype == torch.float32
    assert not torch.equal(a[0]["x1"], a[1]["x1"])


def test_a_restarted_loader_yields_the_same_batch(small_store):
    full = _batches(small_store, steps=5)
    resumed = _batches(small_store, start_step=3, steps=2)
    _same(full[3], resumed[0])
    _same(full[4], resumed[1])


def test_batch_carries_its_plan_and_mirroring_flips_the_image(small_store):
    from pairloader.fetch import MEAN, StoreReader, fetch_image
    from pairloader.reference import compose
    from pairloader.draws import view_affine as _affine

    batch = _batches(small_store, steps=1)[0]
    plan = PairLoader(small_store, batch_size=4, seed=5, backend="torch", sampler=CFG).plan(0)
    np.testing.assert_array_equal(batch["row1"].numpy(), plan.rows[:, 0])
    np.testing.assert_array_equal(batch["mirrored2"].numpy(), plan.mirrored[:, 1])
    image, weight, behind = fetch_image(StoreReader(small_store), plan.rows[0, 0], SUBSTITUTED, 3)
    a, m = np.zeros((2, 3)), np.zeros((2, 3))
    _affine(a, 0.3, 0.6, 0.4, 0.5, False, 96, 80, 0.8, 0.95, 0.06, 0.0)
    _affine(m, 0.3, 0.6, 0.4, 0.5, True, 96, 80, 0.8, 0.95, 0.06, 0.0)
    plain, mirrored = compose(image, weight, behind, a, 80), compose(image, weight, behind, m, 80)
    torch.testing.assert_close(torch.flip(plain, [-1]), mirrored, atol=1e-4, rtol=0)
    # a removed background is filled with the normalisation mean: it normalises to zero
    flat = np.broadcast_to(np.round(MEAN).astype(np.uint8), image.shape)
    removed = compose(image, np.zeros_like(weight), flat, a, 80)
    assert removed[:, 10:-10, 10:-10].abs().max() < 0.01


def _agree(ref, other):
    """Same plan bookkeeping; pixels within a mean of 2/255 of the 0..1 range."""
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for r, o in zip(ref, other, strict=True):
        for k in ("sync_label", "flip_label", "row1", "row2", "mirrored1", "mirrored2"):
            assert torch.equal(r[k], o[k]), k
        for x in ("x1", "x2"):
            assert o[x].is_contiguous(), x  # x1 and x2 are each one block, ready for the model
            diff = ((r[x] - o[x]).abs() * std).mean()
            assert diff < 2 / 255, diff


def test_opencv_backend_agrees_with_the_torch_reference_and_is_bitwise_reproducible(small_store):
    ref = _batches(small_store, steps=2)
    fast = _batches(small_store, steps=2, backend="opencv")
    again = _batches(small_store, start_step=1, steps=1, backend="opencv", workers=2)
    _same(fast[1], again[0])
    _agree(ref, fast)
    with pytest.raises(ValueError, match="backend"):
        PairLoader(small_store, backend="pillow")


def test_opencv_backend_renders_a_shared_anchor_once_and_mirrors_the_copies(small_store):
    ref = _batches(small_store, steps=2, sampler=SHARED)  # the reference renders every image
    fast = _batches(small_store, steps=2, backend="opencv", workers=2, sampler=SHARED)
    _agree(ref, fast)
    x1, m1 = fast[0]["x1"], fast[0]["mirrored1"]
    for k in range(len(x1)):
        first = k - k % 3
        assert torch.equal(x1[k], x1[first].flip(-1) if m1[k] != m1[first] else x1[first])


@pytest.mark.skipif(not dali_available(), reason="nvidia-dali not installed")
def test_dali_cpu_pipeline_agrees_with_the_torch_reference(small_store):
    ref = _batches(small_store, steps=2)
    dali = _batches(small_store, steps=2, backend="dali", workers=2)
    _agree(ref, dali)


@pytest.mark.gpu
@pytest.mark.skipif(not (dali_available() and torch.cuda.is_available()), reason="needs a CUDA GPU and DALI")
def test_dali_gpu_pipeline_agrees_with_the_torch_reference(small_store):
    ref = _batches(small_store, steps=1)
    gpu = _batches(small_store, steps=1, backend="dali", workers=2, device_id=0)
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert gpu[0]["x1"].is_cuda
    for x in ("x1", "x2"):
        assert ((ref[0][x] - gpu[0][x].cpu()).abs() * std).mean() < 2 / 255


def test_direct_chunk_reads_equal_zarr_reads(small_store, tmp_path):
    import zarr

    from h36m_prep.store import StoreReader

    g = zarr.open_group(str(small_store), mode="r")
    reader = StoreReader(small_store)
    for name in ("images", "masks", "backgrounds"):
        assert reader._layout(name) is not None  # the store's layout takes the fast path
        for r in (0, 7, g[name].shape[0] - 1):
            np.testing.assert_array_equal(reader.row(name, r), g[name][r])
    # another layout (4 frames per chunk, zstd) reads through zarr, with the same result
    other = zarr.open_group(str(tmp_path / "o.zarr"), mode="w")
    a = other.create_array("images", shape=(8, 5, 5, 3), chunks=(4, 5, 5, 3), dtype="uint8")
    a[:] = np.arange(8 * 75, dtype=np.uint8).reshape(8, 5, 5, 3)
    r2 = StoreReader(tmp_path / "o.zarr")
    assert r2._layout("images") is None
    np.testing.assert_array_equal(r2.image(6), a[6])


@pytest.mark.skipif(not dali_available(), reason="nvidia-dali not installed")
def test_dali_batches_are_bitwise_equal_across_worker_counts_and_restarts(small_store):
    one = _batches(small_store, steps=3, backend="dali", workers=1)
    two = _batches(small_store, steps=3, backend="dali", workers=2)
    late = _batches(small_store, start_step=2, steps=1, backend="dali", workers=2)
    for a, b in zip(one, two):
        _same(a, b)
    _same(one[2], late[0])


def test_a_damaged_chunk_stops_the_loader_with_an_error_naming_the_file(small_store, tmp_path):
    import re
    import shutil

    from h36m_prep.store import StoreReadError

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    row = PairLoader(store, batch_size=4, seed=5, sampler=CFG).plan(1).rows[0, 0]
    chunk = store / "images" / "c" / str(row) / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:64])  # truncated
    with pytest.raises(StoreReadError, match=re.escape(str(chunk)) + ".*h36m-prep verify"):
        list(PairLoader(store, batch_size=4, seed=5, backend="opencv", workers=2, steps=3, sampler=CFG))


def test_a_loader_left_early_stops_its_render_threads(small_store):
    import threading

    loader = PairLoader(small_store, batch_size=4, seed=5, backend="opencv", workers=2, sampler=CFG)
    before = threading.active_count()
    batches = iter(loader)
    first = next(batches)  # an endless loader: threads render ahead
    assert threading.active_count() > before
    batches.close()
    assert threading.active_count() == before
    assert first["step"] == 0


def test_recompression_draws_each_crops_quality_in_range_and_changes_nothing_else_of_the_plan(index, small_store):
    """`--recompress`: every crop re-compressed as a JPEG of its own random quality (hiding the
    videos' keyframe phase); the other draws of a plan are those of the plan without it."""
    on = PairSampler(index, SamplerConfig(**{**CFG.__dict__, "recompress": (30, 95)}))
    off = PairSampler(index, CFG)
    for step in range(6):
        a, b = on.plan(3, step), off.plan(3, step)
        for name in ("rows", "mirrored", "sync_label", "flip_label", "affine", "bg_mode", "bg_index", "bg_mirrored"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        q = a.qualities()
        assert q.shape == (2 * len(a.rows),) and q.min() >= 30 and q.max() <= 95 and len(np.unique(q)) > 5
        assert np.array_equal(q, on.plan(3, step).qualities())  # same seed and step, same qualities
        assert not b.qualities().any()
    sampler = SamplerConfig(**{**CFG.__dict__, "recompress": (30, 40)})
    plain, squeezed = _batches(small_store, steps=1, backend="opencv"), _batches(small_store, steps=1,
                                                                                  backend="opencv", sampler=sampler)
    assert not torch.equal(plain[0]["x1"], squeezed[0]["x1"])  # the pixels changed ...
    _agree(plain, squeezed)  # ... by what a JPEG of quality 30-40 changes, no more
    _same(squeezed[0], _batches(small_store, steps=1, backend="opencv", sampler=sampler)[0])
    dali = _batches(small_store, steps=1, backend="dali", workers=1, sampler=sampler)  # re-compressed on the CPU too
    _agree(squeezed, dali)
    with pytest.raises(ValueError, match="recompress"):
        SamplerConfig(recompress=(50, 20))


def test_a_window_the_affine_only_scales_and_mirrors_is_copied_or_resized_with_the_warps_samples():
    import cv2

    from pairloader.render import axis_aligned_window, warp_opencv

    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 2)

    def general(a, size):  # what the warp gives without the shortcut
        return cv2.warpAffine(crop, a, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    for size, s, x0, y0 in [(224, 1.0, 16, 16), (64, 3.5, 16, 16), (64, 4.0, 0, 0), (128, 1.75, 10, 20)]:
        for mirrored in (False, True):
            a = np.array([[s, 0, x0 + 0.5 * s - 0.5], [0, s, y0 + 0.5 * s - 0.5]])
            if mirrored:  # output pixel i shows what pixel size - 1 - i shows unmirrored
                a = np.array([[-s, 0, a[0, 2] + s * (size - 1)], [0, s, a[1, 2]]])
            assert axis_aligned_window(a, size, 256, 256) == (x0, y0, round(size * s), round(size * s), mirrored)
            out = np.empty((size, size, 3), np.uint8)
            got = warp_opencv(crop, a, size, out)
            assert got is out
            diff = np.abs(got.astype(int) - general(a, size).astype(int))
            assert diff.max() <= (0 if s == 1 else 1), (size, s, mirrored)  # fixed-point rounding only
    turned = cv2.getRotationMatrix2D((128, 128), 5, 1.0)
    off_grid = np.array([[1.0, 0, 16.3], [0, 1.0, 16.0]])
    outside = np.array([[1.0, 0, 40.0], [0, 1.0, 16.0]])  # the window would leave the crop
    for a in (turned, off_grid, outside):
        assert axis_aligned_window(a, 224, 256, 256) is None
        assert np.array_equal(warp_opencv(crop, a, 224), general(a, 224))


def test_rendering_only_the_window_equals_compositing_the_whole_crop_then_warping():
    import cv2

    from pairloader.render import composite_opencv, render_image, warp_opencv
    from pairloader.sampler import KEPT, REMOVED, SUBSTITUTED

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 2)
    behind = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 3)
    weight = (cv2.GaussianBlur(rng.random((256, 256)), (0, 0), 8) > 0.5).astype(np.uint8)[..., None]
    assert 0.1 < weight.mean() < 0.9  # both the person and what is behind show in every window

    affines = []
    for size, s, x0, y0 in [(224, 1.0, 16, 16), (224, 1.0, 0, 32), (64, 3.5, 16, 16), (128, 1.75, 10, 20)]:
        a = np.array([[s, 0, x0 + 0.5 * s - 0.5], [0, s, y0 + 0.5 * s - 0.5]])
        affines += [(size, a), (size, np.array([[-s, 0, a[0, 2] + s * (size - 1)], [0, s, a[1, 2]]]))]
    affines += [(224, cv2.getRotationMatrix2D((128, 128), 5, 1.0)), (64, np.array([[3.3, 0, 16.3], [0, 3.3, 9.0]]))]
    for size, a in affines:
        for mode in (KEPT, REMOVED, SUBSTITUTED):
            want = warp_opencv(composite_opencv(image, weight, behind, mode), a, size)
            assert np.array_equal(render_image(image, weight, behind, mode, a, size), want), (size, a, mode)
            out = np.full((size, size, 3), 7, np.uint8)
            assert render_image(image, weight, behind, mode, a, size, out) is out
            assert np.array_equal(out, want), (size, a, mode)
