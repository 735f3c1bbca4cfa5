"""The geometry module: camera model of the public calibration, distortion, virtual camera,
Procrustes, skeleton tables."""
import json

import numpy as np
import pytest

from h36m_prep import geometry as G


def _hamilton(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _by_hand(X, e):
    """The calibration document's formula step by step, rotating with quaternion products."""
    q = np.array(e["orientation_wxyz"]) / np.linalg.norm(e["orientation_wxyz"])
    q_conj = q * [1, -1, -1, -1]
    v = np.concatenate([[0.0], np.asarray(X) - e["center_world_mm"]])
    Xc = _hamilton(_hamilton(q_conj, v), q)[1:]  # R^T (X - C)
    x = Xc[:2] / Xc[2]
    k1, k2, k3 = e["radial_k1k2k3"]
    p1, p2 = e["tangential_p1p2"]
    r2 = x @ x
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = p1 * x[0] + p2 * x[1]
    xd = x * (radial + tan) + np.array([p1, p2]) * r2
    return np.array(e["focal_length"]) * xd + e["principal_point"], Xc[2]


def test_projection_of_public_calibration_matches_the_documented_formula():
    doc = json.loads(G.default_calibration_path().read_text())["cameras"]
    cams = G.load_calibration()
    points = np.array([[0, 0, 900.0], [500, -300, 1500.0], [-800, 600, 100.0]])
    for subject, entries in doc.items():
        for cid, e in entries.items():
            for X in points:
                uv_hand, _ = _by_hand(X, e)
                np.testing.assert_allclose(G.project(X, cams[subject][cid]), uv_hand, atol=1e-6)


def test_public_calibration_sanity_figure():
    """(0, 0, 900) lands near the image centre at about 4.1-5.6 m, and world up points to -y."""
    for subject, cams in G.load_calibration().items():
        for cam in cams.values():
            X = np.array([0, 0, 900.0])
            uv = G.project(X, cam)
            depth = G.world_to_camera(X, cam)[2]
            assert 4000 < depth < 5700
            assert abs(uv[0] - cam.width / 2) < 200 and abs(uv[1] - cam.height / 2) < 200
            up = G.project(X + [0, 0, 1000], cam) - uv
            assert up[1] < -150 and abs(up[0]) < abs(up[1]) / 4


def test_world_camera_round_trip_and_quaternion_round_trip():
    cam = G.load_calibration()["S5"]["58860488"]
    X = np.random.default_rng(0).normal(0, 1000, (10, 3))
    np.testing.assert_allclose(G.camera_to_world(G.world_to_camera(X, cam), cam), X, atol=1e-9)
    np.testing.assert_allclose(G.quaternion_to_rotation(G.rotation_to_quaternion(cam.R)), cam.R, atol=1e-12)


@pytest.mark.parametrize("subject", G.SUBJECTS)
def test_undistort_inverts_distort_to_a_hundredth_of_a_pixel(subject):
    for cam in G.load_calibration()[subject].values():
        jj, ii = np.meshgrid(np.linspace(0, cam.width - 1, 60), np.linspace(0, cam.height - 1, 60))
        uv = np.stack([jj, ii], -1)
        # every pixel of the image is the distortion of some ideal point: find it, distort it back
        x = G.undistort((uv - cam.c) / cam.f, cam.k, cam.p)
        back = G.distort(x, cam.k, cam.p) * cam.f + cam.c
        assert np.abs(back - uv).max() < 0.01
        # and the other way round: ideal points -> distorted -> undistorted
        xd = G.distort(x, cam.k, cam.p)
        assert np.abs((G.undistort(xd, cam.k, cam.p) - x) * cam.f).max() < 0.01


def test_pixel_rays_reproject_onto_their_pixels():
    cam = G.load_calibration()["S9"]["60457274"]
    uv = np.array([[0.0, 0.0], [999, 1001], [512, 300], [20, 800]])
    rays = G.pixel_rays(uv, cam)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0)
    np.testing.assert_allclose(G.project_camera_frame(rays * 3000, cam), uv, atol=1e-3)


def test_scaled_camera_keeps_pixel_centres_consistent():
    cam = G.load_calibration()["S1"]["54138969"]
    small = cam.scaled(0.25)
    X = np.array([[100, 200, 900.0], [-400, 50, 1600.0]])
    np.testing.assert_allclose(G.project(X, small), (G.project(X, cam) + 0.5) * 0.25 - 0.5, atol=1e-9)
    assert (small.width, small.height) == (250, 250)


def test_virtual_rotation_sends_the_point_onto_the_optical_axis():
    rng = np.random.default_rng(1)
    for p in rng.normal(0, 1500, (20, 3)) + [0, 0, 5000]:
        R = G.virtual_rotation(p)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(R), 1.0)
        np.testing.assert_allclose(R @ p, [0, 0, np.linalg.norm(p)], atol=1e-9)
        assert abs(R[0, 1]) < 1e-12  # the virtual x axis stays perpendicular to the camera's y
    np.testing.assert_allclose(G.virtual_rotation(np.array([0, 0, 4000.0])), np.eye(3), atol=1e-12)


