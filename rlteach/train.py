"""``python -m rlteach train`` and ``python -m rlteach evaluate``: one run, logged and resumable.

``train ALGO`` looks the algorithm up among the recipes registered with
``rlteach.registry.register_trainable``, picks the recipe's config for ``--env`` (or its
default config with the task replaced, after checking the recipe's networks can act in that
task's action space), and writes into ``--out``:

=================  ==========================================================================
``log.csv``        one row per evaluation: ``env_steps, seconds, mean_return`` (seconds of
                   training, evaluation excluded; deterministic policy, ``eval_episodes``
                   episodes seeded 10000, 10001, ...)
``curve.png``      the learning curve
``result.json``    the whole result: the curve, and for the off-policy recipes their training
                   logs (losses, temperature, ...), training-episode returns and CPU seconds
``checkpoint.pt``  the full state of the run at the last checkpoint (see rlteach/checkpoint.py)
=================  ==========================================================================

``--resume`` restores ``checkpoint.pt`` and continues; the resumed run ends bit-identical to an
uninterrupted one (the seconds column apart: that is wall-clock time).

``--device`` (``cpu`` by default; ``cuda``, ``cuda:N`` or ``mps`` where PyTorch finds one) is
where the networks, the batches and the replay buffers live; a device this machine lacks, or an
unknown name, is refused before anything is written. It is an option of the run, not of the
recipe's config: the checkpoint records it (``meta["device"]``) and ``--resume`` continues on
that device unless ``--device`` names another (the checkpoint is read onto the CPU and each
object takes its state onto the new device). Bit-identity is only promised on the same device:
a GPU rounds, and draws its random numbers, differently from the CPU. ``evaluate --device``
runs the saved policy there.

Every recipe is registered; the multi-agent ones (mappo, ippo, qmix, vdn) train on their own
task only (``--env`` cannot change it) and ``evaluate`` reports their greedy team return. A
recipe registered with the bench but not with ``register_trainable`` would still train with its
own task and budget, without checkpoints.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass, replace
from pathlib import Path

from rlteach.checkpoint import CHECKPOINT_NAME, Checkpointer, load_checkpoint, write_csv

__all__ = ["TrainError", "describe_trainable", "train_run", "evaluate_checkpoint"]

EVAL_SEED = 10_000
"""Evaluation episodes are seeded EVAL_SEED, EVAL_SEED + 1, ... (as the recipes' Evaluator)."""


class TrainError(ValueError):
    """A command-line request that cannot run as given; the message says how to fix it."""


def _registries():
    from rlteach.recipes import load_all
    from rlteach.registry import REGISTRY, TRAINABLE

    load_all()
    return TRAINABLE, REGISTRY


def describe_trainable() -> str:
    """One line per algorithm: its tasks and whether ``--resume`` works (for ``train --help``)."""
    trainable, registry = _registries()
    lines = []
    for algo, recipe in sorted(trainable.items()):
        tasks = ", ".join(recipe.configs)
        spaces = "/".join(recipe.action_spaces)
        other = f"any {spaces}-action task" if spaces else "multi-agent: no other task"
        resume = "resumable" if recipe.resumable else "no --resume"
        lines.append(f"  {algo:10s} {resume:12s} tasks: {tasks} ({other})")
    bench_only = sorted({e.algo for e in registry.values()} - set(trainable))
    for algo in bench_only:
        tasks = ", ".join(e.env_id for e in registry.values() if e.algo == algo)
        lines.append(f"  {algo:10s} {'no --resume':12s} tasks: {tasks} (own budget; no --steps)")
    return "\n".join(lines) if lines else "  (no recipes registered)"


def _unknown_algo(algo: str, known: list[str]) -> TrainError:
    close = difflib.get_close_matches(algo, known, n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return TrainError(
        f"Unknown algorithm {algo!r}.{hint} Known: {', '.join(sorted(known)) or '(none)'}; "
        f"`python -m rlteach train --help` lists them with their tasks."
    )


def _action_space_kind(env_id: str) -> str:
    import gymnasium as gym

    from rlteach.envs import _make_gym

    env = _make_gym(env_id)
    space = env.action_space
    env.close()
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box):
        return "continuous"
    return type(space).__name__


def resolve_config(algo: str, env_id: str | None):
    """The registered recipe for ``algo`` and its config for ``env_id`` (clear errors)."""
    trainable, registry = _registries()
    if algo not in trainable:
        known = sorted(set(trainable) | {e.algo for e in registry.values()})
        if algo not in known:
            raise _unknown_algo(algo, known)
        return None, None  # a bench-only recipe: handled by the caller
    recipe = trainable[algo]
    env_id = env_id or recipe.default_env
    if env_id in recipe.configs:
        return recipe, recipe.configs[env_id]
    if not recipe.action_spaces:
        raise TrainError(
            f"{algo} trains on {', '.join(recipe.configs)} only, got --env {env_id}: it is a "
            f"multi-agent recipe whose networks and environment are built for that task's "
            f"agents. Drop --env (or pass --env {recipe.default_env})."
        )
    kind = _action_space_kind(env_id)  # raises a clear ValueError for an unknown id
    if kind not in recipe.action_spaces:
        others = sorted(a for a, r in trainable.items() if kind in r.action_spaces)
        raise TrainError(
            f"{algo} cannot act in {env_id}: its action space is {kind}, and the {algo} recipe's "
            f"networks handle {' and '.join(recipe.action_spaces)} actions only. "
            f"Recipes for {kind} actions: {', '.join(others) or '(none yet)'}."
        )
    return recipe, replace(recipe.configs[recipe.default_env], env_id=env_id)


def _plot(curve_runs, threshold, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlteach.plotting import plot_learning_curves

    ax = plot_learning_curves(curve_runs, threshold, title=title)
    ax.figure.tight_layout()
    ax.figure.savefig(path)
    plt.close(ax.figure)


def _threshold(algo: str, env_id: str) -> float | None:
    """The bench's threshold for this algorithm on this task (the multi-agent tasks have one
    per recipe: QMIX 8, VDN 7 on the two-step game), else the task's solved threshold."""
    from rlteach.registry import REGISTRY
    from rlteach.tasks import SOLVED_THRESHOLDS

    for entry in REGISTRY.values():
        if entry.algo == algo and entry.env_id == env_id:
            return entry.threshold
    return SOLVED_THRESHOLDS.get(env_id)


SEED_MAX = 2**32 - 1
"""The largest seed NumPy's generators accept (they take 0 ... 2**32 - 1)."""


def check_seed(seed, option: str = "--seed", count: int = 1) -> None:
    """Refuse a seed NumPy cannot take: ``seed ... seed + count - 1`` must lie in [0, 2**32 - 1]."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX - count + 1:
        raise TrainError(
            f"{option} must be an integer from 0 to {SEED_MAX - count + 1} (NumPy's seeds are "
            f"0 ... 2**32 - 1{f', and {count} consecutive seeds are used' if count > 1 else ''}), "
            f"got {seed}."
        )


def check_out_folder(out: Path) -> None:
    """``--out`` must be a folder this process can write, or a path where one can be made."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file, not a folder: choose a folder for the run.")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise TrainError(f"--out {out}: {existing} is a file, so no folder can be made there.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(
            f"--out {out}: the folder {existing} is read-only for this user; choose a folder you "
            f"can write to."
        )


def _device(device, option: str = "--device"):
    """``resolve_device`` with the command line's error type (see rlteach/_checks.py)."""
    from rlteach._checks import resolve_device

    try:
        return resolve_device(device)
    except ValueError as err:
        raise TrainError(f"{option}: {err}") from None


def train_run(
    algo: str,
    *,
    env_id: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    out: str | Path = "runs/run",
    resume: bool = False,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    checkpoint_every: int | None = None,
    stop_when_solved: bool | None = None,
    progress: bool = True,
    log=print,
    device: str | None = None,
    overrides: dict[str, str] | None = None,
):
    """Train ``algo`` once and write log.csv, curve.png and checkpoint.pt into ``out``.

    Options left as None take the recipe's defaults, or, with ``resume``, the checkpoint's
    values (giving a different value than the checkpoint's is an error: the resumed run would
    not be the run that was interrupted). ``device`` is not one of them: None means the CPU for
    a new run and the checkpoint's device for a resumed one, and a run may resume on another
    device than the one it was saved on (bit-identity is then lost). ``overrides`` sets config
    fields by name (``--set FIELD=VALUE``), e.g. ``{"critic_cells": "256,256"}``; see
    ``apply_overrides`` in this module.
    """
    if device is not None:  # first: a device this machine lacks must not leave a folder
        device = _device(device)
    out = Path(out)
    asked = {
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "checkpoint_every": checkpoint_every,
        "stop_when_solved": stop_when_solved,
        "overrides": dict(overrides) if overrides else None,
    }
    for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every"):
        value = asked[name]
        if value is not None and (isinstance(value, bool) or value < 1):
            raise TrainError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    check_seed(seed)
    check_out_folder(out)
    if resume:
        trainable, registry = _registries()
        if not getattr(trainable.get(algo), "resumable", False):
            known = sorted(set(trainable) | {e.algo for e in registry.values()})
            if algo not in known:
                raise _unknown_algo(algo, known)
            able = sorted(a for a, r in trainable.items() if r.resumable)
            raise TrainError(
                f"{algo} cannot --resume: its recipe does not save checkpoints yet (resumable: "
                f"{', '.join(able) or 'none'}). A recipe becomes resumable by tracking its state "
                f"with a Checkpointer, see rlteach/checkpoint.py."
            )
        path = out / CHECKPOINT_NAME
        if not path.is_file():
            raise TrainError(
                f"--resume: there is no checkpoint at {path}. Start the run without --resume "
                f"(same --out), or point --out at the folder of the interrupted run."
            )
        meta = load_checkpoint(path)["meta"]
        clash = [
            f"{_option(k)} {v} (checkpoint: {meta.get(k)})"
            for k, v in asked.items()
            if v is not None and v != meta.get(k) and (k in meta or k == "overrides")
        ]
        if clash:
            raise TrainError(
                f"--resume continues the run saved in {path}, which was made with other "
                f"settings: {'; '.join(clash)}. Drop these options (the checkpoint's are used) "
                f"or start a new run in another --out folder."
            )
        asked = {k: meta.get(k) for k in asked}
        saved_on = meta.get("device", "cpu")  # checkpoints from before --device: the CPU
        if device is None:
            try:
                device = _device(saved_on)
            except TrainError as err:
                err = str(err).removeprefix("--device: ")
                raise TrainError(
                    f"--resume: the run in {out} was trained on {saved_on}, which this machine "
                    f"cannot use ({err}). Add --device cpu to continue it on the CPU (the rest "
                    f"of the run is then not bit-identical to an uninterrupted one)."
                ) from None
        if saved_on != str(device):
            log(
                f"Resuming on {device} a run saved on {saved_on}: it continues, but it is not "
                f"bit-identical to an uninterrupted run (bit-identity holds on the same device)."
            )
    elif (out / CHECKPOINT_NAME).exists():
        raise TrainError(
            f"{out / CHECKPOINT_NAME} exists already: add --resume to continue that run, or "
            f"choose another --out folder (nothing was overwritten)."
        )

    if device is None:  # a new run: the CPU unless told otherwise
        device = _device("cpu")
    recipe, cfg = resolve_config(asked["algo"], asked["env_id"])
    if recipe is None:
        return _train_bench_only(asked, out, resume, progress, log, device)
    cfg = apply_overrides(cfg, asked["overrides"])

    changes = {}
    if asked["steps"] is not None:
        changes["total_frames"] = asked["steps"]
    total = changes.get("total_frames", cfg.total_frames)
    changes["eval_every"] = asked["eval_every"] or min(cfg.eval_every, total)
    if asked["eval_episodes"] is not None:
        changes["eval_episodes"] = asked["eval_episodes"]
    changes["stop_on_solve"] = bool(asked["stop_when_solved"])
    cfg = replace(cfg, **changes)
    meta = {
        "algo": recipe.algo,
        "env_id": cfg.env_id,
        "seed": asked["seed"] if asked["seed"] is not None else 0,
        "steps": cfg.total_frames,
        "eval_every": cfg.eval_every,
        "eval_episodes": cfg.eval_episodes,
        "checkpoint_every": asked["checkpoint_every"] or cfg.eval_every,
        "stop_when_solved": cfg.stop_on_solve,
        "overrides": asked["overrides"],
        "config": asdict(cfg),
        "device": str(device),  # a run option, not config: --resume may change it
    }
    if resume:
        saved = load_checkpoint(out / CHECKPOINT_NAME)
        if not same_config(saved["meta"].get("config"), cfg):
            raise TrainError(
                f"The {algo} recipe's configuration changed since {out / CHECKPOINT_NAME} was "
                f"written (the code was edited?); the run cannot be resumed bit-identically."
            )
        if saved["finished"]:
            log(
                f"The run in {out} is already finished ({saved['frames']:,} frames); nothing to do."
            )
            from rlteach.recipes.base import EvalPoint, RunResult

            curve = [EvalPoint(**p) for p in saved["objects"]["evaluator"]["curve"]]
            return RunResult(recipe.algo, cfg.env_id, meta["seed"], curve)

    out.mkdir(parents=True, exist_ok=True)
    if recipe.resumable:
        checkpointer = Checkpointer(out, meta["checkpoint_every"], resume=resume, meta=meta)
        result = recipe.train(
            seed=meta["seed"], quick=False, progress=progress, cfg=cfg, checkpoint=checkpointer,
            device=device,
        )
        where = f"{out / CHECKPOINT_NAME} ({checkpointer.saves} saves)"
    else:
        result = recipe.train(
            seed=meta["seed"], quick=False, progress=progress, cfg=cfg, device=device
        )
        where = "no checkpoint (the recipe is not resumable)"
    _write_outputs(result, out, meta["config"])
    last = result.curve[-1]
    log(
        f"{recipe.algo} on {cfg.env_id}, seed {meta['seed']}: {last.env_steps:,} frames, "
        f"{last.seconds:.1f} s of training, last evaluation return {last.mean_return:.1f}.\n"
        f"Written: {out / 'log.csv'}, {out / 'result.json'}, {out / 'curve.png'}, {where}."
    )
    return result


def _option(name: str) -> str:
    """The command-line option of a ``train_run`` argument."""
    return "--set" if name == "overrides" else f"--{name.replace('_', '-')}"


COMMAND_LINE_FIELDS = {
    "env_id": "--env",
    "total_frames": "--steps",
    "eval_every": "--eval-every",
    "eval_episodes": "--eval-episodes",
    "stop_on_solve": "--stop-when-solved",
}
"""Config fields the command line sets with options of their own (``--set`` refuses them)."""

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


_PARSE_ORDER = (bool, int, float, tuple, str)
"""The order in which a union's members are tried: "1" is an int before it is a float."""


def _parse_rank(hint) -> int:
    kind = typing.get_origin(hint) or hint
    return _PARSE_ORDER.index(kind) if kind in _PARSE_ORDER else len(_PARSE_ORDER)


def _parse_as(text: str, hint) -> object:
    """``text`` as the type ``hint`` (bool, int, float, str, tuple[X, ...], or a union of
    these, tried in that order); ValueError when it is none of them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for candidate in sorted(args, key=_parse_rank):
            try:
                return _parse_as(text, candidate)
            except ValueError:
                continue
        raise ValueError(f"not one of {' | '.join(getattr(a, '__name__', str(a)) for a in args)}")
    if origin is tuple:
        element = args[0] if args else str
        parts = [p.strip() for p in text.split(",") if p.strip()]
        values = tuple(_parse_as(p, element) for p in parts)
        if args and args[-1] is not Ellipsis and len(values) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        return values
    if hint is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if hint is str:
        return text
    raise ValueError(f"a {getattr(hint, '__name__', hint)} cannot be set from the command line")


def apply_overrides(cfg, overrides: dict[str, object] | None):
    """``cfg`` with fields replaced by name, each value parsed as the field's type when given as
    text (``"256,256"`` for a tuple of ints, ``"false"`` for a bool). Unknown fields, fields the
    command line sets with their own option, and values of the wrong type are refused with a
    :class:`TrainError` that says what to write instead."""
    if not overrides:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    known = [f.name for f in fields(cfg)]
    values = {}
    for name, raw in overrides.items():
        if name in COMMAND_LINE_FIELDS:
            raise TrainError(
                f"--set {name}=...: {name} has its own option, use {COMMAND_LINE_FIELDS[name]}."
            )
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise TrainError(
                f"--set {name}=...: {type(cfg).__name__} has no field {name!r}.{hint} Its fields: "
                f"{', '.join(n for n in known if n not in COMMAND_LINE_FIELDS)}."
            )
        if not isinstance(raw, str):
            values[name] = raw
            continue
        try:
            values[name] = _parse_as(raw, hints[name])
        except ValueError as err:
            raise TrainError(
                f"--set {name}={raw}: {err}; {name} is {hints[name]} (now "
                f"{getattr(cfg, name)!r}). Example: --set {name}={_example(getattr(cfg, name))}."
            ) from None
    return replace(cfg, **values)


def _example(value) -> str:
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_set_options(items: list[str] | None) -> dict[str, str] | None:
    """``["a=1", "b=x,y"]`` (repeated ``--set``) as ``{"a": "1", "b": "x,y"}``."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise TrainError(f"--set takes FIELD=VALUE, e.g. --set batch_size=128; got {item!r}.")
        if name in out:
            raise TrainError(f"--set {name} is given twice ({out[name]!r} and {value!r}).")
        out[name] = value.strip()
    return out


def same_config(saved: dict | None, cfg) -> bool:
    """Whether the config a checkpoint was made with is ``cfg``: every saved field has the same
    value, and any field added to the config class since then holds its default (a field added
    later with its default keeps the old behaviour, so the run can still resume)."""
    if saved is None:
        return False
    current = asdict(cfg)
    if set(saved) - set(current):
        return False  # a field was removed or renamed
    defaults = {f.name: f.default for f in fields(cfg) if f.default is not MISSING}
    for name, value in current.items():
        if name in saved:
            if saved[name] != value:
                return False
        elif name not in defaults or asdict_value(defaults[name]) != value:
            return False
    return True


def asdict_value(value):
    """A default as ``asdict`` would store it (tuples stay tuples, dataclasses become dicts)."""
    return asdict(value) if is_dataclass(value) else value


def _write_outputs(result, out: Path, config: dict | None = None) -> None:
    """log.csv, result.json (with the run's ``config``, when known) and curve.png in ``out``."""
    import json

    write_csv(out / "log.csv", result.curve)
    data = result.to_dict()
    if config is not None:
        data["config"] = config
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out / "result.json")
    title = f"{result.algo} on {result.env_id}, seed {result.seed}"
    _plot({result.algo: [result]}, _threshold(result.algo, result.env_id), out / "curve.png", title)


