"""Median backgrounds: the per-pixel median, leaving out where the person is."""
import numpy as np

from h36m_prep.background import median_background, person_region
from h36m_prep.geometry import load_calibration, project


def test_median_leaves_out_the_person_and_falls_back_where_always_covered():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (70, 40, 3), dtype=np.uint8) for _ in range(9)]
    person = [rng.uniform(size=(70, 40)) < 0.5 for _ in range(9)]
    person[0][:] = True
    for p in person[1:]:
        p[5, 5] = True  # covered in every sample
    got = median_background(frames, person)
    stack = np.stack(frames).astype(float)
    for y, x in [(0, 0), (10, 20), (69, 39), (33, 7)]:
        keep = ~np.stack(person)[:, y, x]
        np.testing.assert_array_equal(got[y, x], np.round(np.median(stack[keep, y, x], axis=0)))
    np.testing.assert_array_equal(got[5, 5], np.round(np.median(stack[:, 5, 5], axis=0)))
    # without person regions it is the plain median
    np.testing.assert_array_equal(median_background(frames), np.round(np.median(stack, axis=0)))


def test_person_region_covers_the_projected_joints():
    cam = load_calibration()["S9"]["55011271"].scaled(0.5)
    pose = np.random.default_rng(1).normal(0, 250, (17, 3)) + [0, 0, 1000]
    region = person_region(pose, cam)
    uv = np.round(project(pose, cam)).astype(int)
    assert region[uv[:, 1], uv[:, 0]].all()
    assert 0.005 < region.mean() < 0.5
