"""A normal (non-editable) install works: the wheel holds every package and its data, and both
command lines and all their subcommands start from it, in a fresh virtual environment, outside
the source tree."""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"h36m-prep": ["synth", "preview", "build", "verify", "info", "sync"],
            "sync-train": ["demo", "pretrain", "finetune", "eval", "probe", "sync", "presets"]}


def test_the_wheel_installs_and_every_command_starts_outside_the_source_tree(tmp_path):
    # from a copy of the tree: setuptools would reuse a build/ folder left in the tree by an earlier build
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "demo", "runs",
                                                              "__pycache__", "tests", "benchmarks", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(tree)],
                   check=True, capture_output=True, text=True)
    wheel = next((tmp_path / "dist").glob("multiview_sync-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    source = {str(p.relative_to(ROOT)) for pkg in ("h36m_prep", "pairloader", "models", "train")
              for p in (ROOT / pkg).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert source <= set(names), sorted(source - set(names))  # every module and data file
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    # the dependencies from this environment, appended after the fresh one's own site-packages
    # (a path in a .pth file: the editable install's hooks in there are not loaded)
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, text=True)
    where = subprocess.run([str(env / "bin" / "python"), "-c", "import h36m_prep, train; print(h36m_prep.__file__)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert str(site) in where and str(ROOT) not in where
    from h36m_prep.cli import main as prep
    from train.cli import main as train

    assert {"h36m-prep": set(prep.commands), "sync-train": set(train.commands)} == {k: set(v) for k, v in COMMANDS.items()}
    for command, subcommands in COMMANDS.items():
        for args in ([], *([s] for s in subcommands)):
            out = subprocess.run([str(env / "bin" / command), *args, "--help"], cwd=tmp_path, capture_output=True,
                                 text=True)
            assert out.returncode == 0 and "Usage" in out.stdout, (command, args, out.stderr[-2000:])
