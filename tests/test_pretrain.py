"""`sync-train pretrain`: the tiny preset trains on the CPU, resumes exactly, and runs under DDP."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from train.cli import main as sync_train
from train.config import PRETRAIN_PRESETS, PretrainConfig
from train.pretrain import pretrain

TINY = dataclasses.replace(PRETRAIN_PRESETS["tiny"], batch=4, input_size=48, steps=24, log_every=1,
                           checkpoint_every=8, eval_batches=2, workers=0, d_max=20)


def _losses(run):
    return [json.loads(line)["loss"] for line in open(run / "log.jsonl")]


@pytest.fixture(scope="module")
def tiny_run(small_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    metrics = pretrain(small_store, run, TINY, progress=False)
    return run, metrics


def test_tiny_pretrain_runs_on_the_cpu_and_its_loss_goes_down(tiny_run):
    run, metrics = tiny_run
    loss = _losses(run)
    assert len(loss) == TINY.steps and np.isfinite(loss).all()
    assert np.mean(loss[-6:]) < np.mean(loss[:6])
    assert 0 <= metrics["test_acc_sync"] <= 1 and 0 <= metrics["test_acc_flip"] <= 1
    assert metrics["test_pairs_sync"] == 2 * TINY.batch * TINY.eval_batches
    assert PretrainConfig.load(run / "config.json") == TINY
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert any((run / "tb").iterdir())  # TensorBoard scalars


def test_resume_equals_the_uninterrupted_run_bitwise(small_store, tiny_run, tmp_path):
    run, _ = tiny_run
    split = tmp_path / "split"
    assert pretrain(small_store, split, TINY, progress=False, stop_after=10) == {}
    pretrain(small_store, split, TINY, resume=True, progress=False)
    assert _losses(split) == _losses(run)  # every step, the one after the resume included


@pytest.mark.parametrize("where", ["after_optimizer_step", "in_forward", "in_loader"])
def test_ctrl_c_at_any_point_resumes_to_the_same_losses(small_store, tiny_run, tmp_path, monkeypatch, where):
    """A SIGINT is deferred to the end of the step in progress: the checkpoint is at a step
    boundary, and the resumed run's losses equal the uninterrupted run's, step for step. The
    'after_optimizer_step' case is the race of a step done but not yet counted."""
    import signal

    from models import SiameseSync
    from pairloader import PairLoader

    run, _ = tiny_run
    fire = {"at": 11, "seen": 0}

    def interrupt_once():
        fire["seen"] += 1
        if fire["seen"] == fire["at"]:
            os.kill(os.getpid(), signal.SIGINT)

    if where == "after_optimizer_step":
        original = torch.optim.AdamW.step

        def step(self, *a, **k):
            out = original(self, *a, **k)
            interrupt_once()
            return out
        monkeypatch.setattr(torch.optim.AdamW, "step", step)
    elif where == "in_forward":
        original = SiameseSync.forward
        monkeypatch.setattr(SiameseSync, "forward", lambda self, *a: (interrupt_once(), original(self, *a))[1])
    else:
        original = PairLoader._cpu_batch
        monkeypatch.setattr(PairLoader, "_cpu_batch", lambda self, step: (interrupt_once(), original(self, step))[1])
    out = tmp_path / "cut"
    with pytest.raises(SystemExit, match="checkpoint at step"):
        pretrain(small_store, out, TINY, progress=False)
    monkeypatch.undo()
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert 8 < step < TINY.steps
    pretrain(small_store, out, TINY, resume=True, progress=False)
    assert _losses(out) == _losses(run)


def test_a_checkpoint_loads_into_a_fresh_process(tiny_run, tmp_path):
    run, _ = tiny_run
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    code = f"""
import torch
from models import SiameseSync
state = torch.load({str(run / 'checkpoint.pt')!r}, map_location='cpu', weights_only=False)
m = SiameseSync(state['config']['arch'], state['config']['fusion']).eval()
m.load_state_dict(state['model'])
x = torch.load({str(tmp_path / 'x.pt')!r})
with torch.no_grad():
    torch.save(m(x[:1], x[1:]), {str(tmp_path / 'y.pt')!r})
