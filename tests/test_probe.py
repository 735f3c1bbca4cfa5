"""The linear probes: the ridge fit recovers a linear map, its strength is chosen on validation
data, and `sync-train probe` runs on a real store with intervals over test instants."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from train.cli import main as cli
from train.probe import choose_alpha, fit_ridge


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 30))
    W, b = rng.normal(size=(30, 6)), rng.normal(size=6)
    Y = X @ W + b + rng.normal(0, 0.01, size=(400, 6))
    alpha, scores = choose_alpha(X[:300], Y[:300], X[300:], lambda y: np.mean((y - Y[300:]) ** 2))
    assert alpha == min(scores)  # no noise to fit: the weakest penalty wins
    W_hat, b_hat = fit_ridge(X, Y, alpha)
    assert np.abs(W_hat - W).max() < 0.01 and np.abs(b_hat - b).max() < 0.01


def test_the_strength_is_chosen_on_validation_data():
    """Targets unrelated to the features: a weak penalty fits the noise, and the validation
    score picks a strong one."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(60, 40)), rng.normal(size=(60, 3))
    alpha, scores = choose_alpha(X[:40], Y[:40], X[40:], lambda y: np.mean((y - Y[40:]) ** 2))
    assert alpha >= 10 and scores[min(scores)] > 2 * scores[alpha]


def test_probe_command_reports_intervals_over_test_instants(probe_store, tmp_path):
    res = CliRunner().invoke(cli, ["probe", "--init", "random", "--store", str(probe_store), "--out",
                                   str(tmp_path / "p"), "--protocol", "S1", "--input-size", "32"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "p" / "probe.json").read_text())
    pose = rep["pose"]["S1"]
    assert pose["val_subject"] == "S8" and pose["fit_subjects"] == ["S1"]
    assert set(pose["test_subject"]) == {"S9"} and pose["test_images"] == 4 * 5  # frames 0, 8, .., 32
    for layer in ("layer3", "layer4"):
        m = pose["layers"][layer]
        assert m["mpjpe"]["instants"] == 5 and m["mpjpe"]["images"] == 20
        assert m["mpjpe"]["low"] <= m["mpjpe"]["mean"] <= m["mpjpe"]["high"]
        assert 10 < m["mpjpe"]["mean"] < 1000 and len(m["per_image"]["pmpjpe"]) == 20
        assert np.mean(m["per_image"]["mpjpe"]) == pytest.approx(m["mpjpe"]["mean"], abs=0.01)
    mirror = rep["mirror"]["layers"]["layer4"]["accuracy"]
    assert 0 <= mirror["low"] <= mirror["mean"] <= mirror["high"] <= 1 and mirror["images"] == 40
    pairs = rep["mirror"]["layers"]["layer4"]["pairwise"]  # each image against its own mirror
    assert 0 <= pairs["low"] <= pairs["mean"] <= pairs["high"] <= 1 and pairs["images"] == 20
    assert set(rep["mirror"]["layers"]["layer4"]["pair_hits"]) <= {0.0, 0.5, 1.0}
    # the mirrored images are rendered mirrored: an image and its mirror get different scores (a
    # probe that showed the same image twice tied every pair at 0.5, and fitted its labels at chance)
    assert rep["mirror"]["mirrors_rendered"] and 0.5 not in rep["mirror"]["layers"]["layer4"]["pair_hits"]
    assert rep["mirror"]["layers"]["layer4"]["fit_accuracy"] > 0.6
    assert "MPJPE" in res.output


def test_probe_refuses_a_test_subject_for_validation(probe_store, tmp_path):
    res = CliRunner().invoke(cli, ["probe", "--init", "random", "--store", str(probe_store), "--out",
                                   str(tmp_path / "p"), "--val-subject", "S9"])
    assert res.exit_code == 2 and "not a training subject" in res.output
