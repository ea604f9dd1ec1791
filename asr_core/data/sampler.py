"""Duration-bucketed batches, sharded over data-parallel ranks, with exact mid-epoch resume.

Plan of one epoch (every rank computes the same global plan and keeps its share):

1. Buckets: the utterances sorted by duration (ties by index) and cut into ``num_buckets``
   equal-count groups (fewer if a bucket would hold less than about one batch). Membership is fixed; with ``shuffle`` each bucket's order is permuted
   per epoch (rng seeded with ``(seed, epoch)``), so batches differ between epochs.
2. Batches inside each bucket: ``batch_size`` items, or greedily as many as fit the budget
   ``len(batch) * max(duration in batch) <= max_batch_seconds`` (padded seconds, which is what
   the memory pays for). A clip longer than the budget is an error: filter it out first.
   The number of budget batches can vary by a few between epochs; ``len()`` is exact per epoch.
3. Equal shares: every rank gets the same number of batches and no utterance is used twice
   in an epoch. If the batch count is not a multiple of ``num_replicas``:
   ``drop_last=False`` splits the largest batches in two until it is (nothing is dropped;
   halves of a batch within budget are within budget); ``drop_last=True`` drops the extra
   batches (random ones with ``shuffle``, so no utterance is always left out) and, in
   ``batch_size`` mode, also each bucket's incomplete last batch.
4. Order: consecutive batches in duration order are grouped ``num_replicas`` at a time, so
   ranks work on similar lengths at each step (no rank waits on a much longer batch); with
   ``shuffle`` the groups are permuted; rank ``r`` takes the ``r``-th batch of each group.
   Without ``shuffle`` batches run shortest first.

Resume: the position in the epoch advances by :meth:`mark_consumed`. :class:`ResumableLoader`
calls it for each batch it hands the loop (a DataLoader's workers prefetch, so the sampler
cannot count by itself; with a plain DataLoader, call it yourself per batch trained on).
:meth:`state_dict` is the same on every rank (equal shares, lockstep), so rank 0's copy can
be saved and loaded everywhere. After
:meth:`load_state_dict` the next ``iter()`` starts at the first batch not yet consumed.
``set_epoch(e)`` with the epoch already current keeps the position, so a resumed loop can call
it as usual; a new epoch starts at its first batch.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import DataLoader, Sampler

log = logging.getLogger(__name__)


class BucketingBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; see the module docstring for the plan."""

    def __init__(
        self,
        durations: Sequence[float] | np.ndarray,
        batch_size: int | None = None,
        max_batch_seconds: float | None = None,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        d = np.asarray(durations, dtype=np.float32)
        if d.ndim != 1 or len(d) == 0:
            raise ValueError(f"durations must be a non-empty 1-D sequence, got shape {d.shape}")
        if not np.isfinite(d).all() or (d <= 0).any():
            raise ValueError(f"durations must be finite and > 0; got min {d.min()}, max {d.max()}")
        if (batch_size is None) == (max_batch_seconds is None):
            raise ValueError(
                f"give exactly one of batch_size / max_batch_seconds, got {batch_size} / {max_batch_seconds}"
            )
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_seconds is not None and d.max() > max_batch_seconds:
            raise ValueError(
                f"a clip of {d.max():.2f} s (index {int(d.argmax())}) exceeds max_batch_seconds="
                f"{max_batch_seconds}; filter long clips out (max_duration) or raise the budget"
            )
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.durations = d
        self.batch_size = batch_size
        self.max_batch_seconds = max_batch_seconds
        # a bucket smaller than a batch only makes small batches: keep about one full batch per bucket
        per_batch = batch_size if batch_size is not None else max(1, int(max_batch_seconds // np.median(d)))
        self.num_buckets = max(1, min(num_buckets, len(d) // per_batch))
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        order = np.argsort(d, kind="stable")
        self._buckets = np.array_split(order, self.num_buckets)
        self._epoch = 0
        self._consumed = 0
        self._plan_cache: tuple[int, list[np.ndarray], int] | None = None  # (epoch, my batches, dropped)
        self._plan()  # fail now, not at the first iter(), if the data cannot be shared out

    # -- epoch and position -------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def batches_consumed(self) -> int:
        return self._consumed

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a different one starts at its first batch, the current one keeps its position."""
        epoch = int(epoch)
        if epoch != self._epoch:
            self._epoch, self._consumed = epoch, 0

    def mark_consumed(self, n: int = 1) -> None:
        """Record that the loop received ``n`` more batches of the current epoch."""
        if not 0 <= self._consumed + n <= len(self):
            raise ValueError(f"cannot consume {n} more: {self._consumed} of {len(self)} batches consumed")
        self._consumed += n

    @property
    def remaining(self) -> int:
        """Batches the next ``iter()`` yields."""
        return len(self) - self._consumed

    def __len__(self) -> int:
        """Batches of this rank in the whole current epoch (the same on every rank)."""
        return len(self._plan()[1])

    @property
    def dropped_samples(self) -> int:
        """Utterances left out of the current epoch by ``drop_last`` (on all ranks together)."""
        return self._plan()[2]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan()[1]
        start = self._consumed  # read now: DataLoader workers start pulling right away
        if batches and start >= len(batches):
            warnings.warn(
                f"epoch {self._epoch} is already fully consumed ({start} batches); "
                f"call set_epoch({self._epoch + 1}) to start the next one",
                stacklevel=2,
            )
        return (b.tolist() for b in batches[start:])

    # -- checkpointing --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "batches_consumed": self._consumed,
            "seed": self.seed,
            "fingerprint": self.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Continue at the first unconsumed batch of ``state["epoch"]``.

        ``strict`` refuses a state made with another seed, other durations or another batching
        configuration (the saved position would point into a different plan). With
        ``strict=False`` the saved seed is adopted and the position kept as a best effort.
        """
        problems = []
        if int(state["seed"]) != self.seed:
            problems.append(f"seed {state['seed']} (this sampler: {self.seed})")
        if "fingerprint" in state and state["fingerprint"] != self.fingerprint():
            problems.append("durations or batching configuration (fingerprint differs)")
        if problems:
            msg = f"sampler state was saved with a different {' and '.join(problems)}; resume would not be exact"
            if strict:
                raise ValueError(msg)
            warnings.warn(msg, stacklevel=2)
        self.seed = int(state["seed"])
        self._epoch, self._consumed, self._plan_cache = int(state["epoch"]), 0, None
        consumed = int(state["batches_consumed"])
        if not 0 <= consumed <= len(self):
            if strict:
                raise ValueError(f"batches_consumed={consumed} outside [0, {len(self)}] for epoch {self._epoch}")
            consumed = min(max(consumed, 0), len(self))
        self._consumed = consumed

    def fingerprint(self) -> str:
        """A short hash of the durations and of everything but seed and rank that shapes the plan."""
        h = hashlib.sha1(self.durations.tobytes())
        h.update(
            repr(
                (
                    self.batch_size,
                    self.max_batch_seconds,
                    self.num_buckets,
                    self.shuffle,
                    self.drop_last,
                    self.num_replicas,
                )
            ).encode()
        )
        return h.hexdigest()[:16]

    # -- the plan -----------------------------------------------------------------------

    def _plan(self) -> tuple[int, list[np.ndarray], int]:
        if self._plan_cache is None or self._plan_cache[0] != self._epoch:
            self._plan_cache = (self._epoch, *self._make_plan(self._epoch))
        return self._plan_cache

    def _make_plan(self, epoch: int) -> tuple[list[np.ndarray], int]:
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        batches: list[np.ndarray] = []
        for bucket in self._buckets:
            batches += self._pack(rng.permutation(bucket) if rng is not None else bucket)
        n_items = sum(len(b) for b in batches)
        batches = self._equal_shares(batches, rng)
        dropped = len(self.durations) - sum(len(b) for b in batches)
        if dropped:
            log.debug(
                "epoch %d: %d utterances dropped (%d before the replica split)",
                epoch,
                dropped,
                len(self.durations) - n_items,
            )
        per_rank = len(batches) // self.num_replicas
        if per_rank == 0:
            raise ValueError(
                f"{len(self.durations)} utterances make {len(batches)} batches: too few for "
                f"{self.num_replicas} replicas"
            )
        groups = rng.permutation(per_rank) if rng is not None else np.arange(per_rank)
        return [batches[g * self.num_replicas + self.rank] for g in groups], dropped

    def _pack(self, idx: np.ndarray) -> list[np.ndarray]:
        if self.batch_size is not None:
            out = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
            if self.drop_last and out and len(out[-1]) < self.batch_size:
                out.pop()
            return out
        budget, d = self.max_batch_seconds, self.durations[idx]
        out, start, longest = [], 0, 0.0
        for i, x in enumerate(d.tolist()):
            if i > start and (i - start + 1) * max(longest, x) > budget:
                out.append(idx[start:i])
                start, longest = i, x
            else:
                longest = max(longest, x)
        if len(idx) > start:
            out.append(idx[start:])
        return out

    def _equal_shares(self, batches: list[np.ndarray], rng: np.random.Generator | None) -> list[np.ndarray]:
        extra = len(batches) % self.num_replicas
        if extra == 0:
            return batches
        if not self.drop_last:
            need = self.num_replicas - extra
            largest = sorted(range(len(batches)), key=lambda i: -len(batches[i]))[:need]  # stable: ties by position
            if all(len(batches[i]) >= 2 for i in largest) and len(largest) == need:
                split = set(largest)
                out = []
                for i, b in enumerate(batches):
                    out += [b[: len(b) // 2], b[len(b) // 2 :]] if i in split else [b]
                return out
            warnings.warn(
                f"cannot split {need} batches of >= 2 utterances to share {len(batches)} batches equally "
                f"among {self.num_replicas} replicas; dropping {extra} batches instead",
                stacklevel=3,
            )
        if rng is not None:
            drop = set(rng.choice(len(batches), size=extra, replace=False).tolist())
        else:
            drop = set(range(len(batches) - extra, len(batches)))
        return [b for i, b in enumerate(batches) if i not in drop]


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`BucketingBatchSampler` that keeps the sampler's position exact.

    Workers prefetch ahead, so the sampler cannot know which batches the loop has used. This
    loader tells it: each batch handed to the loop counts as consumed (before the loop body
    runs), so ``sampler.state_dict()`` taken inside the loop resumes at the next batch.
    Each ``iter()`` also sets the dataset's epoch from the sampler's before any item is read.
    """

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.batch_sampler
        assert isinstance(sampler, BucketingBatchSampler), type(sampler)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(sampler.epoch)
        epoch = sampler.epoch
        for batch in super().__iter__():
            if sampler.epoch == epoch:  # a set_epoch() mid-iteration starts counting afresh
                sampler.mark_consumed()
            yield batch


def padding_fraction(durations: Sequence[float] | np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Padded seconds / total seconds computed over ``batches`` (0 = no padding)."""
    d = np.asarray(durations, dtype=np.float64)
    total = padded = 0.0
    for b in batches:
        x = d[np.asarray(b, dtype=np.int64)]
        if len(x):
            total += len(x) * x.max()
            padded += len(x) * x.max() - x.sum()
    return padded / total if total else 0.0