def test_crop_camera_puts_the_point_at_the_crop_centre_and_fits_the_joints():
    cam = G.load_calibration()["S1"]["55011271"]
    joints = np.random.default_rng(2).normal(0, 300, (17, 3)) + [600, -400, 4500]
    R = G.virtual_rotation(joints[0])
    f = G.crop_focal(joints, R, 256, margin=0.2)
    K = G.crop_intrinsics(f, 256)
    uv = G.project_virtual(joints @ R.T, K)
    np.testing.assert_allclose(uv[0], [127.5, 127.5], atol=1e-9)
    assert uv.min() >= 0 and uv.max() <= 255
    assert np.abs(uv - 127.5).max() == pytest.approx(128 / 1.2, rel=1e-6)
    # the crop's sampling map sends the crop centre to where the point is in the real image
    mx, my = G.crop_sampling_map(R, K, cam, 256)
    centre = [(mx[127, 127] + mx[128, 128]) / 2, (my[127, 127] + my[128, 128]) / 2]
    np.testing.assert_allclose(centre, G.project_camera_frame(joints[0], cam), atol=0.05)


def _sampling_map_by_formula(R, K, cam, size):
    """The crop sampling map written out with numpy, operation by operation in the formula's order."""
    vy, vx = np.meshgrid((np.arange(size) - K[1, 2]) / K[1, 1], (np.arange(size) - K[0, 2]) / K[0, 0], indexing="ij")
    x = R[0, 0] * vx + R[1, 0] * vy + R[2, 0]
    y = R[0, 1] * vx + R[1, 1] * vy + R[2, 1]
    z = R[0, 2] * vx + R[1, 2] * vy + R[2, 2]
    u, v = x / z, y / z
    (k1, k2, k3), (p1, p2), f, c = cam.k, cam.p, cam.f, cam.c
    r2 = u * u + v * v
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    if cam.model == "opencv":
        mx = f[0] * (u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)) + c[0]
        my = f[1] * (v * radial + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v) + c[1]
    else:
        g = radial + p1 * u + p2 * v
        mx, my = f[0] * (u * g + p1 * r2) + c[0], f[1] * (v * g + p2 * r2) + c[1]
    return mx.astype(np.float32), my.astype(np.float32)


@pytest.mark.parametrize("model", ["h36m", "opencv"])
def test_the_compiled_sampling_map_is_bitwise_the_formula(model):
    rng = np.random.default_rng(5)
    for trial in range(20):
        cam = G.Camera("c", np.eye(3), np.zeros(3), rng.uniform(500, 1500, 2), rng.uniform(400, 600, 2),
                       rng.normal(0, 0.1, 3), rng.normal(0, 0.01, 2), 1000, 1000, model)
        R = G.virtual_rotation(rng.normal(0, 1000, 3) + [0, 0, 3000])
        K = G.crop_intrinsics(rng.uniform(100, 3000), 64)
        got, want = G.crop_sampling_map(R, K, cam, 64), _sampling_map_by_formula(R, K, cam, 64)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_procrustes_recovers_a_known_similarity_transform():
    rng = np.random.default_rng(3)
    pose = rng.normal(0, 300, (5, 17, 3))
    q = rng.normal(size=4)
    R = G.quaternion_to_rotation(q)
    target = 1.3 * pose @ R.T + [10, -20, 30]
    aligned, R_est, s, t = G.procrustes(pose, target)
    np.testing.assert_allclose(aligned, target, atol=1e-8)
    np.testing.assert_allclose(s, 1.3)
    np.testing.assert_allclose(R_est, np.broadcast_to(R, R_est.shape), atol=1e-10)
    # a reflection is not a rotation: the mirrored pose cannot be aligned exactly
    mirrored = pose * [-1, 1, 1]
    aligned, R_est, _, _ = G.procrustes(mirrored, pose)
    assert np.all(np.linalg.det(R_est) > 0)
    assert np.abs(aligned - pose).mean() > 1.0


def test_skeleton_tables():
    assert len(G.JOINT_NAMES) == len(G.PARENTS) == len(G.H36M17_FROM_32) == 17
    assert len(G.H36M32_NAMES) == len(G.H36M32_PARENTS) == 32
    # the 17-joint parents are the 32-joint tree restricted to the subset, except that the
    # shoulders hang from the thorax (in the raw tree their clavicles hang from the spine)
    sub = list(G.H36M17_FROM_32)
    for j, p in enumerate(G.PARENTS):
        if p < 0:
            continue
        if G.JOINT_NAMES[j].endswith("shoulder"):
            assert G.JOINT_NAMES[p] == "thorax"
            continue
        anc = G.H36M32_PARENTS[sub[j]]
        while anc not in sub:
            anc = G.H36M32_PARENTS[anc]
        assert sub.index(anc) == p
    for a, b in G.FLIP_PAIRS:
        side_a, part_a = G.JOINT_NAMES[a].split("_")
        side_b, part_b = G.JOINT_NAMES[b].split("_")
        assert part_a == part_b and {side_a, side_b} == {"left", "right"}
    np.testing.assert_array_equal(G.FLIP_PERM[G.FLIP_PERM], np.arange(17))


def test_mirror_pose_swaps_sides_and_keeps_bones():
    pose = np.random.default_rng(4).normal(0, 300, (3, 17, 3))
    m = G.mirror_pose(pose)
    np.testing.assert_allclose(m[:, 1, 0], -pose[:, 4, 0])
    np.testing.assert_allclose(G.mirror_pose(m), pose)
    np.testing.assert_allclose(np.sort(G.bone_lengths(m), -1), np.sort(G.bone_lengths(pose), -1))
