"""The command line starts without loading torch: data preparation and the demo's first stages
need none of it."""
import subprocess
import sys


def test_cli_start_up_does_not_import_torch():
    code = "import sys, train.cli, h36m_prep.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_option_of_both_command_lines_says_what_it_is():
    """Each option's help names what it is; choices and defaults (or each preset's value) show."""
    from h36m_prep.cli import main as prep
    from train.cli import main as train

    missing = []
    for group in (prep, train):
        for name, command in group.commands.items():
            for param in command.params:
                if param.param_type_name == "option" and param.name != "help":
                    text = param.help or ""
                    shows_default = ("default" in text or "preset" in text or param.show_default or param.is_flag
                                     or param.required)
                    if len(text) < 8 or not shows_default:
                        missing.append(f"{group.name} {name} {param.opts[0]}: {text!r}")
    assert not missing, "\n".join(missing)


def test_each_training_command_offers_its_own_presets():
    from train.cli import main as train
    from train.config import FINETUNE_PRESETS, PRETRAIN_PRESETS

    preset = lambda cmd: next(p for p in train.commands[cmd].params if p.name == "preset")  # noqa: E731
    assert list(preset("pretrain").type.choices) == list(PRETRAIN_PRESETS)
    assert list(preset("finetune").type.choices) == list(FINETUNE_PRESETS)
