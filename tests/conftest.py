"""Shared fixtures: a small synthetic dataset made once per test session."""
from __future__ import annotations

import pytest

from h36m_prep.build import BuildConfig, build
from h36m_prep.synth.dataset import SynthConfig, write_dataset

SMALL = SynthConfig(subjects=("S1", "S9"), actions=("Walking", "Posing"), frames=48, scale=0.25, seed=3)


@pytest.fixture(scope="session")
def small_cfg() -> SynthConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory):
    """RAW folder with 2 subjects x 2 actions x 4 cameras x 48 frames at 250 x 250."""
    raw = tmp_path_factory.mktemp("raw")
    write_dataset(raw, SMALL, workers=1, progress=False)
    return raw


SMALL_BUILD = BuildConfig(crop_size=96, bg_samples=16, bg_crops=4)


@pytest.fixture(scope="session")
def small_build_cfg() -> BuildConfig:
    return SMALL_BUILD


@pytest.fixture(scope="session")
def small_store(small_raw, tmp_path_factory):
    """The store of small_raw: 16 (sequence, camera) units x 48 frames of 96 x 96 crops."""
    out = tmp_path_factory.mktemp("store") / "small.zarr"
    build(small_raw, out, SMALL_BUILD, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def probe_store(tmp_path_factory):
    """Training subjects S1 and S8 (the validation subject), test subject S9: 1 action x 4 cameras
    x 40 frames each, 64 px crops."""
    root = tmp_path_factory.mktemp("probe")
    cfg = SynthConfig(subjects=("S1", "S8", "S9"), actions=("Walking",), frames=40, scale=0.2, seed=5)
    write_dataset(root / "raw", cfg, workers=1, progress=False)
    build(root / "raw", root / "store.zarr", BuildConfig(crop_size=64, bg_samples=8, bg_crops=2), workers=1,
          progress=False)
    return root / "store.zarr"
