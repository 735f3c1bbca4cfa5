"""Checkpoints: written atomically (temp file + rename), everything needed to resume exactly."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: str | Path, **state) -> None:
    """Write atomically: a temp file, then a rename. If the write fails (a full disk), the temp
    file is removed and the previous checkpoint stays as it was."""
    path = Path(path)
    tmp = path.with_name(f".tmp.{path.name}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError of its writer
        size = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        need = path.stat().st_size if path.exists() else size
        raise OSError(f"{path}: the checkpoint could not be written ({e}); it needs about {need / 1e6:.0f} MB "
                      f"free on that disk (the previous checkpoint, if any, is intact); free space and rerun "
                      "with --resume") from None


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint; train first or pass the run folder that holds it")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a truncated or overwritten file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e}); it is damaged: "
                         "train the run again into a new --out") from None


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
