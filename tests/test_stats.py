"""The paired bootstrap over seeds and test instants, on hand-made examples with known answers."""
import numpy as np
import pytest

from train.stats import instant_ids, mean_interval, paired_bootstrap, verdict


def test_a_constant_difference_has_a_zero_width_interval_and_its_sign_as_verdict():
    inst = np.repeat(np.arange(10), 4)
    up = paired_bootstrap(np.full((3, 40), 2.5), inst, n_boot=500)
    assert (up["mean"], up["low"], up["high"], up["verdict"]) == (2.5, 2.5, 2.5, "better")
    assert up["seeds"] == 3 and up["instants"] == 10 and up["images"] == 40
    down = paired_bootstrap(np.full((3, 40), -1.0), inst, n_boot=500)
    assert down["verdict"] == "worse" and down["high"] == -1.0


def test_iid_instants_give_the_normal_theory_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, size=(1, 400))
    out = paired_bootstrap(x, np.arange(400), n_boot=20_000)
    assert out["mean"] == pytest.approx(x.mean())
    half = 1.96 * x.std(ddof=1) / np.sqrt(400)  # about 0.098
    assert (out["high"] - out["low"]) / 2 == pytest.approx(half, rel=0.08)
    assert out["low"] < x.mean() < out["high"]
    assert out["verdict"] == "better" and out["p"] < 0.01 and out["t_over_seeds"] is None


def test_the_cameras_of_one_instant_count_once():
    """Four identical images per instant carry the information of one: the interval is that of
    the instants alone, and twice as wide as if the 4 x 100 images were independent."""
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(1, 100))
    alone = paired_bootstrap(x, np.arange(100), n_boot=20_000)
    grouped = paired_bootstrap(np.repeat(x, 4, axis=1), np.repeat(np.arange(100), 4), n_boot=20_000)
    naive = paired_bootstrap(np.repeat(x, 4, axis=1), np.arange(400), n_boot=20_000)
    width = lambda o: o["high"] - o["low"]
    assert width(grouped) == pytest.approx(width(alone), rel=0.05)
    assert width(naive) == pytest.approx(width(alone) / 2, rel=0.1)


def test_seed_spread_widens_the_interval_and_the_t_interval_is_exact():
    """Differences that vary only with the seed (-1, 0, 1, 2, 3): mean 1, and the Student-t
    interval 1 +- 2.776 * sd / sqrt(5); the bootstrap interval spans zero: no detectable difference."""
    d = np.repeat(np.array([-1.0, 0.0, 1.0, 2.0, 3.0])[:, None], 30, axis=1)
    out = paired_bootstrap(d, np.arange(30), n_boot=20_000)
    half = 2.776 * np.std([-1, 0, 1, 2, 3], ddof=1) / np.sqrt(5)
    assert out["t_over_seeds"]["low"] == pytest.approx(1 - half, abs=1e-3)
    assert out["t_over_seeds"]["high"] == pytest.approx(1 + half, abs=1e-3)
    assert out["per_seed"] == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert out["low"] < 0 < out["high"] and out["verdict"] == "no detectable difference"
    assert -1 <= out["low"] and out["high"] <= 3


def test_same_seed_same_interval_and_bad_input_is_refused():
    d, inst = np.random.default_rng(3).normal(size=(2, 50)), np.arange(50) // 2
    assert paired_bootstrap(d, inst, seed=7) == paired_bootstrap(d, inst, seed=7)
    with pytest.raises(ValueError, match="instants"):
        paired_bootstrap(d, inst[:-1])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(np.full((1, 3), np.nan), np.arange(3))
    assert verdict(-0.1, 0.2) == "no detectable difference"
    acc = mean_interval(np.ones((1, 20)), np.arange(20))
    assert acc["mean"] == acc["low"] == acc["high"] == 1.0


def test_instant_ids_join_their_key_columns():
    ids = instant_ids(["S9", "S9", "S11", "S9"], ["Walking", "Walking", "Walking", "Posing"], [0, 0, 0, 0])
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 3
