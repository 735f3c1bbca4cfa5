"""benchmarks/ssl_study.py: the aggregation over seeds and a study that resumes where it stopped."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ssl_study  # noqa: E402


def test_summary_is_the_mean_and_standard_deviation_over_seeds():
    runs = [{"protocol": "S1", "arm": arm, "seed": s, "mpjpe": v, "nmpjpe": v - 10, "pmpjpe": v / 2}
            for arm, values in (("ssl", (100.0, 104.0, 108.0)), ("random_unfrozen", (120.0, 130.0)))
            for s, v in enumerate(values)]
    summary = ssl_study.aggregate(runs)
    ssl = summary["S1"]["ssl"]
    assert ssl["mpjpe"] == {"mean": 104.0, "std": 4.0, "n": 3}  # sample std, ddof 1
    assert ssl["pmpjpe"]["mean"] == 52.0 and ssl["nmpjpe"]["std"] == pytest.approx(4.0)
    assert summary["S1"]["random_unfrozen"]["mpjpe"]["std"] == pytest.approx(np.std([120, 130], ddof=1))
    v = ssl_study.verdict(summary)["S1: ssl vs random_unfrozen"]
    assert v["gain_mm"] == pytest.approx(21.0) and v["gain_exceeds_spread"] and v["n"] == 2
    one = ssl_study.aggregate(runs[:1])["S1"]["ssl"]["mpjpe"]
    assert one == {"mean": 100.0, "std": 0.0, "n": 1}
    assert not ssl_study.verdict(ssl_study.aggregate([runs[0], runs[3]]))["S1: ssl vs random_unfrozen"][
        "gain_exceeds_spread"]  # one seed each: no verdict


TINY = ["--protocols", "S1",
        "--pretrain-set", "steps=2", "batch=2", "input_size=32", "eval_batches=1", "eval_every=0", "workers=0",
        "d_max=20", "checkpoint_every=1", "log_every=1", "warmup=0",
        "--finetune-set", "steps=2", "batch=4", "input_size=32", "workers=0", "checkpoint_every=1", "log_every=1",
        "--gap-pairs", "4"]


def test_a_stopped_study_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(small_store, tmp_path):
    def study(root, *extra):
        return ssl_study.main(["--store", str(small_store), "--root", str(tmp_path / root),
                               "--out", str(tmp_path / f"{root}.json"), "--seeds", "0", "1", *TINY, *extra])

    part = study("cut", "--stop-after-stages", "4")  # pretrain s0, then ssl's finetune and eval, then one more
    assert [(r["arm"], r["seed"]) for r in part["runs"]] == [("ssl", 0)]
    log = (tmp_path / "cut" / "pretrain_s0" / "log.jsonl").read_text()
    done = study("cut")
    assert (tmp_path / "cut" / "pretrain_s0" / "log.jsonl").read_text() == log  # finished stages are kept
    full = study("whole")
    key = lambda r: (r["seed"], r["arm"])  # noqa: E731
    assert sorted(done["runs"], key=key) == sorted(full["runs"], key=key)  # the same numbers
    assert {a: m["mpjpe"]["n"] for a, m in done["summary"]["S1"].items()} == {a: 2 for a in ssl_study.ARMS}
    written = json.loads((tmp_path / "cut.json").read_text())
    assert written["summary"] == done["summary"] and (tmp_path / "cut.png").stat().st_size > 1000
    curves = done["sync_vs_gap"]  # Fig. 4 of each pretraining seed, and over seeds
    assert curves == full["sync_vs_gap"] and set(curves["per_seed"]) == {"0", "1"}
    test = curves["summary"]["test"]
    assert test["n"] == 2 and test["subjects"] == ["S9"] and test["pairs"] == 8  # the small store's test subject
    acc = np.array([curves["per_seed"][s]["test"]["accuracy"] for s in ("0", "1")])
    assert np.allclose(test["mean"], acc.mean(0)) and np.allclose(test["std"], acc.std(0, ddof=1))
    assert (tmp_path / "cut_sync_vs_gap.png").stat().st_size > 1000


def test_ablations_run_as_named_and_a_later_call_keeps_the_finished_ones(small_store, tmp_path):
    def study(*extra):
        return ssl_study.main(["--store", str(small_store), "--root", str(tmp_path / "runs"),
                               "--out", str(tmp_path / "s.json"), "--seeds", "0", *TINY, *extra])

    first = study("--ablations", "only_flip")
    assert list(first["ablations"]) == ["only_flip"]
    flip = first["ablations"]["only_flip"]
    assert flip["changes"] == {"tasks": "flip"} and flip["seed"] == 0 and np.isfinite(flip["mpjpe"])
    config = json.loads((tmp_path / "runs" / "pretrain_only_flip_s0" / "config.json").read_text())
    assert config["tasks"] == "flip" and config["seed"] == 0
    assert "test_acc_flip" in flip["pretext"] and not any(k.endswith("breakdown") for k in flip["pretext"])
    second = study("--ablations", "background_kept")
    assert set(second["ablations"]) == {"only_flip", "background_kept"}  # the earlier one is kept
    assert second["ablations"]["only_flip"] == flip
    assert json.loads((tmp_path / "runs" / "pretrain_background_kept_s0" / "config.json").read_text())[
        "background"] == "kept"
    table = ssl_study.ablation_table(second["ablations"], second["runs"], second["pretext"])
    assert table.count("\n") == 4 and "| ssl (both tasks) | 0 |" in table and "| only_flip | 0 |" in table
    assert study()["ablations"] == second["ablations"]  # without --ablations: reported, nothing run


def test_paired_gains_are_taken_seed_by_seed():
    values = {"ssl": (100.0, 110.0, 104.0), "random_unfrozen": (103.0, 111.0, 112.0), "random_frozen": (99.0, 115.0, 104.0)}
    runs = [{"protocol": "All", "arm": arm, "seed": s, "mpjpe": v, "nmpjpe": v, "pmpjpe": v - 50}
            for arm, vs in values.items() for s, v in enumerate(vs)]
    p = ssl_study.paired(runs)["mpjpe"]
    free = p["All: ssl vs random_unfrozen"]
    assert free["per_seed"] == {"0": 3.0, "1": 1.0, "2": 8.0} and free["n"] == 3 and free["same_sign"]
    assert free["mean"] == pytest.approx(4.0) and free["std"] == pytest.approx(np.std([3, 1, 8], ddof=1))
    frozen = p["All: ssl vs random_frozen"]
    assert frozen["per_seed"] == {"0": -1.0, "1": 5.0, "2": 0.0} and not frozen["same_sign"]
    assert ssl_study.paired(runs[:1] + runs[3:4])["pmpjpe"]["All: ssl vs random_unfrozen"]["std"] == 0.0
