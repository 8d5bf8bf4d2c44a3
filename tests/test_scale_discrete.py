"""Discrete actions at the field's scale (issue 16): MinAtar's boolean frames through the
environment, the replay buffer and the convolutional networks, and a smoke run of every new
(algorithm, task) config: dqn, c51 and ppo on three MinAtar games, dqn and ppo on LunarLander-v3.

The smoke runs use quick mode (a few hundred frames, one evaluation); what they check is that each
config builds, learns a few steps and evaluates end to end, not how well it plays.
"""

import inspect
import sys
from dataclasses import replace

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDict
from test_cli_train import assert_same_final_parameters, read_log, stop_after_first_save

pytest.importorskip("minatar", reason="the MinAtar tests need the [scale] extra")

from rlteach.buffers import ReplayBuffer  # noqa: E402
from rlteach.envs import Collector, VecGymEnv, _make_gym  # noqa: E402
from rlteach.modules import (  # noqa: E402
    DistributionalQValueActor,
    MinAtarTorso,
    make_minatar_categorical_actor,
    make_minatar_distributional_qvalue_network,
    make_minatar_qvalue_network,
    make_minatar_value_network,
    make_qvalue_actor,
)
from rlteach.recipes import c51, dqn, ppo  # noqa: E402
from rlteach.recipes._scale import MINATAR_GAMES  # noqa: E402
from rlteach.recipes.base import TRAINABLE  # noqa: E402
from rlteach.train import resolve_config, train_run  # noqa: E402

BREAKOUT = "MinAtar/Breakout-v1"
LUNAR = "LunarLander-v3"
#: (channels k, actions) of the three games, minimal action sets (-v1)
GAMES = {BREAKOUT: (4, 3), "MinAtar/SpaceInvaders-v1": (6, 4), "MinAtar/Asterix-v1": (4, 5)}
NEW = [(algo, game) for algo in ("dqn", "c51", "ppo") for game in MINATAR_GAMES] + [
    ("dqn", LUNAR),
    ("ppo", LUNAR),
]
MODULES = {"dqn": dqn, "c51": c51, "ppo": ppo}


def minatar_transitions(env_id: str = BREAKOUT, frames: int = 8) -> TensorDict:
    """A few random-policy transitions of a MinAtar game, with the DQN recipe's keys."""
    env = VecGymEnv(env_id, 2, seed=0)
    batch = next(iter(Collector(env, None, frames)))
    env.close()
    return batch.select(*dqn.TRANSITION_KEYS)


# ------------------------------------------------------------------ environment


def test_minatar_frames_stay_bool_channels_last():
    for env_id, (k, n_actions) in GAMES.items():
        env = VecGymEnv(env_id, 2, seed=0)
        td = env.reset()
        assert td["observation"].dtype == torch.bool
        assert td["observation"].shape == (2, 10, 10, k)
        assert env.is_pixels and env.observation_shape == (10, 10, k)
        assert env.n_actions == n_actions
        with pytest.raises(ValueError, match="image observations of shape \\[10, 10"):
            _ = env.observation_dim
        env.close()
    cartpole = VecGymEnv("CartPole-v1", 1)
    assert not cartpole.is_pixels and cartpole.observation_dim == 4
    assert cartpole.reset()["observation"].dtype == torch.float32