print(state['step'])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(TINY.steps)
    from models import SiameseSync

    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    m = SiameseSync("resnet18", "mult").eval()
    m.load_state_dict(state["model"])
    with torch.no_grad():
        want = m(x[:1], x[1:])
    got = torch.load(tmp_path / "y.pt")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_a_second_run_into_the_same_folder_is_refused(small_store, tiny_run):
    run, _ = tiny_run
    r = CliRunner().invoke(sync_train, ["pretrain", "--store", str(small_store), "--out", str(run), "--preset", "tiny"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(sync_train, ["pretrain", "--store", str(small_store), "--out", str(run), "--fusion", "max"])
    assert r.exit_code == 2 and "'max' is not one of 'mult', 'concat', 'add', 'diff'" in r.output


def test_ddp_with_two_cpu_processes(small_store, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "train.cli", "pretrain", "--store",
           str(small_store), "--out", str(tmp_path / "ddp"), "--preset", "tiny", "--steps", "3",
           "--batch", "2", "--input-size", "32", "--workers", "0", "--eval-batches", "1", "--d-max", "20"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["steps"] == 3
    log = [json.loads(line) for line in open(tmp_path / "ddp" / "log.jsonl")]
    assert log[-1]["pairs_per_s"] > 0 and len(log) >= 1


def test_the_network_can_fit_one_batch(small_store):
    """Model, loss (1), labels and gradients agree: a fixed batch is learned in a few steps."""
    from models import SiameseSync, accuracy, ssl_loss
    from pairloader import PairLoader

    batch = next(iter(PairLoader(small_store, batch_size=4, seed=0, backend="torch", workers=0, steps=1,
                                 sampler=TINY.sampler_config())))
    torch.manual_seed(0)
    model = SiameseSync("resnet18", "mult")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(25):
        s, f = model(batch["x1"], batch["x2"])
        loss = ssl_loss(s, f, batch["sync_label"], batch["flip_label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * 4 * np.log(2)
    assert accuracy(s.detach(), batch["sync_label"]) == (8, 8)
    assert accuracy(f.detach(), batch["flip_label"]) == (8, 8)


def test_resume_refuses_other_options_naming_them_and_applies_harmless_ones(small_store, tiny_run, tmp_path):
    import shutil

    run, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    args = ["pretrain", "--store", str(small_store), "--out", str(copy), "--resume"]
    r = CliRunner().invoke(sync_train, [*args, "--steps", "100", "--lr", "0.1"])
    assert r.exit_code == 2 and "--steps 100 (run: 24)" in r.output and "--lr 0.1" in r.output
    r = CliRunner().invoke(sync_train, [*args, "--workers", "1", "--log-every", "5"])
    assert r.exit_code == 0, r.output
    assert "workers 0 -> 1" in r.output and "log_every 1 -> 5" in r.output


def test_a_resumed_log_holds_each_step_once(small_store, tiny_run, tmp_path):
    run, _ = tiny_run
    split = tmp_path / "split"
    pretrain(small_store, split, TINY, progress=False, stop_after=10)
    with open(split / "log.jsonl", "a") as f:  # steps logged after the checkpoint, then a kill
        f.write(json.dumps({"step": 11, "loss": 9.9}) + "\n")
    pretrain(small_store, split, TINY, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in open(split / "log.jsonl")]
    assert steps == list(range(1, TINY.steps + 1)) and _losses(split) == _losses(run)


def _same_state(a, b):
    """Two checkpoints hold the same weights, batch-norm buffers, optimizer state and step."""
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k  # weights and running statistics
    for i, s in a["optimizer"]["state"].items():
        for k, v in s.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][k])), (i, k)
    assert a["scheduler"] == b["scheduler"]


def test_sigkill_sigint_and_sigterm_resumes_equal_the_uninterrupted_run_weights_optimizer_and_buffers(
        small_store, tiny_run, tmp_path):
    import signal
    import time

    run, _ = tiny_run
    want = torch.load(run / "checkpoint.pt", weights_only=False)
    args = [sys.executable, "-m", "train.cli", "pretrain", "--store", str(small_store), "--preset", "tiny",
            "--batch", "4", "--input-size", "48", "--steps", "24", "--log-every", "1", "--checkpoint-every", "8",
            "--eval-batches", "2", "--workers", "0", "--d-max", "20"]
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGTERM):  # SIGTERM: what SLURM and Kubernetes send
        out = tmp_path / sig.name
        proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 11:
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        err = proc.communicate()[1].decode()
        assert proc.returncode != 0, err
        if sig != signal.SIGKILL:
            assert "checkpoint at step" in err and "Traceback" not in err
        subprocess.run([*args, "--out", str(out), "--resume"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        _same_state(torch.load(out / "checkpoint.pt", weights_only=False), want)
        assert _losses(out) == _losses(run)


def test_cpu_bf16_is_opt_in_and_changes_the_numbers(small_store, tiny_run, tmp_path):
    """Off by default (a run's numbers do not depend on the CPU it ran on); on, the step runs in
    bfloat16 autocast on the CPU and the losses differ from the fp32 run's."""
    run, _ = tiny_run
    cfg = dataclasses.replace(TINY, steps=3, cpu_bf16=True, eval_batches=1)
    pretrain(small_store, tmp_path / "bf16", cfg, progress=False)
    fp32, bf16 = _losses(run)[:3], _losses(tmp_path / "bf16")
    assert np.isfinite(bf16).all() and len(bf16) == 3
    assert fp32[0] != bf16[0] and abs(fp32[0] - bf16[0]) < 0.1 * abs(fp32[0])
    assert not TINY.cpu_bf16 and not PRETRAIN_PRESETS["paper"].cpu_bf16
