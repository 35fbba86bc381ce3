"""Class-balanced batches (paper Sec. 4.1), the batches of every method's training.

"The batch size is set to 48 with at most 12 categories for each batch": CoAug's metric loss
(Eq. 12) needs same-class pairs in every batch, and every method trains on the same batches so
their runs differ only in the method.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ClassBalancedBatchSampler"]


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``classes_per_batch`` classes x ``batch_size // classes_per_batch`` images.

    Sec. 4.1: "The batch size is set to 48 with at most 12 categories for each batch": CoAug
    needs same-class pairs in every batch (Eq. 12). Each batch draws ``classes_per_batch``
    distinct classes and ``k = batch_size // classes_per_batch`` images of each.

    Within an epoch images are drawn without replacement: each class keeps a shuffled pool of
    its images; classes are chosen among those with at least k images left, with probability
    proportional to how many they have left (so pools drain evenly). Only when fewer than
    ``classes_per_batch`` classes have k images left are classes with too few left used (those
    with the most left first): such a class gives all it has left and is topped up with
    other images of that class drawn at random (already used this epoch, so they repeat
    within the epoch but not within the batch; only a class with fewer than k images in
    total repeats images within a batch).

    ``len(sampler) = len(labels) // batch_size``. The order is a deterministic function of
    ``(seed, epoch)``; call :meth:`set_epoch` at each epoch to get a different one.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int = 48,
        classes_per_batch: int = 12,
        seed: int = 0,
    ) -> None:
        super().__init__()
        labels_array = np.asarray(labels, dtype=np.int64)
        if labels_array.ndim != 1:
            raise ValueError(f"labels must be a flat sequence of ints, got shape "
                             f"{labels_array.shape}")
        if batch_size < 1 or classes_per_batch < 1 or batch_size % classes_per_batch != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of classes_per_batch "
                f"({classes_per_batch})"
            )
        classes = np.unique(labels_array)
        if classes_per_batch > len(classes):
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) exceeds the number of classes present "
                f"in labels ({len(classes)}): lower classes_per_batch"
            )
        if len(labels_array) < batch_size:
            raise ValueError(
                f"only {len(labels_array)} labels for batch_size {batch_size}: no full batch"
            )
        self.batch_size = batch_size
        self.classes_per_batch = classes_per_batch
        self.per_class = batch_size // classes_per_batch
        self.seed = seed
        self.epoch = 0
        self._by_class = [np.flatnonzero(labels_array == c) for c in classes]
        self._num_samples = len(labels_array)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (a deterministic function of ``(seed, epoch)``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_samples // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pools = [list(rng.permutation(idx)) for idx in self._by_class]
        k = self.per_class
        for _ in range(len(self)):
            left = np.array([len(p) for p in pools])
            full = np.flatnonzero(left >= k)
            if len(full) >= self.classes_per_batch:
                chosen = rng.choice(full, self.classes_per_batch, replace=False,
                                    p=left[full] / left[full].sum())
            else:
                # the classes with the most images left (random tie-break) fill the batch
                rest = np.flatnonzero(left < k)
                rest = rest[np.lexsort((rng.random(len(rest)), -left[rest]))]
                chosen = np.concatenate([full, rest[: self.classes_per_batch - len(full)]])
            batch: list[int] = []
            for c in chosen:
                take = pools[c][:k]
                del pools[c][:k]
                if len(take) < k:
                    take += self._top_up(rng, c, take, k - len(take))
                batch += [int(i) for i in take]
            yield batch

    def _top_up(self, rng: np.random.Generator, c: int, taken: list[int], need: int) -> list[int]:
        """``need`` more images of class ``c``: distinct from ``taken`` while the class has
        enough, repeated only for a class with fewer than k images in total."""
        others = np.setdiff1d(self._by_class[c], taken)
        if len(others) >= need:
            return list(rng.choice(others, need, replace=False))
        return list(others) + list(rng.choice(self._by_class[c], need - len(others)))
