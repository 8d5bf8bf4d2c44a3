"""Wall-clock comparison of every loss's forward and backward pass: rlteach against TorchRL.

Used by ``python -m rlteach bench --losses``. For each loss, both sides receive networks with the
*same* weights (the very objects, or deep copies where a loss of either library takes ownership
of its critics) and the *same* batch; the on-policy batches carry their advantage and value
target already, so that only the loss is timed (the multi-agent PPO losses compute their
multi-agent GAE inside, on both sides alike, as they do by default). One pass is a forward, the
sum of the ``loss_*`` outputs and a backward; the two libraries are timed alternately, pass after
pass, so that the machine's load drifts over both alike, with one torch thread. The ratio is
median(rlteach) / median(TorchRL) over the timed passes, warm-up passes excluded. TorchRL is
imported inside the functions only (rlteach never needs it at run time).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from tensordict import TensorDict

ON_POLICY_BATCH = 4096
"""frames per on-policy loss call (e.g. 8 environments × 512 steps)"""
OFF_POLICY_BATCH = 256
"""transitions per off-policy loss call (a typical replay batch)"""
MULTIAGENT_BATCH = (32, 32)
"""[environments, time] per multi-agent loss call, 3 agents"""
TORCH_THREADS = 1
"""as the recipes train"""


def _forward_backward(loss, batch: TensorDict) -> float:
    start = time.perf_counter()
    out = loss(batch.clone(False))
    total = sum(value.sum() for key, value in out.items() if key.startswith("loss_"))
    if "loss" in out.keys():  # the DQN family names its single loss "loss"
        total = total + out["loss"].sum()
    total.backward()
    seconds = time.perf_counter() - start
    loss.zero_grad(set_to_none=True)
    return seconds


def _time_pair(ours, theirs, batch: TensorDict, repeats: int, warmup: int) -> tuple[float, float]:
    """Median seconds of rlteach's and TorchRL's passes, timed alternately."""
    times: dict[str, list[float]] = {"rlteach": [], "torchrl": []}
    for _ in range(warmup):
        _forward_backward(ours, batch)
        _forward_backward(theirs, batch)
    for i in range(repeats):
        torch.manual_seed(i)  # the same draws on both sides (SAC, TD3: sampled actions, noise)
        times["rlteach"].append(_forward_backward(ours, batch))
        torch.manual_seed(i)
        times["torchrl"].append(_forward_backward(theirs, batch))
    return statistics.median(times["rlteach"]), statistics.median(times["torchrl"])


# ---------------------------------------------------------------------------------- batches


def _on_policy_batch(n: int, obs_dim: int, actor, generator: torch.Generator) -> TensorDict:
    td = TensorDict({"observation": torch.randn(n, obs_dim, generator=generator)}, [n])
    with torch.no_grad():
        actor(td)  # action, action_log_prob and the distribution's parameters (KL-PEN reads them)
    td["advantage"] = torch.randn(n, 1, generator=generator)
    td["value_target"] = torch.randn(n, 1, generator=generator)
    return td


def _transitions(n: int, obs_dim: int, action: torch.Tensor, g: torch.Generator) -> TensorDict:
    terminated = torch.rand(n, 1, generator=g) < 0.05
    return TensorDict(
        {
            "observation": torch.randn(n, obs_dim, generator=g),
            "action": action,
            "next": {
                "observation": torch.randn(n, obs_dim, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [n],
    )


# ---------------------------------------------------------------------------------- the cases


def _on_policy_cases(tr, batch_size: int, g: torch.Generator) -> list[tuple]:
    from rlteach import objectives as ours
    from rlteach.modules import make_categorical_actor, make_normal_actor, make_value_network

    obs_dim = 8
    cases = []
    actors = {
        "categorical actor": make_categorical_actor(obs_dim, 4),
        "TanhNormal actor": make_normal_actor(obs_dim, 2),
    }
    for actor_name, actor in actors.items():
        critic = make_value_network(obs_dim)
        batch = _on_policy_batch(batch_size, obs_dim, actor, g)
        pairs = [
            ("ReinforceLoss", ours.ReinforceLoss, tr.ReinforceLoss, {}),
            ("A2CLoss", ours.A2CLoss, tr.A2CLoss, {"entropy_coeff": 0.01}),
            ("PPOLoss", ours.PPOLoss, tr.PPOLoss, {"entropy_coeff": 0.01}),
            ("ClipPPOLoss", ours.ClipPPOLoss, tr.ClipPPOLoss, {"entropy_coeff": 0.01}),
            ("KLPENPPOLoss", ours.KLPENPPOLoss, tr.KLPENPPOLoss, {"entropy_coeff": 0.01}),
        ]
        for name, mine, theirs, kwargs in pairs:
            cases.append(
                (
                    f"{name}, {actor_name}, batch {batch_size}",
                    lambda mine=mine, actor=actor, critic=critic, kw=kwargs: mine(
                        actor, critic, **kw
                    ),
                    lambda theirs=theirs, actor=actor, critic=critic, kw=kwargs: theirs(
                        actor, critic, **kw
                    ),
                    batch,
                )
            )
    return cases


def _value_based_cases(tr, batch_size: int, g: torch.Generator) -> list[tuple]:
    from rlteach import objectives as ours
    from rlteach.modules import (
        DistributionalQValueActor,
        make_distributional_qvalue_network,
        make_qvalue_actor,
        make_qvalue_network,
    )

    obs_dim, n_actions, atoms = 4, 2, 51
    q_actor = make_qvalue_actor(make_qvalue_network(obs_dim, n_actions))
    c51_actor = DistributionalQValueActor(
        make_distributional_qvalue_network(obs_dim, n_actions, atoms),
        torch.linspace(-10.0, 10.0, atoms),
        "categorical",
    )
    batch = _transitions(
        batch_size, obs_dim, torch.randint(n_actions, (batch_size,), generator=g), g
    )
    return [
        (
            f"DQNLoss (double DQN), batch {batch_size}",
            lambda: ours.DQNLoss(copy.deepcopy(q_actor), double_dqn=True),
            lambda: tr.DQNLoss(copy.deepcopy(q_actor), action_space="categorical", double_dqn=True),
            batch,
        ),
        (
            # TorchRL picks a* with the online network: rlteach's double_dqn=True
            f"DistributionalDQNLoss (C51, {atoms} atoms), batch {batch_size}",
            lambda: ours.DistributionalDQNLoss(
                copy.deepcopy(c51_actor), gamma=0.99, double_dqn=True
            ),
            lambda: tr.DistributionalDQNLoss(copy.deepcopy(c51_actor), gamma=0.99),
            batch,
        ),
    ]


def _continuous_cases(tr, batch_size: int, g: torch.Generator) -> list[tuple]:
    from torchrl.data import Bounded

    from rlteach import objectives as ours
    from rlteach.modules import (
        make_crossq_qvalue_network,
        make_deterministic_actor,
        make_normal_actor,
        make_state_action_value_network,
    )

    obs_dim, act_dim = 3, 1  # Pendulum-v1's sizes, the networks' default widths (256, 256)
    spec = Bounded(-2 * torch.ones(act_dim), 2 * torch.ones(act_dim), (act_dim,))
    det_actor = make_deterministic_actor(obs_dim, act_dim, low=-2.0, high=2.0)
    actor = make_normal_actor(obs_dim, act_dim, low=-2.0, high=2.0)

    def critics(n, make=make_state_action_value_network):
        return [make(obs_dim, act_dim) for _ in range(n)]

    q1, q2, q10 = critics(1)[0], critics(2), critics(10)
    crossq = critics(2, make_crossq_qvalue_network)
    action = torch.rand(batch_size, act_dim, generator=g) * 4 - 2
    batch = _transitions(batch_size, obs_dim, action, g)

    def both(cls_ours, cls_theirs, actor_net, qnets, **kwargs):
        def build(cls):
            torch.manual_seed(0)  # an ensemble built from one network draws alike
            return cls(copy.deepcopy(actor_net), copy.deepcopy(qnets), **kwargs)

        return (lambda: build(cls_ours)), (lambda: build(cls_theirs))

    cases = [
        ("DDPGLoss", *both(ours.DDPGLoss, tr.DDPGLoss, det_actor, q1)),
        ("TD3Loss", *both(ours.TD3Loss, tr.TD3Loss, det_actor, q2, action_spec=spec)),
        ("SACLoss (v2, 2 critics)", *both(ours.SACLoss, tr.SACLoss, actor, q2, action_spec=spec)),
        (
            "REDQLoss (10 critics, 2 sampled)",
            *both(ours.REDQLoss, tr.REDQLoss, actor, q10, num_qvalue_nets=10, action_spec=spec),
        ),
        (
            "CrossQLoss (2 BatchRenorm critics)",
            *both(ours.CrossQLoss, tr.CrossQLoss, actor, crossq, action_spec=spec),
        ),
    ]
    return [(f"{name}, batch {batch_size}", mine, theirs, batch) for name, mine, theirs in cases]


def _multiagent_cases(trm, shape: tuple[int, int], g: torch.Generator) -> list[tuple]:
    from tensordict.nn import (
        TensorDictModule,
        TensorDictSequential,
    )

    from rlteach.modules import (
        GreedyAction,
        MultiAgentMLP,
        QMixer,
        make_multiagent_categorical_actor,
        make_multiagent_value_network,
    )
    from rlteach.objectives import IPPOLoss, MAPPOLoss, QMixerLoss

    agents, obs_dim, n_actions, state_dim = 3, 18, 5, 54  # simple spread's sizes
    envs, steps = shape

    def policy():
        return make_multiagent_categorical_actor(obs_dim, n_actions, agents)

    def critic(centralized):
        return make_multiagent_value_network(obs_dim, agents, centralized=centralized)

    done = torch.rand(envs, steps, 1, generator=g) < 0.02
    ppo_batch = TensorDict(
        {
            "agents": {
                "observation": torch.randn(envs, steps, agents, obs_dim, generator=g),
                "action": torch.randint(n_actions, (envs, steps, agents), generator=g),
                "action_log_prob": -1.6 + 0.3 * torch.randn(envs, steps, agents, generator=g),
            },
            "next": {
                "agents": {
                    "observation": torch.randn(envs, steps, agents, obs_dim, generator=g),
                    "reward": torch.randn(envs, steps, agents, 1, generator=g),
                },
                "done": done,
                "terminated": done.clone(),
            },
        },
        batch_size=[envs, steps],
    )
    keys = {
        "action": ("agents", "action"),
        "sample_log_prob": ("agents", "action_log_prob"),
        "value": ("agents", "state_value"),
        "reward": ("agents", "reward"),
    }

    def ppo(cls, centralized):
        def build():
            torch.manual_seed(0)
            loss = cls(policy(), critic(centralized))
            loss.set_keys(**keys)
            return loss

        return build

    def qmix(cls):
        def build():
            torch.manual_seed(0)
            local = TensorDictSequential(
                TensorDictModule(
                    MultiAgentMLP(obs_dim, n_actions, agents, centralized=False, share_params=True),
                    in_keys=[("agents", "observation")],
                    out_keys=[("agents", "action_value")],
                ),
                TensorDictModule(
                    GreedyAction(),
                    in_keys=[("agents", "action_value")],
                    out_keys=[("agents", "action"), ("agents", "chosen_action_value")],
                ),
            )
            mixer = TensorDictModule(
                QMixer((state_dim,), mixing_embed_dim=32, n_agents=agents),
                in_keys=[("agents", "chosen_action_value"), "state"],
                out_keys=["chosen_action_value"],
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls(local, mixer, action_space="categorical")

        return build

    n = envs * steps
    terminated = torch.rand(n, 1, generator=g) < 0.05
    qmix_batch = TensorDict(
        {
            "agents": {
                "observation": torch.randn(n, agents, obs_dim, generator=g),
                "action": torch.randint(n_actions, (n, agents), generator=g),
            },
            "state": torch.randn(n, state_dim, generator=g),
            "next": {
                "agents": {"observation": torch.randn(n, agents, obs_dim, generator=g)},
                "state": torch.randn(n, state_dim, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        batch_size=[n],
    )
    where = f"{agents} agents, batch {envs}×{steps}"
    return [
        (f"MAPPOLoss (multi-agent GAE inside), {where}", ppo(MAPPOLoss, True),
         ppo(trm.MAPPOLoss, True), ppo_batch),
        (f"IPPOLoss (multi-agent GAE inside), {where}", ppo(IPPOLoss, False),
         ppo(trm.IPPOLoss, False), ppo_batch),
        (f"QMixerLoss (QMIX mixer), {where}", qmix(QMixerLoss), qmix(trm.QMixerLoss), qmix_batch),
    ]  # fmt: skip


def time_losses(
    repeats: int = 30,
    warmup: int = 3,
    on_policy_batch: int = ON_POLICY_BATCH,
    off_policy_batch: int = OFF_POLICY_BATCH,
    multiagent_batch: tuple[int, int] = MULTIAGENT_BATCH,
    only: Callable[[str], bool] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Time every rlteach loss against TorchRL's on the same networks and batch.

    Returns rows ``{"name", "loss", "rlteach_seconds", "torchrl_seconds", "ratio", "repeats"}``
    (medians over ``repeats`` alternating passes after ``warmup`` passes each, one torch
    thread). ``only(name)`` keeps a subset (the tests time a few cases with small batches);
    ``progress`` prints each row to stderr as it is measured.
    Raises ``ImportError`` with an install hint when TorchRL is missing: the comparison needs it.
    """
    try:
        import torchrl.objectives as tr
        import torchrl.objectives.multiagent as trm
    except ImportError as err:
        raise ImportError(
            "bench --losses compares against TorchRL: pip install 'torchrl>=0.14,<0.15' "
            "(it is in rlteach's dev extra)."
        ) from err

    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        cases = (
            _on_policy_cases(tr, on_policy_batch, generator)
            + _value_based_cases(tr, off_policy_batch, generator)
            + _continuous_cases(tr, off_policy_batch, generator)
            + _multiagent_cases(trm, multiagent_batch, generator)
        )
        rows = []
        for name, build_ours, build_theirs, batch in cases:
            if only is not None and not only(name):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchRL's "no target network updater" notes
                ours, theirs = build_ours(), build_theirs()
                mine, reference = _time_pair(ours, theirs, batch, repeats, warmup)
            rows.append(
                {
                    "name": name,
                    "loss": name.split(" ")[0].rstrip(","),
                    "rlteach_seconds": mine,
                    "torchrl_seconds": reference,
                    "ratio": mine / reference,
                    "repeats": repeats,
                }
            )
            if progress:
                print(f"{name}: ratio {mine / reference:.2f}", file=sys.stderr, flush=True)
        return rows
    finally:
        torch.set_num_threads(threads)


def losses_table(rows: list[dict]) -> str:
    """The Markdown table of :func:`time_losses`' rows."""
    lines = [
        "| loss | rlteach (ms) | TorchRL (ms) | ratio rlteach / TorchRL |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['rlteach_seconds'] * 1e3:.2f} "
            f"| {row['torchrl_seconds'] * 1e3:.2f} | {row['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_losses(rows: list[dict], out_dir) -> None:
    """``losses.json`` (machine, command, rows) and ``losses.md`` (the table with the machine and
    command line) in ``out_dir``: what the book's benchmarks page shows."""
    import json
    from pathlib import Path

    from rlteach.bench import machine_description

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m rlteach bench --losses --out {out_dir}"
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)  # the machine line names the threads the timing used
    try:
        machine = machine_description()
    finally:
        torch.set_num_threads(threads)
    report = {"machine": machine, "command": command, "rows": rows}
    (out / "losses.json").write_text(json.dumps(report, indent=1))
    header = f"Measured on {report['machine']} with `{command}`.\n\n"
    (out / "losses.md").write_text(header + losses_table(rows))
