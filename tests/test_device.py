"""``device=`` / ``--device``: every recipe trains where it is told, and refuses what it cannot.

No GPU is needed for most of this file. Two checks stand in for one:

* **Same curve.** Every registered recipe trains a tiny budget with ``device="cpu"`` and must give
  exactly the evaluation curve of the same run without the argument.
* **No tensor left behind.** That run is made under ``with torch.device("meta")``, which makes
  every factory call without ``device=`` (``torch.zeros``, ``torch.tensor``, ``torch.as_tensor``,
  ``torch.randperm``, ...) return a *meta* tensor, one without data. Mixing one with the run's
  CPU tensors fails at once (``.item()``, ``.numpy()``, an op with a CPU tensor), so a curve that
  comes out equal proves that the loop, the environments, the buffers, the losses, the estimators
  and the updaters create each tensor on the device of the data it belongs to, as a GPU run
  needs. The networks are built under ``with torch.device("cpu")`` by the recipes themselves
  (initialised on the CPU, then moved), so the meta default does not reach their constructors;
  that any tensor they hold moves with ``loss.to(device)`` is checked separately: no module keeps
  a tensor outside its parameters and buffers (which ``.to`` would leave behind). The estimators
  and losses no recipe trains with get the same meta check on a batch of their own.

Third-party code runs under the meta default too (torch.optim's Adam, fused or not, gradient
clipping, torch.distributions, tensordict): it creates its tensors on its inputs' devices, so it
needs no exception. With a GPU at hand, the tests marked ``cuda`` train every recipe there.
"""

import dataclasses
import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rlteach.__main__ import main
from rlteach._checks import module_device, resolve_device
from rlteach.checkpoint import Checkpointer
from rlteach.recipes import load_all
from rlteach.recipes.base import TRAINABLE

load_all()
ALGOS = sorted(TRAINABLE)
CUDA = torch.cuda.is_available()

# Budgets that reach every part of each loop (learning starts, targets move, an evaluation)
# in about a second: fields of the recipe's config, used with quick=True.
TINY = {
    "reinforce": {"quick_frames": 2048},  # one batch of 8 x 256
    "a2c": {"quick_frames": 512},
    "ppo": {"quick_frames": 512},
    "dqn": {"quick_frames": 1024},  # learning starts at 256 frames
    "c51": {"quick_frames": 1024},
    "ddpg": {"quick_frames": 300},  # 150 random steps, then 150 updates
    "td3": {"quick_frames": 300},
    "sac": {"quick_frames": 300},
    "redq": {"quick_frames": 200},
    "crossq": {"quick_frames": 200},
    "mappo": {"quick_frames": 400},  # one batch of 8 x 50 team steps
    "ippo": {"quick_frames": 400},
    "qmix": {"total_frames": 400, "eval_every": 400},  # 4 batches of 50 two-step episodes
    "vdn": {"total_frames": 400, "eval_every": 400},
}


def tiny_config(algo: str):
    recipe = TRAINABLE[algo]
    cfg = recipe.configs[recipe.default_env]
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {"eval_episodes": 2, **TINY[algo]} if "eval_episodes" in names else TINY[algo]
    return replace(cfg, **{k: v for k, v in changes.items() if k in names})


def curve(result) -> list[tuple[int, float]]:
    return [(p.env_steps, p.mean_return) for p in result.curve]


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_the_algorithm_table_covers_every_recipe():
    assert set(TINY) == set(TRAINABLE)


# --------------------------------------------------------------- same curve, no stray tensor


def test_the_meta_default_catches_a_forgotten_device():
    """The check itself: under the meta default a factory call without device= cannot meet
    CPU data silently."""
    data = torch.ones(3, device="cpu")
    with torch.device("meta"):
        forgotten = torch.zeros(3)
        assert forgotten.device.type == "meta"
        with pytest.raises((RuntimeError, NotImplementedError)):
            float((data + forgotten).sum())


@pytest.mark.parametrize("algo", ALGOS)
def test_device_cpu_gives_the_same_curve_and_creates_nothing_on_the_default_device(algo):
    train, cfg = TRAINABLE[algo].train, tiny_config(algo)
    reference = train(seed=3, quick=True, progress=False, cfg=cfg)
    with torch.device("meta"):  # any tensor made without device= is a meta tensor in here
        on_cpu = train(seed=3, quick=True, progress=False, cfg=cfg, device="cpu")
    assert curve(on_cpu) == curve(reference)
    assert curve(reference), "the tiny budget must reach an evaluation"