def _train_bench_only(asked: dict, out: Path, resume: bool, progress: bool, log, device):
    """A recipe registered only with the bench: its own task and budget, no checkpoints, CPU."""
    _, registry = _registries()
    algo = asked["algo"]
    entries = [e for e in registry.values() if e.algo == algo]
    tasks = [e.env_id for e in entries]
    refused = [
        f"--{k.replace('_', '-')}"
        for k in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "stop_when_solved")
        if asked[k] is not None
    ]
    if resume:
        refused.insert(0, "--resume")
    if asked["overrides"]:
        refused.append("--set")
    if device.type != "cpu":
        refused.append("--device")
    if refused:
        raise TrainError(
            f"{algo} is not resumable and takes no {', '.join(refused)}: its recipe has not opted "
            f"in with register_trainable(...) (see rlteach/checkpoint.py). It trains with its "
            f"own budget on {', '.join(tasks)}: `python -m rlteach train {algo}`."
        )
    env_id = asked["env_id"] or tasks[0]
    if env_id not in tasks:
        raise TrainError(
            f"{algo} trains on {', '.join(tasks)} only (its recipe has not opted in with "
            f"register_trainable, which would let it take other tasks); got --env {env_id}."
        )
    entry = entries[tasks.index(env_id)]
    out.mkdir(parents=True, exist_ok=True)
    result = entry.run(asked["seed"] or 0, quick=False, progress=progress)
    _write_outputs(result, out)
    log(f"{entry.name}: written {out / 'log.csv'} and {out / 'curve.png'} (no checkpoint).")
    return result


