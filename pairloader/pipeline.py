"""The NVIDIA DALI pipeline: a plan + the store's arrays -> normalized NCHW tensors.

A parallel external source (worker processes, sample mode) reads each image of a plan from the
store; DALI composites foreground and background, warps (crop jitter, scale, rotation and the
mirror, all in one affine), and normalizes. On the GPU when `device_id` is a GPU, on the CPU
with `device_id=None`. The source is a pure function of (seed, step, sample index), so the
batch of a step is the same whatever the number of workers.
"""
from __future__ import annotations

import numpy as np

from .fetch import MEAN, STD, StoreReader, dali_matrix, fetch_encoded, fetch_image, prefetch_plan


class PlanSource:
    """Sample k of iteration i: image k of the plan of step start_step + i (`plan.images()`),
    or with pairs=True image 2k of it for k < P and image 2(k - P) + 1 after, so that the batch
    is every pair's x1, then every pair's x2. Picklable, for DALI's worker processes. sampler:
    anything with plan(seed, step, rank, world_size) whose result has images()."""

    def __init__(self, reader: StoreReader, sampler, seed: int, start_step: int,
                 steps: int | None, rank: int, world_size: int, pairs: bool = False, ahead: int = 0):
        self.reader, self.sampler = reader, sampler
        self.seed, self.start_step, self.steps = seed, start_step, steps
        self.rank, self.world_size, self.pairs, self.ahead = rank, world_size, pairs, ahead
        self._plan = (None, None)

    @property
    def encoded(self) -> bool:
        """Whether the crops go to DALI as JPEG files (decoded there, nvJPEG on a GPU): a JPEG
        store, unless its crops are re-compressed, which happens here, on decoded pixels."""
        cfg = getattr(self.sampler, "cfg", None)
        return self.reader.jpeg and not (cfg is not None and getattr(cfg, "recompress", (0, 0))[1])

    def plan(self, step: int):
        if self._plan[0] != step:
            if self.reader.remote and self._plan[0] is None:  # a store in object storage: fetch ahead
                for s in range(step, step + self.ahead):
                    prefetch_plan(self.reader, self.sampler.plan(self.seed, s, self.rank, self.world_size))
            self._plan = (step, self.sampler.plan(self.seed, step, self.rank, self.world_size))
            if self.reader.remote and self.ahead:
                prefetch_plan(self.reader, self.sampler.plan(self.seed, step + self.ahead, self.rank, self.world_size))
        return self._plan[1]

    def __call__(self, info):
        if self.steps is not None and info.iteration >= self.steps:
            raise StopIteration
        plan = self.plan(self.start_step + info.iteration)
        rows, bg_mode, bg_index, bg_flip, affine = plan.images()
        k = info.idx_in_batch
        if self.pairs:
            n_pairs = len(rows) // 2
            k = 2 * k if k < n_pairs else 2 * (k - n_pairs) + 1
        if self.encoded:
            image, weight, behind = fetch_encoded(self.reader, rows[k], bg_mode[k], bg_index[k], bg_flip[k])
        else:  # decoded here (and re-compressed, when the plan says so)
            quality = plan.qualities()[k] if hasattr(plan, "qualities") else 0
            image, weight, behind = fetch_image(self.reader, rows[k], bg_mode[k], bg_index[k], bg_flip[k], 1, quality)
        return image, weight, behind, dali_matrix(affine[k])


def build_pipeline(source: PlanSource, images_per_batch: int, out_size: int, workers: int,
                   threads: int, device_id: int | None):
    """A built DALI pipeline whose run() returns one TensorList [images, 3, O, O] float32. A store
    of JPEG crops hands DALI the files as they are: its image decoder decodes them, on the GPU
    (nvJPEG, `device="mixed"`) when device_id is a GPU, else on the CPU."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device_id is not None
    encoded = source.encoded

    @pipeline_def(batch_size=images_per_batch, num_threads=threads, device_id=device_id,
                  py_num_workers=max(1, workers), py_start_method="spawn", prefetch_queue_depth=2)
    def pairs():
        image, weight, behind, matrix = fn.external_source(
            source=source, num_outputs=4, batch=False, parallel=True,
            layout=["" if encoded else "HWC", "HWC", "HWC", ""],
            dtype=[types.UINT8, types.UINT8, types.UINT8, types.FLOAT])
        if encoded:
            image = fn.decoders.image(image, device="mixed" if gpu else "cpu", output_type=types.RGB)
        if gpu:
            weight, behind = weight.gpu(), behind.gpu()
            image = image if encoded else image.gpu()
        w = fn.cast(weight, dtype=types.FLOAT)
        comp = fn.cast(image, dtype=types.FLOAT) * w + fn.cast(behind, dtype=types.FLOAT) * (1.0 - w)
        warped = fn.warp_affine(comp, matrix=matrix, size=(out_size, out_size), inverse_map=True,
                                interp_type=types.INTERP_LINEAR, fill_value=0.0)
        return fn.crop_mirror_normalize(warped, mean=list(MEAN), std=list(STD), output_layout="CHW",
                                        dtype=types.FLOAT)

    pipe = pairs()
    pipe.build()
    return pipe


def to_torch(tensor_list, gpu: bool):
    """A DALI TensorList [n, 3, O, O] -> a torch tensor (on the pipeline's device)."""
    import torch

    if not gpu:
        return torch.from_numpy(np.array(tensor_list.as_tensor()))
    from nvidia.dali.plugin.pytorch import feed_ndarray

    t = tensor_list.as_tensor()
    out = torch.empty(t.shape(), dtype=torch.float32, device="cuda")
    feed_ndarray(t, out)
    return out
