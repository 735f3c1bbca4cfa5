"""Questions asked of a store's rows, by name: which rows belong to a split, to subjects, move,
fall on every k-th frame; which subjects are the test subjects. Nothing outside this module
spells a split as a number."""
from __future__ import annotations

import numpy as np
import zarr

from .schema import SPLITS, done_rows


def split_code(split: str) -> int:
    """The `split` column's value of a split named 'train' or 'test'."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    return SPLITS[split]


def subject_mask(g: zarr.Group, subjects=None) -> np.ndarray:
    """bool [N]: rows of the named subjects (None: all); an unknown name is an error."""
    if subjects is None:
        return np.ones(g["subject"].shape[0], bool)
    names = list(g.attrs["subjects"])
    unknown = [s for s in subjects if s not in names]
    if unknown:
        raise ValueError(f"subjects {unknown} are not in the store (it has {' '.join(names)}); choose subjects it "
                         "has (sync-train finetune: --protocol S1 needs only S1; --protocol store trains on every "
                         "training subject of the store, such as a labelled rig's training takes)")
    return np.isin(g["subject"][:], [names.index(s) for s in subjects])


def row_mask(g: zarr.Group, split: str | None = None, subjects=None, moving: bool | None = None,
             every: int = 1, done: bool = True) -> np.ndarray:
    """bool [N]: the rows that are written (done), of `split` ('train' | 'test' | None: both), of
    `subjects` (None: all), moving or not (None: either), with frame % every == 0."""
    ok = done_rows(g) if done else np.ones(g["subject"].shape[0], bool)
    if split is not None:
        ok &= g["split"][:] == split_code(split)
    if subjects is not None:
        ok &= subject_mask(g, subjects)
    if moving is not None:
        ok &= g["moving"][:] == moving
    if every != 1:
        ok &= g["frame"][:] % every == 0
    return ok


def rows(g: zarr.Group, split: str | None = None, subjects=None, moving: bool | None = None, every: int = 1,
         done: bool = True) -> np.ndarray:
    """int64 [M]: the row numbers that `row_mask` selects, in store order."""
    return np.flatnonzero(row_mask(g, split, subjects, moving, every, done)).astype(np.int64)


def split_of_rows(g: zarr.Group, rows_: np.ndarray) -> np.ndarray:
    """str [len(rows)]: 'train' or 'test' for each row."""
    names = {v: k for k, v in SPLITS.items()}
    return np.array([names[int(v)] for v in g["split"].get_orthogonal_selection((np.asarray(rows_),))])


def subjects_of(g: zarr.Group, split: str) -> list[str]:
    """The subjects (in the store's order) with written rows in `split`: the test subjects of a
    Human3.6M store are S9 and S11 (the sessions of a rig's test takes)."""
    ok = row_mask(g, split)
    present = set(np.unique(g["subject"][:][ok]).tolist())
    return [s for i, s in enumerate(g.attrs["subjects"]) if i in present]
