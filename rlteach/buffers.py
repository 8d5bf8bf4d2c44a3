"""A uniform experience-replay buffer on a preallocated TensorDict (Lin, 1992; Mnih et al., 2015).

Transitions are written round-robin into a ring of ``capacity`` slots, the oldest overwritten
first, and minibatches are drawn uniformly with replacement. This is the behaviour of TorchRL's
``ReplayBuffer(storage=LazyTensorStorage(capacity))`` with its default round-robin writer and
random sampler: the same slots are written in the same order, and with the same generator state
the same indices are drawn.

============  ================  ==========================================================
symbol        shape             meaning
============  ================  ==========================================================
``td``        [*B]              transitions to add; all batch dims are flattened: N = prod(B)
storage       [capacity]        TensorDict created on the first ``extend``, same keys as td
``cursor``    int               the slot the next transition goes to
sample        [batch_size]      rows storage[i] with i ~ Uniform{0, …, len − 1}
============  ================  ==========================================================

Device: the storage lives on ``device`` (default: wherever the first transitions come from), as
TorchRL's ``LazyTensorStorage(device=...)``; data from elsewhere is copied there on ``extend``,
so a sampled minibatch is already where the networks are and no copy is made per update. The
indices are drawn on the CPU by the buffer's CPU generator, so the same seed samples the same
transitions on every device. (A buffer too large for a GPU's memory can stay on the CPU with
``device="cpu"``; move each minibatch with ``batch.to(device)`` then, as Stable-Baselines3 does.)

Compact frames. Every entry is stored in the dtype it arrives in, so MinAtar's boolean frames
take one byte per cell instead of four. The keys named in ``as_float`` (the recipes name
``"observation"`` and ``("next", "observation")``) are converted to float32 when a minibatch is
sampled, with the same values (0/1 stay 0.0/1.0): the loss only ever sees float observations,
and only ``batch_size`` rows are converted per draw.

Memory, from the storage's ``nbytes`` (:attr:`ReplayBuffer.nbytes`): a DQN transition keeps
``observation`` and ``("next", "observation")`` (H·W·k bytes each as bool), ``action`` (int64,
8 bytes), ``("next", "reward")`` (float32, 4) and three bool flags (3), so a 1,000,000-transition
buffer takes

=========================  ===  ===================  ==================  ======================
game                       k    bool frames          float32 frames      bool, next derived
=========================  ===  ===================  ==================  ======================
MinAtar Breakout/Asterix   4    815 MB (0.76 GiB)    3,215 MB (3.0 GiB)  415 MB (0.39 GiB)
MinAtar SpaceInvaders      6    1,215 MB (1.13 GiB)  4,815 MB (4.5 GiB)  615 MB (0.57 GiB)
=========================  ===  ===================  ==================  ======================

(measured by allocating the storage and summing its tensors' ``nbytes``; the tests check the
formula 2·H·W·k + 15 bytes per transition). The last column would store each frame once and
read s_{t+1} from the next slot; that needs the final frame of every episode stored apart, a
per-environment layout when several environments write interleaved, and care at the ring's
seam. This buffer keeps the simple layout, TorchRL's: s_{t+1} stored beside s_t, twice the
frames, 0.8 GB for a million Breakout transitions, which fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from rlteach._checks import key_str, resolve_device

__all__ = ["ReplayBuffer"]


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ReplayBuffer: {name} must be an integer >= 1, got {value!r}.")


class ReplayBuffer:
    """A fixed-capacity ring of transitions with uniform sampling with replacement.

    ``seed`` seeds a private ``torch.Generator`` (or pass your own ``generator``, a CPU one);
    without either, sampling uses a generator seeded from torch's global RNG, so
    ``torch.manual_seed`` still makes a run reproducible. ``device`` is where the transitions are
    stored (see the module docstring); ``None`` keeps them where the first ``extend`` finds them.
    ``as_float`` names keys stored as they come (e.g. bool frames) and returned as float32 by
    :meth:`sample` (see the module docstring).
    """

    def __init__(
        self,
        capacity: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        as_float: Sequence[NestedKey] = (),
    ) -> None:
        _check_positive_int("capacity", capacity)
        if seed is not None and generator is not None:
            raise ValueError("ReplayBuffer: pass either seed or generator, not both.")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"ReplayBuffer: the generator must be a CPU one (the indices are drawn on the "
                f"CPU, whatever the storage device), got one on {generator.device}."
            )
        self.capacity = capacity
        self.device = None if device is None else resolve_device(device)
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64, device="cpu"))
            generator.manual_seed(seed)
        self.generator = generator
        self.as_float = tuple(as_float)
        self._storage: TensorDict | None = None
        self._cursor = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the storage (all ``capacity`` slots; 0 before the first ``extend``)."""
        if self._storage is None:
            return 0
        leaves = self._storage.values(include_nested=True, leaves_only=True)
        return sum(t.nbytes for t in leaves)

    @property
    def storage(self) -> TensorDict | None:
        """The [capacity] TensorDict (``None`` before the first ``extend``); slots ≥ len unused."""
        return self._storage

    def _check_layout(self, flat: TensorDictBase) -> None:
        """The new transitions must carry the same keys, feature shapes and dtypes as storage."""
        keys_new = set(flat.keys(include_nested=True, leaves_only=True))
        keys_old = set(self._storage.keys(include_nested=True, leaves_only=True))
        if keys_new != keys_old:
            missing = ", ".join(sorted(key_str(k) for k in keys_old - keys_new)) or "none"
            extra = ", ".join(sorted(key_str(k) for k in keys_new - keys_old)) or "none"
            raise KeyError(
                f"ReplayBuffer.extend: the data's keys differ from the stored ones (missing: "
                f"{missing}; unexpected: {extra}). Every extend must carry the same keys; "
                f"select or exclude keys first, e.g. td.exclude(...)."
            )
        for key in keys_old:
            new, old = flat.get(key), self._storage.get(key)
            if new.shape[1:] != old.shape[1:] or new.dtype != old.dtype:
                raise ValueError(
                    f"ReplayBuffer.extend: {key_str(key)} has per-transition shape "
                    f"{list(new.shape[1:])} and dtype {new.dtype}, but the buffer stores "
                    f"{list(old.shape[1:])} and {old.dtype}."
                )

    def extend(self, td: TensorDictBase) -> torch.Tensor:
        """Add every transition of ``td`` (batch dims flattened); returns the slots written."""
        if not isinstance(td, TensorDictBase):
            raise TypeError(f"ReplayBuffer.extend takes a TensorDict, got {type(td).__name__}.")
        flat = td.reshape(-1) if td.batch_dims != 1 else td
        n = flat.shape[0]
        if n == 0:
            return torch.empty(0, dtype=torch.int64, device="cpu")
        if self.device is not None and any(
            t.device != self.device for t in flat.values(include_nested=True, leaves_only=True)
        ):
            flat = flat.to(self.device)
        if self._storage is None:
            missing = [key_str(k) for k in self.as_float if k not in flat.keys(include_nested=True)]
            if missing:
                raise KeyError(
                    f"ReplayBuffer.extend: as_float names {', '.join(missing)}, which the data "
                    f"does not carry (its keys: {', '.join(sorted(map(key_str, flat.keys(True, True))))})."
                )
            # storage is allocated lazily: its layout (and dtypes) are those of the first data
            self._storage = flat[0].expand(self.capacity).clone().zero_()
        else:
            self._check_layout(flat)
        # Round-robin: transition j goes to slot (cursor + j) mod capacity. When one call brings
        # more than capacity transitions, only the last `capacity` survive, as if written one
        # by one.
        if n > self.capacity:
            flat = flat[n - self.capacity :]
            self._cursor = (self._cursor + n - self.capacity) % self.capacity
            n = self.capacity
        slots = (self._cursor + torch.arange(n, device="cpu")) % self.capacity
        # leaf by leaf: the same copies as self._storage[slots] = flat, at half its cost for the
        # one-transition batches of the off-policy loop
        for key in self._storage.keys(include_nested=True, leaves_only=True):
            self._storage.get(key)[slots] = flat.get(key).detach()
        self._cursor = (self._cursor + n) % self.capacity
        self._size = min(self._size + n, self.capacity)
        return slots

    def sample(self, batch_size: int) -> TensorDict:
        """Draw ``batch_size`` transitions uniformly, with replacement: a [batch_size] TensorDict."""
        _check_positive_int("batch_size", batch_size)
        if self._size == 0:
            raise RuntimeError(
                "ReplayBuffer.sample: the buffer is empty; extend it with transitions first "
                "(e.g. collect some random-policy steps before training)."
            )
        index = torch.randint(
            0, self._size, (batch_size,), generator=self.generator, device="cpu"
        )
        batch = self._storage[index]
        for key in self.as_float:  # compact frames become float32 here, values unchanged
            value = batch.get(key)
            if value.dtype != torch.float32:
                batch.set(key, value.to(torch.float32))
        return batch

    def empty(self) -> None:
        """Forget every transition (the storage keeps its layout)."""
        self._cursor = 0
        self._size = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: stored transitions, cursor, size and generator state."""
        return {
            "capacity": self.capacity,
            "storage": None if self._storage is None else self._storage[: self._size].clone(),
            "cursor": self._cursor,
            "size": self._size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"ReplayBuffer.load_state_dict: the checkpoint has capacity {state['capacity']}, "
                f"this buffer {self.capacity}. Create the buffer with the same capacity."
            )
        stored = state["storage"]
        if stored is None:
            self._storage = None
        else:
            if self.device is not None:  # a checkpoint is read onto the CPU
                stored = stored.to(self.device)
            self._storage = stored[0].expand(self.capacity).clone().zero_()
            self._storage[: state["size"]] = stored
        self._cursor = state["cursor"]
        self._size = state["size"]
        self.generator.set_state(state["generator"])
