"""The batches a network trains on, in their own module (torch only, no Lightning): the network's training
(training/module.py) and its linearization (training/linearized.py) draw the very same ones."""
from __future__ import annotations

import math

import torch


class EpochBatches(torch.utils.data.Sampler):
    """The batches of one epoch, as lists of indices: a permutation of range(n) per epoch, a pure function of
    (seed, epoch), cut into batches of `batch_size` (the last one shorter), so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would; `skip_batches` drops the batches of the resumed epoch
    that were already trained on (once). Whole batches, not single indices: the loader then takes each batch
    with one indexing of the tensors instead of collating batch_size single examples."""

    def __init__(self, n: int, seed: int, batch_size: int):
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int):  # Lightning calls this at the start of every epoch
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        skip, self.skip_batches = self.skip_batches, 0
        return iter(torch.randperm(self.n, generator=g).split(self.batch_size)[skip:])

    def __len__(self):  # batches per epoch
        return math.ceil(self.n / self.batch_size)
