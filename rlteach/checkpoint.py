"""Checkpoints that resume a training run bit-identically.

A run that is killed and resumed from its last checkpoint must end exactly where the same run
would have ended without the interruption: same evaluation returns, same final parameters, to the
last bit. That holds only if *everything* that influences the future is saved at the same
instant, at a batch boundary. This module is a generic saver: each tracked object saves and
restores itself with ``state_dict()`` / ``load_state_dict()`` (a ``torch.Generator`` with
``get_state()`` / ``set_state()``), and the saver adds the global RNGs. What each one holds:

===================  ====================================================================
what                 what its state holds
===================  ====================================================================
networks, losses,    their tensors (target networks are part of the loss's state dict),
optimisers, replay   the optimisers' moments, the buffer's storage, cursor and generator,
buffers, updaters    a hard updater's call counter
``torch.Generator``  its state (e.g. the generator that shuffles PPO's minibatches)
global RNGs          Python ``random``, NumPy's global RNG, torch's global CPU RNG (the
                     policy samples its actions from it), and the CUDA RNGs when CUDA is in
                     use (a policy on a GPU samples from those)
environments         (the ``state_dict`` of :class:`rlteach.envs.GymEnv`) each Gymnasium environment
                     pickled whole: its physical state, its own
                     ``np_random`` and its time-limit counter; plus the action space's RNG.
                     A multi-agent environment saves itself (``state_dict()``): the two-step
                     game its generator and states; each PettingZoo copy the attributes of
                     every wrapper layer (MPE's world, ``np_random``, step counter, agent
                     selector), since pickling it whole rebuilds a fresh, unreset env
collector            frames so far, the observation the next batch starts from, the returns
                     and lengths of the episodes in progress and of those finished
evaluator            the evaluation history, the next evaluation's frame count and the
                     training seconds so far (so the clock continues, evaluation excluded)
===================  ====================================================================

Writes are atomic: the checkpoint goes to ``checkpoint.pt.tmp``, is flushed to disk, then renamed
over ``checkpoint.pt``. A kill at any instant leaves either the previous checkpoint or the new
one, never half a file.

A recipe opts in with a few lines (see ``rlteach/recipes/ppo.py``)::

    def train(seed=0, quick=False, progress=True, cfg=None, checkpoint=None):
        ...  # build env, networks, loss, optimizer, collector, evaluator as before
        checkpoint = as_checkpointer(checkpoint)                        # PLUMBING
        checkpoint.track(policy=actor, loss=loss, optimizer=optimizer,  # PLUMBING
                         collector=collector, evaluator=evaluator, generator=generator)
        for batch in collector:
            ...  # learn
            stop = evaluator.after_batch(collector.frames, last=...)
            checkpoint.after_batch(collector.frames, finished=stop or ...)  # PLUMBING
            if stop:
                break

``track`` restores the saved state when the :class:`Checkpointer` was made with
``resume=True``; without a checkpointer (``checkpoint=None``) the calls do nothing. An
off-policy recipe also tracks its replay buffer and target updater (anything with
``state_dict`` / ``load_state_dict``). Then register it with
``rlteach.recipes.base.register_trainable(..., resumable=True)``.

A loop keeps no counters in local variables: the frame count, the current observation and the
training episodes belong to its collector, the update count and logs to an update log
(``rlteach/recipes/_offpolicy.py``), the evaluation history and clocks to the evaluator, each
with ``state_dict()`` / ``load_state_dict()``, tracked like the rest. A recipe that changes what
it tracks passes ``track(upgrade=...)``, which maps an older checkpoint's layout to the new one. Off-policy checkpoints hold the replay
buffer and are large, so save them less often (``every_frames``, ``--checkpoint-every``).
tests/test_cli_train.py is the pattern for the test: kill a run with SIGKILL after its first
checkpoint, resume it, and compare the log and the final parameters with an uninterrupted run.

The ``policy`` is also stored whole (pickled), so that ``python -m rlteach evaluate`` can run it
without knowing the recipe. Checkpoints are pickles: load only files you made yourself.

Devices: a checkpoint is always read onto the CPU (``map_location="cpu"``) and each tracked object
then takes its state onto the device it lives on: modules and optimisers by ``load_state_dict``
(which copies into their tensors, on whatever device those are), collectors and the off-policy
loop by moving the saved observation to their environment's device, replay buffers to their
storage device. So a run saved on a GPU resumes on the CPU and vice versa (``--device``); only a
resume on the same device is promised to be bit-identical, since the CPU and a GPU round (and
draw random numbers) differently.
"""

