"""PoseLoader: standardized targets, flips that mirror image and pose together, the
evaluation protocol of every 64th test frame."""
import numpy as np
import pytest
import torch
import zarr

from h36m_prep.geometry import FLIP_PERM
from pairloader import PoseLoader, pose_stats, unstandardize
from pairloader.loader import dali_available


def test_standardization_round_trips(small_store):
    loader = PoseLoader(small_store, batch_size=6, seed=0, backend="torch", steps=2, out_size=64)
    for b in loader:
        back = unstandardize(b["target"], loader.mean, loader.std)
        torch.testing.assert_close(back, b["pose"], atol=1e-3, rtol=0)
        assert b["image"].shape == (6, 3, 64, 64)
    mean, std = pose_stats(small_store)
    assert std[0].tolist() == [1.0, 1.0, 1.0] and (std[1:] > 1).all()


def test_a_flip_mirrors_image_and_pose_together(small_store):
    plain = PoseLoader(small_store, batch_size=8, seed=4, backend="torch", steps=1, flip=False, out_size=64)
    flipped = PoseLoader(small_store, batch_size=8, seed=4, backend="torch", steps=1, flip=True, out_size=64)
    a, b = next(iter(plain)), next(iter(flipped))
    assert torch.equal(a["row"], b["row"]) and b["mirrored"].any() and not b["mirrored"].all()
    m = b["mirrored"]
    # the pose: x negated, left and right joints swapped
    want = a["pose"][m][:, torch.as_tensor(FLIP_PERM.copy())] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(b["pose"][m], want)
    torch.testing.assert_close(b["pose"][~m], a["pose"][~m])
    # the image: a horizontal mirror
    torch.testing.assert_close(b["image"][m], torch.flip(a["image"][m], [-1]), atol=1e-4, rtol=0)


def test_evaluation_takes_every_64th_test_frame_once(small_store):
    g = zarr.open_group(str(small_store), mode="r")
    test = PoseLoader(small_store, batch_size=5, split="test", every=16, backend="torch", out_size=32)
    rows = torch.cat([b["row"][b["valid"]] for b in test]).numpy()
    want = np.flatnonzero((g["split"][:] == 1) & (g["frame"][:] % 16 == 0))
    np.testing.assert_array_equal(rows, want)
    assert not test.sampler.flip
    every64 = PoseLoader(small_store, batch_size=4, split="test", every=64, backend="torch", out_size=32)
    rows = torch.cat([b["row"][b["valid"]] for b in every64]).numpy()
    assert (g["frame"][:][rows] % 64 == 0).all() and len(rows) == len(every64.sampler.rows)


def test_train_order_restarts_exactly(small_store):
    full = list(PoseLoader(small_store, batch_size=4, seed=2, backend="torch", steps=4, out_size=32))
    late = list(PoseLoader(small_store, batch_size=4, seed=2, backend="torch", start_step=2, steps=2, out_size=32))
    for x, y in zip(full[2:], late):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["target"], y["target"])


@pytest.mark.skipif(not dali_available(), reason="nvidia-dali not installed")
def test_dali_pose_images_agree_with_the_reference(small_store):
    ref = next(iter(PoseLoader(small_store, batch_size=4, seed=1, backend="torch", steps=1, out_size=64)))
    dali = next(iter(PoseLoader(small_store, batch_size=4, seed=1, backend="dali", steps=1, out_size=64, workers=1)))
    assert torch.equal(ref["target"], dali["target"])
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert ((ref["image"] - dali["image"]).abs() * std).mean() < 2 / 255


def test_opencv_pose_images_agree_with_the_reference(small_store):
    ref = next(iter(PoseLoader(small_store, batch_size=4, seed=1, backend="torch", steps=1, out_size=64)))
    fast = next(iter(PoseLoader(small_store, batch_size=4, seed=1, backend="opencv", steps=1, out_size=64)))
    assert torch.equal(ref["target"], fast["target"]) and torch.equal(ref["mirrored"], fast["mirrored"])
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert ((ref["image"] - fast["image"]).abs() * std).mean() < 2 / 255


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_background_removal_fills_outside_the_mask_and_keeps_the_person(small_store, backend):
    """As in pretraining: where the (warped) store mask is 0 the image is the mean fill, which
    normalizes to 0; where it is 1 the pixels equal those of the image with the background kept."""
    from h36m_prep.store import StoreReader
    from pairloader.reference import compose

    args = dict(batch_size=8, seed=1, backend=backend, workers=0, steps=1, out_size=64)
    kept = next(iter(PoseLoader(small_store, background="kept", **args)))
    removed = next(iter(PoseLoader(small_store, background="removed", **args)))
    plan = PoseLoader(small_store, **args).plan(0)
    reader = StoreReader(small_store)
    fg_seen = bg_seen = 0
    for k, row in enumerate(plan.rows):
        mask = np.repeat(reader.mask(row)[..., None] * 255, 3, -1)
        warped = compose(mask, np.ones_like(mask[..., :1]), mask, plan.affine[k], 64)
        fg = (warped > warped.amax((1, 2), keepdim=True) - 1e-3).all(0)  # every pixel the warp mixes is foreground
        bg = (warped < warped.amin((1, 2), keepdim=True) + 1e-3).all(0)
        assert removed["image"][k][:, bg].abs().max() < 0.02  # the mean fill
        assert (removed["image"][k][:, fg] - kept["image"][k][:, fg]).abs().max() < 0.02
        assert (kept["image"][k][:, bg]).abs().mean() > 0.1  # the room is there when kept
        fg_seen, bg_seen = fg_seen + fg.sum(), bg_seen + bg.sum()
    assert fg_seen > 100 and bg_seen > 1000
    with pytest.raises(ValueError, match="background"):
        PoseLoader(small_store, background="substituted")
