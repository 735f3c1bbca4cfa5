"""benchmarks/keyframe_phase.py: the phase-0 shortfall and its paired bootstrap, and the experiment's stages."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import keyframe_phase  # noqa: E402

from train.stats import VERDICTS  # noqa: E402


def _gaps(n: int) -> np.ndarray:
    return np.tile(np.arange(4, 128), n // 124 + 1)[:n] * np.where(np.arange(n) % 2, 1, -1)


def test_the_shortfall_is_the_expected_minus_the_observed_accuracy_of_phase_0():
    dt = _gaps(2480)  # every gap 4..127, 20 times, either sign
    zero = dt % 12 == 0
    # other phases always right (expected 1 in every bin); phase 0 right on every other pair (0.5)
    cue = np.where(zero, np.cumsum(zero) % 2 == 0, 1)
    # seed 1: phase 0 right on 7 pairs in 10 (shortfall 0.3)
    cue1 = np.where(zero, np.cumsum(zero) % 10 < 7, 1)
    clean = np.ones(len(dt))
    out = keyframe_phase.shortfalls({"plain": [cue, cue1], "recompress": [clean, clean]}, dt, n_boot=2000)
    assert out["plain"]["mean"] == pytest.approx((0.5 + 0.3) / 2, abs=0.01)
    assert out["recompress"]["mean"] == 0.0 and out["recompress"]["low"] == 0.0
    assert out["plain"]["low"] < out["plain"]["mean"] < out["plain"]["high"]
    d = out["difference"]["recompress"]
    assert d["mean"] == pytest.approx(out["plain"]["mean"]) and d["verdict"] == "better"
    assert d["low"] > 0.2 and out["plain"]["seeds"] == 2 and out["plain"]["pairs"] == len(dt)


def test_no_cue_gives_no_detectable_difference_and_the_expectation_follows_the_gaps():
    rng = np.random.default_rng(3)
    dt = _gaps(6000)
    p = np.clip(0.4 + np.abs(dt) / 256, 0, 1)  # accuracy grows with the gap, the same in every phase
    a, b = (rng.random((2, len(dt))) < p).astype(float), (rng.random((2, len(dt))) < p).astype(float)
    out = keyframe_phase.shortfalls({"plain": a, "recompress": b}, dt, n_boot=2000)
    for arm in ("plain", "recompress"):
        assert out[arm]["low"] < 0 < out[arm]["high"] and abs(out[arm]["mean"]) < 0.05
    assert out["difference"]["recompress"]["verdict"] == "no detectable difference"
    with pytest.raises(ValueError, match="same seeds and the same pairs"):
        keyframe_phase.shortfalls({"plain": a, "recompress": b[:1]}, dt)


def test_the_experiment_resumes_from_its_json_and_reports(probe_store, tmp_path):
    args = ["--store", str(probe_store), "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "kp.json"),
            "--seeds", "0", "1", "--pairs", "240", "--quality", "40",
            "--pretrain-set", "steps=2", "batch=2", "input_size=32", "eval_batches=1", "eval_every=0", "workers=0",
            "d_max=20", "checkpoint_every=1", "log_every=1", "warmup=0"]
    doc = keyframe_phase.main(args)
    s = doc["summary"]
    assert s["seeds"] == [0, 1] and set(s["arms"]) == {"plain", "recompress"}
    assert doc["arms"]["recompress"] == {"recompress": 40}
    config = json.loads((tmp_path / "runs" / "pretrain_recompress_s1" / "config.json").read_text())
    assert config["recompress"] == 40 and config["seed"] == 1
    assert s["shortfall"]["difference"]["recompress"]["verdict"] in VERDICTS
    check = doc["stages"]["phase_plain_s0"]
    assert len(check["hit"]) == len(check["dt"]) == 240 and check["dt"] == doc["stages"]["phase_recompress_s1"]["dt"]
    assert sum(r["pairs"] for r in s["arms"]["plain"]["by_phase"]) == 240
    log = (tmp_path / "runs" / "pretrain_plain_s0" / "log.jsonl").read_text()
    again = keyframe_phase.main(args)  # everything is taken from the JSON: nothing trained again
    assert again["summary"] == s and (tmp_path / "runs" / "pretrain_plain_s0" / "log.jsonl").read_text() == log
    tables = keyframe_phase.report(again)
    assert "| 0 | " in tables and "| recompress | " in tables and "recompress against plain" in tables


def test_the_report_before_any_seed_has_finished_every_arm_says_so():
    doc = {"summary": {}, "arms": {"plain": {}, "recompress": {"recompress": 50}},
           "stages": {"pretrain_plain_s0": {}, "phase_plain_s0": {}}}
    text = keyframe_phase.report(doc)
    assert "No seed has finished in every arm (plain, recompress)" in text
    assert "phase_plain_s0" in text