from __future__ import annotations

import csv
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Checkpointer",
    "NoCheckpoint",
    "as_checkpointer",
    "load_checkpoint",
    "write_csv",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------- capture


def _capture(name: str, obj) -> Any:
    """The state of one tracked object: a generator's, or what its ``state_dict()`` returns."""
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        return obj.state_dict()
    raise TypeError(
        f"Checkpointer: cannot save {name}={type(obj).__name__}: track torch generators or "
        f"objects with state_dict() and load_state_dict() (modules, optimisers, environments, "
        f"collectors, evaluators, replay buffers, updaters)."
    )


def _restore(obj, state) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def _curve_of(objects: dict[str, Any]) -> list | None:
    """The evaluation history of the tracked evaluator (the object with a ``curve``), if any."""
    for obj in objects.values():
        if not isinstance(obj, torch.Generator) and hasattr(obj, "curve"):
            return obj.curve
    return None


def _global_rngs() -> dict:
    cuda_in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if cuda_in_use else None,
    }


def _set_global_rngs(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("torch_cuda")  # absent from checkpoints written before devices existed
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)  # a run resumed on the CPU has no use for them


# ------------------------------------------------------------------------------ checkpointer


def _check_zip_crc(path: Path) -> None:
    """A torch file is a zip archive whose members carry a CRC-32; torch.load does not check
    them, so a flipped byte in a tensor would load silently. Check them all first."""
    if not zipfile.is_zipfile(path):
        return  # torch.load then says what it is not
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"the entry {bad!r} fails its CRC-32 check")


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file (a directory means its ``checkpoint.pt``), with a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}. `python -m rlteach train ALGO --out DIR` writes "
            f"DIR/{CHECKPOINT_NAME}."
        )
    if path.stat().st_size == 0:
        raise ValueError(
            f"{path} is empty (0 bytes): the run was stopped while its first checkpoint was being "
            f"written, or the disk was full. Delete it and start the run again."
        )
    try:
        _check_zip_crc(path)
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, corrupted, or not a torch file at all
        raise ValueError(
            f"{path} cannot be read as an rlteach checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). It is truncated, "
            f"corrupted or was written by another tool; delete it (or restore a copy) and start "
            f"the run again."
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not an rlteach checkpoint (format {FORMAT_VERSION}): it was written by "
            f"another tool or another version of rlteach. Use another --out folder."
        )
    missing = [k for k in ("meta", "frames", "finished", "next_save", "objects", "rng") if k not in data]
    if missing:
        raise ValueError(f"{path} is an incomplete rlteach checkpoint (no {', '.join(missing)}).")
    return data


