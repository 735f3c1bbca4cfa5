"""The command line starts without loading torch: data preparation and the demo's first stages
need none of it."""
import subprocess
import sys


def test_cli_start_up_does_not_import_torch():
    code = "import sys, train.cli, h36m_prep.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
