"""`sync-train finetune` and `eval`: a tiny transfer on the CPU, its report and figures."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from pairloader import PoseLoader
from train import checkpoint
from train.cli import main as sync_train
from train.config import FINETUNE_PRESETS, PRETRAIN_PRESETS, FinetuneConfig
from train.evaluate import evaluate
from train.finetune import finetune
from train.pretrain import pretrain

PRE = dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=48, steps=6, log_every=2,
                          checkpoint_every=6, eval_batches=1, workers=0, d_max=20)


def _tiny(init, **kw):
    return dataclasses.replace(FINETUNE_PRESETS["tiny"], **{
        "init": str(init), "protocol": "S1", "batch": 8, "input_size": 48, "steps": 12, "log_every": 2,
        "checkpoint_every": 4, "workers": 0, **kw})


@pytest.fixture(scope="module")
def runs(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    pretrain(small_store, root / "pre", PRE, progress=False)
    finetune(small_store, root / "ft", _tiny(root / "pre"), progress=False)
    return root


def test_finetune_starts_from_the_pretrained_backbone_and_keeps_frozen_stages(runs):
    pre = checkpoint.load(runs / "pre" / "checkpoint.pt")["model"]
    ft = checkpoint.load(runs / "ft" / "checkpoint.pt")["model"]
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer3.1.bn2.running_mean"):
        assert torch.equal(ft[f"phi.{name}"], pre[f"phi.{name}"])  # frozen: exactly the pretrained
    assert not torch.equal(ft["phi.layer4.0.conv1.weight"], pre["phi.layer4.0.conv1.weight"])
    assert ft["omega_p.weight"].shape == (48, 512)
    log = [json.loads(line) for line in open(runs / "ft" / "log.jsonl")]
    assert all(np.isfinite(r["loss"]) and r["mpjpe"] > 0 for r in log)
    stats = json.loads((runs / "ft" / "pose_stats.json").read_text())
    assert np.array(stats["std"]).shape == (17, 3)


def test_finetune_resume_equals_the_uninterrupted_run(small_store, runs, tmp_path):
    cfg = _tiny(runs / "pre")
    assert finetune(small_store, tmp_path / "r", cfg, progress=False, stop_after=5) == {}
    finetune(small_store, tmp_path / "r", cfg, resume=True, progress=False)
    losses = [[json.loads(line)["loss"] for line in open(p / "log.jsonl")] for p in (runs / "ft", tmp_path / "r")]
    assert losses[0] == losses[1]


def test_random_init_unfrozen_trains_every_layer_and_eval_uses_the_runs_background(small_store, runs, tmp_path):
    cfg = _tiny("random", freeze="none", background="kept", steps=4)
    finetune(small_store, tmp_path / "free", cfg, progress=False)
    from models import PoseRegressor

    torch.manual_seed(cfg.seed)
    init = PoseRegressor(cfg.arch).state_dict()  # the same random init
    ft = checkpoint.load(tmp_path / "free" / "checkpoint.pt")["model"]
    for name in ("phi.conv1.weight", "phi.layer1.0.conv1.weight", "phi.bn1.running_mean"):
        assert not torch.equal(ft[name], init[name]), name  # the stem and layer1 train too
    report = evaluate(tmp_path / "free", small_store, tmp_path / "rep", figures=False)
    assert report["background"] == "kept" and report["freeze"] == "none"
    report = evaluate(tmp_path / "free", small_store, tmp_path / "rep2", figures=False, background="removed")
    assert report["background"] == "removed" and report["finetune_background"] == "kept"


def test_protocol_s1_trains_on_s1_only(small_store):
    g = zarr.open_group(str(small_store), mode="r")
    loader = PoseLoader(small_store, batch_size=16, split="train", backend="torch", steps=2, out_size=32,
                        subjects=("S1",))
    subjects = {g.attrs["subjects"][g["subject"][int(r)]] for b in loader for r in b["row"]}
    assert subjects == {"S1"}
    with pytest.raises(ValueError, match="not in the store"):
        PoseLoader(small_store, batch_size=4, subjects=("S5",))
    with pytest.raises(ValueError, match="protocol"):
        FinetuneConfig(protocol="S2")


def test_eval_writes_the_report_and_three_figures_on_every_64th_frame(small_store, runs, tmp_path):
    report = evaluate(runs / "ft", small_store, tmp_path / "rep")
    for name in ("report.json", "report.md", "qualitative.png", "sync_vs_gap.png", "retrieval.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 500, name
    g = zarr.open_group(str(small_store), mode="r")
    frame, split = g["frame"][:], g["split"][:]
    assert report["overall"]["n"] == int(((split == 1) & (frame % 64 == 0)).sum())
    per_action = sum(m["n"] for m in report["per_action"].values())
    assert per_action == report["overall"]["n"] and set(report["per_action"]) <= {"Walking", "Posing"}
    assert 0 < report["overall"]["pmpjpe"] <= report["overall"]["nmpjpe"] <= report["overall"]["mpjpe"] * 1.0001
    gaps = report["sync_accuracy_by_gap"]
    assert gaps["background"] == "removed"  # as the model was pretrained (mixed: removed is its fixed member)
    groups = {k: v for k, v in gaps.items() if k in ("test", "train")}
    assert len(groups) == 2 and all(0 <= a <= 1 for v in groups.values() for a in v["accuracy"])
    for v in groups.values():  # enough pairs per gap for a standard error of at most 0.02
        assert v["pairs"] >= 625 and all(e <= 0.02 for e in v["stderr"])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "17/16" in md and "| **All** |" in md


def test_eval_takes_only_frames_with_frame_mod_every_zero(small_store, runs):
    from train.evaluate import predict
    from train.finetune import load_pose_model

    model, cfg, mean, std = load_pose_model(runs / "ft")
    res = predict(model, small_store, cfg.input_size, mean, std, every=16)
    g = zarr.open_group(str(small_store), mode="r")
    frame, split = g["frame"][:], g["split"][:]
    assert sorted(res["rows"].tolist()) == np.flatnonzero((split == 1) & (frame % 16 == 0)).tolist()
    assert res["pred"].shape == res["gt"].shape == (len(res["rows"]), 17, 3)


def test_cli_finetune_and_eval_refuse_bad_input_clearly(small_store, runs, tmp_path):
    r = CliRunner().invoke(sync_train, ["finetune", "--store", str(small_store), "--out", str(tmp_path / "x"),
                                        "--preset", "tiny", "--init", str(tmp_path)])
    assert r.exit_code == 2 and "not a pretrain run folder" in r.output
    r = CliRunner().invoke(sync_train, ["eval", "--ckpt", str(runs / "pre"), "--store", str(small_store),
                                        "--out", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "not a finetune run folder" in r.output


def test_init_from_a_finetune_run_or_a_corrupt_checkpoint_is_a_clear_error(small_store, runs, tmp_path):
    import shutil

    r = CliRunner().invoke(sync_train, ["finetune", "--store", str(small_store), "--out", str(tmp_path / "x"),
                                        "--preset", "tiny", "--init", str(runs / "ft")])
    assert r.exit_code == 2 and "a finetune run" in r.output and "Traceback" not in r.output
    broken = tmp_path / "broken"
    shutil.copytree(runs / "pre", broken)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(sync_train, ["finetune", "--store", str(small_store), "--out", str(tmp_path / "y"),
                                        "--preset", "tiny", "--init", str(broken)])
    assert r.exit_code == 2 and "not a readable checkpoint" in r.output and "checkpoint.pt" in r.output


def test_a_checkpoint_that_cannot_be_written_leaves_no_temp_file_and_the_old_one_intact(tmp_path, monkeypatch):
    from pathlib import Path

    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, step=1)

    def full_disk(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"checkpoint.pt: the checkpoint could not be written.*MB free"):
        checkpoint.save(path, step=2)
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