def write_csv(path: str | Path, curve) -> None:
    """The evaluation log as CSV (``env_steps,seconds,mean_return``), written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["env_steps", "seconds", "mean_return"])
            for p in curve:
                writer.writerow([p.env_steps, f"{p.seconds:.3f}", repr(float(p.mean_return))])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full, Ctrl-C) leaves no temp file


class Checkpointer:
    """Save the tracked objects every ``every_frames`` frames (at batch boundaries) into
    ``directory/checkpoint.pt``; with ``resume=True``, :meth:`track` first restores them.

    ``meta`` (a dict: algorithm, task, seed, budget, config) is stored alongside and returned by
    :func:`load_checkpoint`; the command line uses it to refuse resuming with other settings.
    When an evaluator is tracked, ``directory/log.csv`` is rewritten with its evaluation history
    right after each save (and on resume), so the log on disk is never ahead of the checkpoint.
    """

    def __init__(
        self,
        directory: str | Path,
        every_frames: int,
        *,
        resume: bool = False,
        meta: dict | None = None,
    ) -> None:
        if isinstance(every_frames, bool) or not isinstance(every_frames, int) or every_frames < 1:
            raise ValueError(
                f"Checkpointer: every_frames must be a positive integer, got {every_frames!r}."
            )
        self.directory = Path(directory)
        self.path = self.directory / CHECKPOINT_NAME
        self.every_frames = every_frames
        self.resume = resume
        self.meta = dict(meta or {})
        self.objects: dict[str, Any] = {}
        self.policy = None
        self.restored_frames: int | None = None
        self.saves = 0
        self._next = every_frames
        if resume and not self.path.is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {self.path}; start the run without --resume first."
            )

    def track(self, policy=None, upgrade=None, **objects) -> int | None:
        """Register what a checkpoint holds; when resuming, restore it now.

        ``upgrade``, if given, maps the saved objects' states of an older layout (a recipe that
        has since split or renamed what it tracks) to the current one. Returns the frame count
        the run resumes from (None for a fresh run).
        """
        self.policy = policy
        self.objects = objects
        if not self.resume:
            return None
        data = load_checkpoint(self.path)
        if upgrade is not None:
            data["objects"] = upgrade(data["objects"])
        missing = sorted(set(objects) - set(data["objects"]))
        extra = sorted(set(data["objects"]) - set(objects))
        if missing or extra:
            raise ValueError(
                f"checkpoint {self.path} holds {sorted(data['objects'])}, the recipe tracks "
                f"{sorted(objects)}: it was written by another version of the recipe."
            )
        for name, obj in objects.items():
            _restore(obj, data["objects"][name])
        _set_global_rngs(data["rng"])
        self.restored_frames = data["frames"]
        self._next = data["next_save"]
        curve = _curve_of(objects)
        if curve is not None:  # drop log rows written after the checkpoint: they will be redone
            write_csv(self.directory / "log.csv", curve)
        return self.restored_frames

    def after_batch(self, frames: int, *, finished: bool = False) -> bool:
        """Save if ``frames`` passed the next multiple of ``every_frames`` or the run is
        ``finished``; True if a checkpoint was written."""
        if frames < self._next and not finished:
            return False
        while self._next <= frames:
            self._next += self.every_frames
        self.save(frames, finished=finished)
        return True

    def save(self, frames: int, finished: bool = False) -> None:
        """Write the checkpoint atomically (tmp file, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT_VERSION,
            "meta": self.meta,
            "frames": frames,
            "finished": finished,
            "next_save": self._next,
            "objects": {name: _capture(name, obj) for name, obj in self.objects.items()},
            "rng": _global_rngs(),
            "policy": self.policy,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: the old checkpoint or the new one, never half
        finally:
            tmp.unlink(missing_ok=True)  # a failed write (disk full, Ctrl-C) leaves no temp file
        # The log after the checkpoint: if the process dies in between, log.csv is behind the
        # checkpoint, never ahead of it, and --resume rewrites it from the checkpoint anyway.
        curve = _curve_of(self.objects)
        if curve is not None:
            write_csv(self.directory / "log.csv", curve)
        self.saves += 1


class NoCheckpoint:
    """What a recipe holds when it was not given a checkpointer: every call does nothing."""

    resume = False
    restored_frames = None

    def track(self, policy=None, upgrade=None, **objects) -> None:
        return None

    def after_batch(self, frames: int, *, finished: bool = False) -> bool:
        return False


def as_checkpointer(checkpoint: Checkpointer | None) -> Checkpointer | NoCheckpoint:
    """``checkpoint`` itself, or a do-nothing stand-in for None (so recipes need no ``if``)."""
    if checkpoint is None:
        return NoCheckpoint()
    if not isinstance(checkpoint, Checkpointer):
        raise TypeError(f"checkpoint must be a rlteach Checkpointer or None, got {checkpoint!r}.")
    return checkpoint
