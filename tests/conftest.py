"""Shared fixtures: a small synthetic dataset made once per test session."""
from __future__ import annotations

import pytest

from h36m_prep.synth.dataset import SynthConfig, write_dataset

SMALL = SynthConfig(subjects=("S1", "S9"), actions=("Walking", "Directions"), frames=24, scale=0.25, seed=3)


@pytest.fixture(scope="session")
def small_cfg() -> SynthConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory):
    """RAW folder with 2 subjects x 2 actions x 4 cameras x 24 frames at 250 x 250."""
    raw = tmp_path_factory.mktemp("raw")
    write_dataset(raw, SMALL, workers=1, progress=False)
    return raw