def evaluate_checkpoint(
    path: str | Path, episodes: int = 10, seed: int = EVAL_SEED, device: str = "cpu"
):
    """Mean and standard deviation of the return of the checkpoint's deterministic policy over
    ``episodes`` episodes seeded ``seed, seed + 1, ...``, run on ``device``; also the
    checkpoint's meta."""
    import numpy as np

    from rlteach.envs import evaluate_returns
    from rlteach.envs_multiagent import MULTIAGENT_TASKS

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise TrainError(f"--episodes must be a positive integer, got {episodes!r}.")
    check_seed(seed, "--seed", count=episodes)
    device = _device(device)
    data = load_checkpoint(path)  # onto the CPU, whatever device the run trained on
    policy, meta = data["policy"], data["meta"]
    if policy is None:
        raise TrainError(f"{path}: this checkpoint stores no policy to evaluate.")
    if hasattr(policy, "to"):  # a torch module: run it where --device says
        policy = policy.to(device)
    if meta["env_id"] in MULTIAGENT_TASKS:
        returns = _team_returns(policy, meta, episodes, seed, device)
    else:
        returns = evaluate_returns(policy, meta["env_id"], episodes, seed=seed)
    return float(np.mean(returns)), float(np.std(returns)), data


def _team_returns(policy, meta: dict, episodes: int, seed: int, device) -> list[float]:
    """A multi-agent checkpoint: the team return of ``episodes`` greedy episodes, copy e of the
    task seeded ``seed + e`` (as the recipes' evaluation)."""
    from rlteach.envs_multiagent import evaluate_team_returns, make_multiagent_env

    options = {}
    if "max_cycles" in meta["config"]:
        options["max_cycles"] = meta["config"]["max_cycles"]
    env = make_multiagent_env(meta["env_id"], episodes, seed=seed, device=device, **options)
    try:
        return evaluate_team_returns(policy, env, seed=seed).tolist()
    finally:
        env.close()
