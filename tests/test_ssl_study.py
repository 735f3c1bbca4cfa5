"""benchmarks/ssl_study.py: paired comparisons with intervals, and a study that resumes where it stopped."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ssl_study  # noqa: E402


def _runs(values: dict, table: dict) -> list[dict]:
    """Runs of protocol S1 whose per-image errors are `values[arm][seed]` [N]."""
    return [{"protocol": "S1", "arm": arm, "seed": s, "per_image": {m: list(v) for m in ssl_study.METRICS}}
            for arm, seeds in values.items() for s, v in enumerate(seeds)]


def test_comparisons_are_paired_by_seed_and_image_and_decide():
    table = {"row": list(range(8)), "subject": ["S9"] * 8, "sequence": [0] * 8, "camera": ["a", "b"] * 4,
             "frame": [0, 0, 8, 8, 64, 64, 72, 72]}
    rng = np.random.default_rng(0)
    base = rng.normal(150, 30, size=(3, 8))  # what every arm shares: the seed and the image
    runs = _runs({"ssl_frozen": base, "random_frozen": base + 5.0, "ssl_unfrozen": base,
                  "random_unfrozen": base - 2.0 + rng.normal(0, 1, size=(3, 8))}, table)
    comps = {(c["a"], c["b"], c["metric"], c["density"]): c for c in ssl_study.comparisons(runs, table)}
    better = comps[("ssl_frozen", "random_frozen", "mpjpe", "dense")]
    assert better["mean"] == pytest.approx(5.0) and better["low"] == pytest.approx(5.0)
    assert better["verdict"] == "better" and better["seeds"] == 3 and better["instants"] == 4
    worse = comps[("ssl_unfrozen", "random_unfrozen", "mpjpe", "dense")]
    assert worse["verdict"] == "worse" and worse["mean"] == pytest.approx(-2.0, abs=0.6)
    paper = comps[("ssl_frozen", "random_frozen", "pmpjpe", "paper")]  # frames 0 and 64 only
    assert paper["images"] == 4 and paper["instants"] == 2
    same = comps[("ssl_unfrozen", "ssl_frozen", "mpjpe", "dense")]
    assert same["verdict"] == "no detectable difference" and same["mean"] == 0.0
    summary = ssl_study.summarize(runs, table)["S1"]["random_frozen"]["mpjpe"]["dense"]
    assert summary["mean"] == pytest.approx(base.mean() + 5.0) and summary["seeds"] == 3
    assert summary["low"] < summary["mean"] < summary["high"]


def test_the_phase_summary_pools_the_seeds_pairs():
    check = lambda acc, exp, n: {"gop": 2, "by_phase": [{"pairs": n, "accuracy": acc, "expected": exp}] * 2}
    s = ssl_study.phase_summary({"0": check(0.5, 0.6, 100), "1": check(0.7, 0.6, 300)})
    assert s["seeds"] == [0, 1] and s["by_phase"][0]["pairs"] == 400
    assert s["by_phase"][1]["accuracy"] == pytest.approx(0.65) and s["by_phase"][1]["expected"] == pytest.approx(0.6)


TINY = ["--protocols", "S1",
        "--pretrain-set", "steps=2", "batch=2", "input_size=32", "eval_batches=1", "eval_every=0", "workers=0",
        "d_max=20", "checkpoint_every=1", "log_every=1", "warmup=0",
        "--finetune-set", "steps=2", "batch=4", "input_size=32", "workers=0", "checkpoint_every=1", "log_every=1",
        "--gap-pairs", "4", "--phase-pairs", "48"]


def test_a_stopped_study_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(probe_store, tmp_path):
    def study(root, *extra):
        return ssl_study.main(["--store", str(probe_store), "--root", str(tmp_path / root),
                               "--out", str(tmp_path / f"{root}.json"), "--seeds", "0", "1", *TINY, *extra])

    part = study("cut", "--stop-after-stages", "4")  # pretrain s0, ssl_frozen's finetune and eval, one more
    assert [(r["arm"], r["seed"]) for r in part["runs"]] == [("ssl_frozen", 0)]
    log = (tmp_path / "cut" / "pretrain_s0" / "log.jsonl").read_text()
    done = study("cut")
    assert (tmp_path / "cut" / "pretrain_s0" / "log.jsonl").read_text() == log  # finished stages are kept
    full = study("whole")
    key = lambda r: (r["seed"], r["arm"])  # noqa: E731
    assert sorted(done["runs"], key=key) == sorted(full["runs"], key=key)  # the same numbers
    assert done["comparisons"] == full["comparisons"] and done["probe_summary"] == full["probe_summary"]
    assert {a: m["mpjpe"]["dense"]["seeds"] for a, m in done["summary"]["S1"].items()} == {a: 2 for a in ssl_study.ARMS}
    written = json.loads((tmp_path / "cut.json").read_text())
    assert written["summary"] == done["summary"] and (tmp_path / "cut.png").stat().st_size > 1000
    # per-image errors: every number can be recomputed from the JSON
    run = written["stages"]["eval_S1_ssl_frozen_s0"]
    assert len(run["per_image"]["mpjpe"]) == len(written["test_images"]["row"]) == 4 * 5  # S9, frames 0..32 by 8
    assert np.mean(run["per_image"]["mpjpe"]) == pytest.approx(run["overall"]["mpjpe"], abs=0.01)
    assert run["paper"]["n"] == 4  # frame 0 of the 4 cameras
    assert {(c["a"], c["b"]) for c in written["comparisons"]} == set(ssl_study.COMPARISONS)
    probe = written["probe_summary"]["S1"]["layer4"]
    assert probe["ssl_vs_random"]["mpjpe"]["seeds"] == 2 and probe["ssl"]["pmpjpe"]["seed_ids"] == [0, 1]
    assert set(written["mirror_probe"]) == {"ssl", "random"}
    pairs = written["mirror_probe"]["ssl"]["layer4"]["pairwise"]  # each image against its own mirror
    assert pairs["seed_ids"] == [0, 1] and 0 <= pairs["low"] <= pairs["mean"] <= pairs["high"] <= 1
    # a probe recorded before pairs were scored is redone when the study continues
    assert ssl_study._pairs_scored(done["stages"]["probe_s0"])
    assert not ssl_study._pairs_scored({"mirror": {"layers": {"layer4": {"hits": [1, 0]}}}})
    # and so is one from the probe that showed every mirrored image unmirrored
    assert not ssl_study._pairs_scored({"mirror": {"layers": {"layer4": {"hits": [1, 0], "pair_hits": [0.5]}}}})
    curves = done["sync_vs_gap"]  # Fig. 4 of each pretraining seed, and over seeds
    assert curves == full["sync_vs_gap"] and set(curves["per_seed"]) == {"0", "1"}
    assert curves["summary"]["test"]["subjects"] == ["S9"]
    phases = written["phase_check"]["summary"]["by_phase"]
    assert len(phases) == 12 and sum(p["pairs"] for p in phases) == 2 * 48
    tables = ssl_study.report(written)  # the tables from the JSON alone
    assert "| S1 | ssl_frozen vs random_frozen | mpjpe |" in tables and "| S1 | layer4 | pmpjpe |" in tables
    assert "| 11 | " in tables and "| ssl | layer3 |" in tables
    # the JSON alone continues the study elsewhere: with the run folders gone, nothing is trained again
    import shutil

    shutil.rmtree(tmp_path / "cut")
    again = study("cut")
    assert not (tmp_path / "cut").exists() or not any((tmp_path / "cut").iterdir())
    assert again["comparisons"] == done["comparisons"] and again["summary"] == done["summary"]
    # another setting does not reuse them
    other = study("cut", "--finetune-set", "steps=3")
    assert (tmp_path / "cut" / "ft_S1_random_frozen_s0" / "metrics.json").exists() and "stages" in other


def test_ablations_run_as_named_and_a_later_call_keeps_the_finished_ones(probe_store, tmp_path):
    def study(*extra):
        return ssl_study.main(["--store", str(probe_store), "--root", str(tmp_path / "runs"),
                               "--out", str(tmp_path / "s.json"), "--seeds", "0", "--ablation-seeds", "0", *TINY,
                               *extra])

    first = study("--ablations", "only_flip")
    assert list(first["ablations"]) == ["only_flip"]
    flip = first["ablations"]["only_flip"]
    assert flip["changes"] == {"tasks": "flip"} and set(flip["seeds"]) == {"0"}
    assert np.isfinite(flip["seeds"]["0"]["overall"]["mpjpe"]) and "test_acc_flip" in flip["seeds"]["0"]["pretext"]
    config = json.loads((tmp_path / "runs" / "pretrain_only_flip_s0" / "config.json").read_text())
    assert config["tasks"] == "flip" and config["seed"] == 0
    rows = first["ablation_comparisons"]["only_flip"]
    tuned, probed = [r for r in rows if "density" in r], [r for r in rows if "probe" in r]
    assert {(r["metric"], r["density"]) for r in tuned} == {(m, d) for m in ("mpjpe", "pmpjpe") for d in ("dense", "paper")}
    # the probes against the main run's probes of the same seed, every protocol and layer
    assert {(r["probe"], r["layer"], r["metric"]) for r in probed} == {
        ("S1", layer, m) for layer in ("layer3", "layer4") for m in ("mpjpe", "pmpjpe")}
    assert all(r["b"] == "both tasks" and r["seeds"] == 1 for r in rows) and len(rows) == 8
    main_probe = first["probes"]["0"]["ssl"]["pose"]["S1"]["layers"]["layer4"]["per_image"]["pmpjpe"]
    flip_probe = flip["seeds"]["0"]["probe"]["pose"]["S1"]["layers"]["layer4"]["per_image"]["pmpjpe"]
    row = next(r for r in probed if r["layer"] == "layer4" and r["metric"] == "pmpjpe")
    assert row["mean"] == pytest.approx(np.mean(main_probe) - np.mean(flip_probe))
    assert "| only_flip | 1 | " in ssl_study.report(first)
    second = study("--ablations", "single_view")
    assert set(second["ablations"]) == {"only_flip", "single_view"}  # the earlier one is kept
    assert second["ablations"]["only_flip"] == flip
    single = json.loads((tmp_path / "runs" / "pretrain_single_view_s0" / "config.json").read_text())
    assert single["views"] == "single" and single["crop_jitter"]