def _stray_tensors(module: torch.nn.Module) -> list[str]:
    """Tensors a module holds outside its parameters and buffers: ``module.to`` leaves them."""
    found, seen = [], set()

    def walk(obj, path):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(path)
        elif isinstance(obj, torch.nn.Module):
            for name, value in vars(obj).items():
                if name not in ("_parameters", "_buffers", "_modules"):
                    walk(value, f"{path}.{name}")
            for name, child in obj._modules.items():
                walk(child, f"{path}.{name}")
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, f"{path}[{key!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                walk(value, f"{path}[{i}]")

    walk(module, type(module).__name__)
    return found


# The TanhNormal head keeps the action bounds in its distribution_kwargs, a plain dict that
# .to() does not move; TanhNormal puts them on loc's device itself (torch.as_tensor(low,
# device=loc.device), rlteach/modules/core.py), and the recipes pass the environment's bounds,
# which are on the run's device already.
ALLOWED_STRAYS = ("distribution_kwargs['low']", "distribution_kwargs['high']")


@pytest.mark.parametrize("algo", ALGOS)
def test_every_tensor_of_the_networks_moves_with_them(algo, monkeypatch):
    moved = {}
    to = torch.nn.Module.to

    def spy(self, *args, **kwargs):  # the modules a recipe moves to its device
        moved[id(self)] = self
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    cfg = replace(tiny_config(algo), eval_episodes=1)
    TRAINABLE[algo].train(seed=0, quick=True, progress=False, cfg=cfg, device="cpu")
    assert moved, f"{algo} moved no module to its device"
    strays = [
        path
        for module in moved.values()
        for path in _stray_tensors(module)
        if not path.endswith(ALLOWED_STRAYS)
    ]
    assert not strays, f"{algo}: tensors that loss.to(device) would leave behind: {strays}"


# The estimators and losses no recipe trains with (TD(lambda), V-trace, the plain GAE loop, the
# unclipped and KL-penalty PPO losses, a tanh-Gaussian actor in the PPO family), under the same
# meta default: the same numbers, so nothing in them is made on the default device.


def _estimators(actor, critic) -> dict:
    from rlteach.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator, VTrace

    return {
        "td0": TD0Estimator(gamma=0.9, value_network=critic),
        "td1": TD1Estimator(gamma=0.9, value_network=critic),
        "td_lambda_loop": TDLambdaEstimator(
            gamma=0.9, lmbda=0.8, value_network=critic, vectorized=False
        ),
        "td_lambda": TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=critic),
        "gae_loop": GAE(gamma=0.9, lmbda=0.8, value_network=critic, vectorized=False),
        "gae": GAE(gamma=0.9, lmbda=0.8, value_network=critic, vectorized=True),
        "vtrace": VTrace(gamma=0.9, actor_network=actor, value_network=critic),
    }


ESTIMATORS = ["td0", "td1", "td_lambda_loop", "td_lambda", "gae_loop", "gae", "vtrace"]
LOSSES = ["ppo", "clip_ppo", "kl_ppo", "a2c", "reinforce"]


def test_the_component_lists_are_complete():
    from pg_fixtures import make_nets

    actor, critic = make_nets("categorical")
    assert list(_estimators(actor, critic)) == ESTIMATORS
    assert list(_losses(actor, critic)) == LOSSES


@pytest.mark.parametrize("kind", ESTIMATORS)
def test_every_estimator_creates_nothing_on_the_default_device(kind):
    from pg_fixtures import make_batch, make_nets

    actor, critic = make_nets("categorical")
    estimator = _estimators(actor, critic)[kind]
    batch = make_batch("categorical", [3, 6], precomputed=False)
    reference = estimator(batch.clone())
    with torch.device("meta"):
        got = estimator(batch.clone())
    for key in ("advantage", "value_target"):
        assert torch.equal(got[key], reference[key]), key


def _losses(actor, critic) -> dict:
    from rlteach.objectives import A2CLoss, ClipPPOLoss, KLPENPPOLoss, PPOLoss, ReinforceLoss

    return {
        "ppo": PPOLoss(actor, critic, entropy_coeff=0.01),
        "clip_ppo": ClipPPOLoss(actor, critic, clip_value=0.5, normalize_advantage=True),
        "kl_ppo": KLPENPPOLoss(actor, critic),
        "a2c": A2CLoss(actor, critic),
        "reinforce": ReinforceLoss(actor, critic),
    }


