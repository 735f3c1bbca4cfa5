"""`sync-train demo` on a tiny setting: every stage runs and leaves what it promises."""
from click.testing import CliRunner

from h36m_prep.inspect_store import info
from train.cli import main as sync_train


def test_demo_makes_dataset_previews_store_runs_reports_and_the_table(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "8", "--scale", "0.15", "--workers", "1",
            "--pretrain-steps", "3", "--finetune-steps", "3"]
    r = CliRunner().invoke(sync_train, args)
    assert r.exit_code == 0, r.output
    for name in ("preview_train.png", "preview_test.png", "store_preview.png"):
        assert (out / name).stat().st_size > 1000
    i = info(out / "store.zarr")
    # S11 Directions camera 54138969 is left out, as public Human3.6M toolkits do
    assert i["complete"] and i["units"]["done"] == 7 * 3 * 4 - 1
    assert i["frames"] == {"train": 5 * 3 * 4 * 8, "test": (2 * 3 * 4 - 1) * 8}
    assert i["excluded"] == [{"sequence": "S11/Directions", "camera": "54138969", "reason": "corrupt video"}]
    runs = ("pretrain", "finetune_ssl", "finetune_random", "finetune_random_unfrozen")
    for run in runs:
        assert (out / run / "metrics.json").exists() and (out / run / "checkpoint.pt").exists()
    for name in ("report.md", "qualitative.png", "sync_vs_gap.png", "retrieval.png"):
        assert (out / "eval_ssl" / name).exists(), name
    assert (out / "eval_random" / "report.md").exists() and (out / "eval_random_unfrozen" / "report.md").exists()
    table = (out / "results.md").read_text()
    assert "| ssl | stages:3 |" in table and "| random | stages:3 |" in table and table in r.output
    assert "| random_unfrozen | none |" in table and "background removed" in table
    assert "| ssl | layer4 |" in table and "| random | layer3 |" in table and "interval over test instants" in table
    for name in ("ssl", "random"):
        probe = (out / f"probe_{name}" / "probe.json").read_text()
        assert '"val_subject": "S8"' in probe
    logs = {run: (out / run / "log.jsonl").read_text() for run in runs}
    # a second run finds everything done and redoes nothing
    again = CliRunner().invoke(sync_train, args)
    assert again.exit_code == 0, again.output
    assert "0 frames rendered now" in again.output and "0 frames written now" in again.output
    assert "0 frames rendered now" not in r.output
    assert logs == {run: (out / run / "log.jsonl").read_text() for run in logs}  # no run trained again
