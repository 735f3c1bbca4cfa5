"""Checkpoints: written atomically (temp file + rename), everything needed to resume exactly."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: str | Path, **state) -> None:
    path = Path(path)
    tmp = path.with_name(f".tmp.{path.name}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint; train first or pass the run folder that holds it")
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