def test_missing_minatar_or_box2d_names_the_scale_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(ImportError, match=r'rlteach\[scale\]'):
        _make_gym("MinAtar/NotAGame-v1")  # not registered yet, so the import is attempted

    def no_box2d(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("Box2D is not installed")

    monkeypatch.setattr(gym, "make", no_box2d)
    with pytest.raises(ImportError, match=r'LunarLander-v3 needs a package.*rlteach\[scale\]'):
        _make_gym(LUNAR)


# ------------------------------------------------------------------ replay buffer


def test_buffer_stores_bool_and_samples_float32_with_the_same_values():
    data = minatar_transitions()
    buffer = ReplayBuffer(100, seed=0, as_float=("observation", ("next", "observation")))
    buffer.extend(data)
    assert buffer.storage["observation"].dtype == torch.bool
    assert buffer.storage["next", "observation"].dtype == torch.bool
    batch = buffer.sample(32)
    index = torch.randint(0, len(buffer), (32,), generator=torch.Generator().manual_seed(0))
    for key in ("observation", ("next", "observation")):
        assert batch[key].dtype == torch.float32
        assert torch.equal(batch[key], buffer.storage[key][index].float())
    assert set(batch["observation"].unique().tolist()) <= {0.0, 1.0}
    assert batch["next", "done"].dtype == torch.bool  # flags are not converted
    assert batch["action"].dtype == torch.int64


def test_buffer_keeps_uint8_frames_compact():
    frames = torch.randint(0, 256, (6, 10, 10, 3), dtype=torch.uint8)
    td = TensorDict({"observation": frames, "reward": torch.ones(6, 1)}, batch_size=[6])
    buffer = ReplayBuffer(6, seed=0, as_float=("observation",))
    buffer.extend(td)
    assert buffer.storage["observation"].dtype == torch.uint8
    sample = buffer.sample(4)
    assert sample["observation"].dtype == torch.float32
    assert sample["observation"].max() <= 255 and sample["observation"].min() >= 0
    with pytest.raises(KeyError, match=r"as_float names \('next', 'observation'\)"):
        ReplayBuffer(6, as_float=(("next", "observation"),)).extend(td)


@pytest.mark.parametrize("env_id", [BREAKOUT, "MinAtar/SpaceInvaders-v1"])
def test_buffer_memory_formula(env_id):
    # per transition: two frames of 10 x 10 x k bools, an int64 action, a float32 reward and
    # three bool flags. The module docstring's table scales this to 1,000,000 transitions.
    k = GAMES[env_id][0]
    per_transition = 2 * 10 * 10 * k + 8 + 4 + 3
    buffer = ReplayBuffer(1_000, seed=0)
    assert buffer.nbytes == 0
    buffer.extend(minatar_transitions(env_id))
    assert buffer.nbytes == 1_000 * per_transition
    assert per_transition * 1_000_000 == {4: 815_000_000, 6: 1_215_000_000}[k]


# ------------------------------------------------------------------ networks


@pytest.mark.parametrize("env_id", list(GAMES))
def test_minatar_network_shapes(env_id):
    k, n = GAMES[env_id]
    shape = (10, 10, k)
    frames = torch.rand(5, 3, *shape) < 0.2  # [B, T, H, W, k] bool, as in a PPO batch
    td = TensorDict({"observation": frames}, batch_size=[5, 3])

    torso = MinAtarTorso(shape)
    assert torso.conv.weight.shape == (16, k, 3, 3)  # Young & Tian: 16 channels, 3 x 3
    assert torso.hidden.weight.shape == (128, 16 * 8 * 8)  # then 128 units
    assert torso(frames).shape == (5, 3, 128)
    # bool frames and their float32 copy give the same features
    assert torch.equal(torso(frames), torso(frames.float()))

    q = make_qvalue_actor(make_minatar_qvalue_network(shape, n))(td.clone())
    assert q["action_value"].shape == (5, 3, n) and q["action"].shape == (5, 3)

    atoms = make_minatar_distributional_qvalue_network(shape, n, n_atoms=51)
    c51_actor = DistributionalQValueActor(atoms, torch.linspace(-100, 100, 51))
    out = c51_actor(td.clone())
    assert out["action_value"].shape == (5, 3, 51, n) and out["action"].shape == (5, 3)

    actor = make_minatar_categorical_actor(shape, n)(td.clone())
    assert actor["logits"].shape == (5, 3, n)
    assert actor["action"].shape == (5, 3) and actor["action_log_prob"].shape == (5, 3)
    assert make_minatar_value_network(shape)(td.clone())["state_value"].shape == (5, 3, 1)

    with pytest.raises(ValueError, match="expects frames"):
        torso(torch.zeros(2, 10, 10, k + 1))


# ------------------------------------------------------------------ configs and smoke runs


def test_new_configs_are_registered_with_the_budgets():
    for algo, env_id in NEW:
        cfg = TRAINABLE[algo].configs[env_id]
        budget = 1_000_000 if env_id.startswith("MinAtar/") else 500_000
        steps = cfg.steps_per_env if algo == "ppo" else cfg.steps_per_batch
        assert cfg.env_id == env_id and cfg.total_frames <= budget
        assert budget - cfg.total_frames < cfg.num_envs * steps  # whole batches, none over
        assert cfg.eval_episodes == 10 and not cfg.stop_on_solve
        assert 25_000 <= cfg.eval_every <= 50_000
    minatar_dqn = dqn.CONFIGS[BREAKOUT]
    assert (minatar_dqn.optimizer, minatar_dqn.rmsprop_alpha, minatar_dqn.optim_eps) == (
        "rmsprop", 0.95, 0.01,
    )
    assert minatar_dqn.rmsprop_centered and minatar_dqn.max_grad_norm is None
    assert (c51.CONFIGS[BREAKOUT].v_min, c51.CONFIGS[BREAKOUT].v_max) == (-100.0, 100.0)
    for source, fn in (
        ("Young & Tian", dqn.minatar_config),
        ("Revisiting Rainbow", c51.minatar_config),
        ("gymnax-blines", ppo.minatar_config),
    ):
        assert source in fn.__doc__
    for module in (dqn, ppo):
        assert '"""LunarLander-v3: RL-Zoo 2.9' in inspect.getsource(module)
    assert (dqn.LUNARLANDER.lr, dqn.LUNARLANDER.batch_size) == (6.3e-4, 128)  # rl-zoo dqn.yml
    assert (ppo.LUNARLANDER.gamma, ppo.LUNARLANDER.gae_lambda) == (0.999, 0.98)  # ppo.yml


@pytest.mark.parametrize(("algo", "env_id"), NEW)
def test_new_config_smoke_run(algo, env_id):
    module = MODULES[algo]
    cfg = module.CONFIGS[env_id]
    result = module.train(seed=0, quick=True, progress=False, cfg=cfg)
    assert result.env_id == env_id and len(result.curve) == 1
    assert result.curve[-1].env_steps <= 512
    assert torch.isfinite(torch.tensor(result.curve[-1].mean_return))


def test_minatar_dqn_and_double_dqn_learn_from_bool_frames():
    cfg = replace(dqn.CONFIGS[BREAKOUT], double_dqn=True)
    losses = []
    result, agent = dqn.train_agent(
        seed=0, quick=True, progress=False, cfg=cfg,
        callback=lambda frames, minibatch, out: losses.append(
            (minibatch["observation"].dtype, float(out["loss"].detach()))
        ),
    )  # fmt: skip
    assert agent.buffer.storage["observation"].dtype == torch.bool
    assert losses and all(dtype == torch.float32 for dtype, _ in losses)  # the loss sees float
    assert agent.loss.double_dqn


def test_cli_picks_the_minatar_config(tmp_path):
    recipe, cfg = resolve_config("dqn", BREAKOUT)
    assert cfg == dqn.CONFIGS[BREAKOUT] and cfg.optimizer == "rmsprop"
    assert resolve_config("ppo", LUNAR)[1] == ppo.LUNARLANDER
    result = train_run(
        "dqn", env_id=BREAKOUT, steps=200, eval_episodes=2, out=tmp_path / "run",
        progress=False, log=lambda *_: None,
    )  # fmt: skip
    assert result.curve[-1].env_steps == 200
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_minatar_dqn_run_resumes_bit_identically(tmp_path, monkeypatch):
    """The bool-frame buffer, centred RMSprop and the delayed ε schedule survive a checkpoint:
    a run stopped at its first save and resumed ends as the uninterrupted one (learning starts
    at 100 frames here instead of 5,000, so the saved state is live)."""
    configs = TRAINABLE["dqn"].configs
    monkeypatch.setitem(
        configs,
        BREAKOUT,
        replace(
            configs[BREAKOUT], learning_starts=100, exploration_delay=100,
            exploration_frames=200, target_update_interval=50,
        ),
    )  # fmt: skip
    args = dict(
        env_id=BREAKOUT, steps=400, eval_every=200, eval_episodes=2, checkpoint_every=200,
        progress=False, log=lambda *_: None,
    )  # fmt: skip
    train_run("dqn", out=tmp_path / "whole", **args)
    stop_after_first_save(monkeypatch, lambda: train_run("dqn", out=tmp_path / "broken", **args))
    assert not (tmp_path / "broken" / "result.json").exists()  # stopped before the end
    train_run("dqn", out=tmp_path / "broken", resume=True, **args)
    assert read_log(tmp_path / "whole") == read_log(tmp_path / "broken")
    assert_same_final_parameters(tmp_path / "whole", tmp_path / "broken")