@pytest.mark.parametrize("family", ["categorical", "tanh_normal"])
@pytest.mark.parametrize("kind", LOSSES)
def test_the_policy_gradient_losses_create_nothing_on_the_default_device(kind, family):
    from pg_fixtures import make_batch, make_nets

    actor, critic = make_nets(family)
    batch = make_batch(family, [3, 6], precomputed=False)
    with torch.no_grad():  # the old policy's parameters, which the KL-penalty loss reads
        batch.update(actor[0](batch.clone()).exclude("observation"))
    outputs = []
    for meta in (False, True):
        loss = _losses(actor, critic)[kind]
        torch.manual_seed(0)
        with torch.device("meta" if meta else "cpu"):
            out = loss(batch.clone())
            total = sum(v for k, v in out.items() if k.startswith("loss_"))
            grads = torch.autograd.grad(total, list(loss.parameters()), allow_unused=True)
        outputs.append((out.detach(), grads))
    (out, grads), (meta_out, meta_grads) = outputs
    assert set(out.keys()) == set(meta_out.keys())
    for key in out.keys():
        assert torch.equal(out[key], meta_out[key]), key
    for a, b in zip(grads, meta_grads, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


# ------------------------------------------------------------------------------ bad devices


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_device_accepts_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")


@pytest.mark.parametrize("device", ["gpu", "cdua", "", "meta", "cuda:x", "xla"])
def test_an_unknown_device_is_refused(device):
    with pytest.raises(ValueError, match=r"Unknown device .*choose 'cpu' \(the default\), 'cuda'"):
        resolve_device(device)


@pytest.mark.parametrize("device", [0, None, 1.5])
def test_a_device_of_another_type_is_refused(device):
    with pytest.raises(ValueError, match="device must be a string such as 'cpu' or 'cuda'"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_is_refused(device, no_cuda):
    with pytest.raises(ValueError) as err:
        resolve_device(device)
    message = str(err.value)
    assert "torch.cuda.is_available() is False" in message
    assert "--device cpu" in message


@pytest.mark.skipif(CUDA, reason="the machine has a GPU")
def test_a_cpu_only_torch_is_named():
    with pytest.raises(ValueError, match="was built without CUDA|no usable NVIDIA GPU"):
        resolve_device("cuda")


@pytest.mark.parametrize("algo", ALGOS)
def test_every_recipe_refuses_a_missing_gpu_first(algo, no_cuda, monkeypatch):
    import rlteach.envs

    def built(*args, **kwargs):
        raise AssertionError("an environment was built before the device was checked")

    monkeypatch.setattr(rlteach.envs.GymEnv, "__init__", built)
    monkeypatch.setattr(rlteach.envs.VecGymEnv, "__init__", built)
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        TRAINABLE[algo].train(seed=0, quick=True, progress=False, device="cuda")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device: device 'cuda' asked for, but torch.cuda.is_available() is False"),
        ("gpu", "--device: Unknown device 'gpu': choose 'cpu'"),
    ],
)
def test_train_refuses_a_bad_device_before_making_the_folder(
    device, message, tmp_path, no_cuda
):
    out = tmp_path / "new" / "run"
    code, _, err = cli("train", "ppo", "--device", device, "--out", str(out), "--no-progress")
    assert code == 2
    assert message in err
    assert not (tmp_path / "new").exists()


def test_evaluate_refuses_a_bad_device(tmp_path, no_cuda):
    code, _, err = cli("evaluate", str(tmp_path / "checkpoint.pt"), "--device", "cuda")
    assert code == 2 and "torch.cuda.is_available() is False" in err


def test_module_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no tensors: the default
    assert module_device(torch.nn.Linear(2, 2, device="meta")).type == "meta"
    assert module_device(lambda td: td) == torch.device("cpu")


# ---------------------------------------------------------------------- checkpoints, resume

RUN = ["ppo", "--steps", "512", "--eval-every", "256", "--eval-episodes", "2", "--no-progress"]


class _Stop(Exception):
    pass


def _interrupted_after_first_save(monkeypatch, *args) -> None:
    """``python -m rlteach train *args``, stopped right after its first checkpoint is written."""
    save = Checkpointer.save

    def save_then_stop(self, frames, finished=False):
        save(self, frames, finished)
        raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", save_then_stop)
        with pytest.raises(_Stop):
            cli("train", *args)


