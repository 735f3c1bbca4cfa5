"""A validation subject held out of training: not trained on, reported apart, and a bad name refused."""
import json

import numpy as np
from click.testing import CliRunner

from h36m_prep import store as S
from pairloader import PairLoader
from train.cli import main as sync_train

TINY = ["--steps", "2", "--batch", "2", "--input-size", "32", "--workers", "0", "--log-every", "1",
        "--checkpoint-every", "1"]


def test_a_held_out_subject_gives_no_training_anchor_and_no_background(probe_store):
    g = S.open_store(probe_store)
    names = list(g.attrs["subjects"])
    loader = PairLoader(probe_store, batch_size=4, steps=3, backend="torch", workers=0, subjects=["S1"])
    subject = g["subject"][:]
    assert {names[subject[r]] for r in loader.sampler.anchors} == {"S1"}
    bank = g["bg_subject"][:]
    assert {names[bank[i]] for i in loader.sampler.index.bg_pool} == {"S1"}
    for b in loader:
        assert {names[subject[r]] for r in np.concatenate([b["row1"].numpy(), b["row2"].numpy()])} == {"S1"}


def test_pretraining_and_fine_tuning_report_the_held_out_subject_apart(probe_store, tmp_path):
    r = CliRunner().invoke(sync_train, ["pretrain", "--store", str(probe_store), "--out", str(tmp_path / "pre"),
                                        "--preset", "tiny", "--holdout", "S8", "--eval-batches", "1", "--d-max", "20",
                                        *TINY])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert 0 <= m["val_acc_sync"] <= 1 and m["val_pairs_sync"] > 0 and "test_acc_sync" in m
    assert json.loads((tmp_path / "pre" / "config.json").read_text())["holdout"] == ["S8"]
    r = CliRunner().invoke(sync_train, ["finetune", "--store", str(probe_store), "--out", str(tmp_path / "ft"),
                                        "--preset", "tiny", "--protocol", "S1", "--holdout", "S8", *TINY])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["train_subjects"] == ["S1"] and m["val"]["subjects"] == ["S8"] and m["val"]["n"] == 4 * 5
    r = CliRunner().invoke(sync_train, ["pretrain", "--store", str(probe_store), "--out", str(tmp_path / "bad"),
                                        "--preset", "tiny", "--holdout", "S9", *TINY])
    assert r.exit_code == 2 and "not a training subject" in r.output and not (tmp_path / "bad").exists()
