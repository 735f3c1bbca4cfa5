"""Pose metrics on hand-made cases, numpy and torch alike."""
import numpy as np
import pytest
import torch

from h36m_prep.geometry import mirror_pose
from h36m_prep.geometry.camera import quaternion_to_rotation
from train.metrics import ROOT_CORRECTION, mpjpe, nmpjpe, optimal_scale, pmpjpe, summary


def _poses(n=5, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 300, (n, 17, 3))
    gt[:, 0] = 0
    return gt


def test_a_similarity_transform_of_a_pose_has_pmpjpe_zero_and_the_expected_mpjpe():
    gt = _poses()
    R = quaternion_to_rotation(np.array([0.9, 0.1, -0.3, 0.2]) / np.linalg.norm([0.9, 0.1, -0.3, 0.2]))
    pred = 1.3 * gt @ R.T + np.array([50.0, -20.0, 10.0])
    np.testing.assert_allclose(pmpjpe(pred, gt), 0, atol=1e-9)
    want = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    np.testing.assert_allclose(mpjpe(pred, gt), want)
    assert (nmpjpe(pred, gt) <= mpjpe(pred, gt) + 1e-9).all()


def test_known_values_by_hand():
    gt = np.zeros((1, 17, 3))
    gt[0, 1:, 0] = 100.0
    pred = gt.copy()
    pred[0, 1:, 0] = 200.0  # every non-root joint 100 mm off, along x
    assert mpjpe(pred, gt)[0] == pytest.approx(100 * 16 / 17)
    assert optimal_scale(pred, gt)[0] == pytest.approx(0.5)
    assert nmpjpe(pred, gt)[0] == pytest.approx(0)  # a pure scale error
    s = summary(pred, gt)
    assert s["mpjpe"] == pytest.approx(100.0)  # x 17/16: the mean over the 16 predicted joints
    assert summary(pred, gt, root_fixed=False)["mpjpe"] == pytest.approx(100 * 16 / 17)
    assert ROOT_CORRECTION == 17 / 16


def test_nmpjpe_never_exceeds_mpjpe_and_pmpjpe_never_exceeds_nmpjpe_on_random_poses():
    gt, pred = _poses(50, 1), _poses(50, 2)
    m, n, p = mpjpe(pred, gt), nmpjpe(pred, gt), pmpjpe(pred, gt)
    assert (n <= m + 1e-9).all() and (p <= n + 1e-9).all() and (p > 0).all()


def test_a_mirror_is_not_a_rotation():
    gt = _poses(3, 4)
    assert (pmpjpe(mirror_pose(gt), gt) > 1).all()  # Procrustes allows no reflection


def test_torch_and_numpy_agree():
    gt, pred = _poses(8, 5), _poses(8, 6)
    for fn in (mpjpe, nmpjpe, pmpjpe):
        t = fn(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (8,)
        np.testing.assert_allclose(t.numpy(), fn(pred, gt), rtol=1e-4)