def _log(folder: Path) -> list[str]:
    return [row.split(",")[::2] for row in (folder / "log.csv").read_text().splitlines()]


def test_a_checkpoint_saved_on_another_device_resumes_on_the_cpu(tmp_path, monkeypatch):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert cli("train", *RUN, "--out", str(whole))[0] == 0
    assert torch.load(whole / "checkpoint.pt", weights_only=False)["meta"]["device"] == "cpu"

    _interrupted_after_first_save(monkeypatch, *RUN, "--out", str(broken))
    path = broken / "checkpoint.pt"
    data = torch.load(path, weights_only=False)
    assert not data["finished"]
    data["meta"]["device"] = "cuda:0"  # as a GPU run writes it (its tensors load onto the CPU)
    torch.save(data, path)

    code, out, err = cli("train", "ppo", "--out", str(broken), "--resume", "--device", "cpu")
    assert code == 0, err
    assert "Resuming on cpu a run saved on cuda:0" in out
    assert "not bit-identical" in out
    resumed = torch.load(path, weights_only=False)
    assert resumed["finished"] and resumed["meta"]["device"] == "cpu"
    assert _log(broken) == _log(whole)  # the CPU really ran both halves: the same run
    final = torch.load(whole / "checkpoint.pt", weights_only=False)["objects"]["loss"]
    for name, value in resumed["objects"]["loss"].items():
        assert torch.equal(value, final[name]), name
    code, out, err = cli("evaluate", str(broken), "--episodes", "2", "--device", "cpu")
    assert code == 0, err


def test_a_checkpoint_from_before_devices_resumes(tmp_path, monkeypatch):
    """Runs in flight when --device arrived have no meta["device"] and no CUDA RNG entry."""
    folder = tmp_path / "run"
    _interrupted_after_first_save(monkeypatch, *RUN, "--out", str(folder))
    path = folder / "checkpoint.pt"
    data = torch.load(path, weights_only=False)
    del data["meta"]["device"]
    del data["rng"]["torch_cuda"]
    torch.save(data, path)
    code, out, err = cli("train", "ppo", "--out", str(folder), "--resume")
    assert code == 0, err
    assert "Resuming on" not in out


# ------------------------------------------------------------------------- on a real GPU

cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")


@cuda
@pytest.mark.parametrize("algo", ALGOS)
def test_every_recipe_trains_on_the_gpu(algo, monkeypatch):
    moved = {}
    to = torch.nn.Module.to

    def spy(self, *args, **kwargs):
        moved[id(self)] = self
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    result = TRAINABLE[algo].train(
        seed=0, quick=True, progress=False, cfg=tiny_config(algo), device="cuda"
    )
    assert result.curve
    devices = {p.device.type for m in moved.values() for p in m.parameters()}
    assert devices == {"cuda"}


@cuda
def test_a_gpu_checkpoint_resumes_on_the_cpu_and_evaluates_there(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _interrupted_after_first_save(monkeypatch, *RUN, "--out", str(folder), "--device", "cuda")
    code, out, err = cli("train", "ppo", "--out", str(folder), "--resume", "--device", "cpu")
    assert code == 0, err
    assert "Resuming on cpu a run saved on cuda:0" in out
    assert cli("evaluate", str(folder), "--episodes", "2", "--device", "cuda")[0] == 0


def test_resume_continues_on_the_saved_device_and_says_when_it_cannot(
    tmp_path, monkeypatch, no_cuda
):
    folder = tmp_path / "run"
    _interrupted_after_first_save(monkeypatch, *RUN, "--out", str(folder))
    path = folder / "checkpoint.pt"
    data = torch.load(path, weights_only=False)
    data["meta"]["device"] = "cuda:0"
    torch.save(data, path)
    code, _, err = cli("train", "ppo", "--out", str(folder), "--resume")
    assert code == 2
    assert "was trained on cuda:0, which this machine cannot use" in err
    assert "Add --device cpu to continue it on the CPU" in err
    assert torch.load(path, weights_only=False)["frames"] == data["frames"]  # nothing written


def test_an_offpolicy_build_that_forgets_to_move_its_loss_is_named():
    from rlteach.recipes._offpolicy import _check_placed

    loss = torch.nn.Linear(2, 2, device="meta")  # left elsewhere than the run's device
    with pytest.raises(ValueError, match=r"tensors on meta, but the run trains on cpu: call "):
        _check_placed(loss, torch.device("cpu"))
    _check_placed(torch.nn.Linear(2, 2), torch.device("cpu"))
