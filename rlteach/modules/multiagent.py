r"""Multi-agent networks: a per-agent MLP and the VDN / QMIX value mixers.

Every tensor here carries the agent dim just before the feature dim, TorchRL's convention:

==========================  ===================  ===========================================
tensor                      shape                meaning
==========================  ===================  ===========================================
per-agent input             [*B, n, F_in]        e.g. ``("agents", "observation")``
per-agent output            [*B, n, F_out]       e.g. logits, ``("agents", "state_value")``
local chosen Q-values       [*B, n, 1]           Q_a(τ_a, u_a) of each agent's action
global state                [*B, *state_shape]   s, read by QMIX's hypernetworks
mixed value                 [*B, 1]              Q_tot(τ, u, s)
==========================  ===================  ===========================================

:class:`MultiAgentMLP` covers the four designs of cooperative actor-critic methods (Yu et al.
2022, de Witt et al. 2020): each agent reads its own input (*decentralised*) or everybody's
(*centralised*, e.g. MAPPO's critic), with one network shared by all agents or one per agent.

:class:`VDNMixer` and :class:`QMixer` turn the agents' local Q-values into the team's
Q_tot (Sunehag et al. 2018; Rashid et al. 2018). Both satisfy the monotonicity constraint

.. math::
    \frac{\partial Q_{tot}}{\partial Q_a} \ge 0 \quad \text{for every agent } a \tag{QMIX-5}

so that the greedy joint action of Q_tot is every agent's own greedy action
(Rashid et al. 2018, eq. 4): decentralised execution stays consistent with centralised training.

Argument names, defaults, parameter names and error conditions follow
``torchrl.modules.models.multiagent`` (TorchRL 0.14.1), so a TorchRL state dict loads into these
modules; rlteach uses a plain loop over agents where TorchRL uses ``torch.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlteach.modules.core import MLP

__all__ = [
    "MultiAgentMLP",
    "Mixer",
    "VDNMixer",
    "QMixer",
    "make_multiagent_categorical_actor",
    "make_multiagent_value_network",
]


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return value


def _hidden_widths(num_cells: Sequence[int] | int | None, depth: int | None) -> tuple[int, ...]:
    """TorchRL's MLP rules: nothing given = one Linear layer; an int width needs a depth."""
    if num_cells is None:
        return () if depth is None else (32,) * depth
    if isinstance(num_cells, int):
        if depth is None:
            raise ValueError(
                "MultiAgentMLP: num_cells given as an int needs depth too (e.g. depth=2, "
                "num_cells=64), or pass the widths as a sequence (num_cells=(64, 64))."
            )
        return (num_cells,) * depth
    widths = tuple(num_cells)
    if depth is not None and depth != len(widths):
        raise ValueError(
            f"MultiAgentMLP: depth={depth} but num_cells lists {len(widths)} widths {widths}; "
            f"give one or make them agree."
        )
    return widths


class MultiAgentMLP(nn.Module):
    """An MLP per agent (or one shared), over each agent's input or over all of them.

    ====================  ============================================================
    ``n_agent_inputs``    F_in, features per agent
    ``n_agent_outputs``   F_out, outputs per agent
    ``n_agents``          n
    ``centralized``       True: every agent's network reads all n inputs concatenated
                          ([*B, n·F_in]); False: agent i reads its own [*B, F_in]
    ``share_params``      True: one network for all agents; False: one per agent
    ``num_cells, depth``  hidden widths, as TorchRL's ``MLP`` (default: no hidden layer)
    ====================  ============================================================

    Input ``[*B, n, F_in]`` → output ``[*B, n, F_out]``. Centralised and shared gives the same
    output for every agent (one network, one input), expanded along the agent dim.

    Parameters: ``self.agent_networks`` is a ``ModuleList`` of 1 (shared) or n rlteach
    :class:`~rlteach.modules.MLP`; layer k of agent i is ``agent_networks[i].layers[2k]``,
    the same index as in TorchRL's ``MLP`` (which the tests use to copy weights across).
    """

    def __init__(
        self,
        n_agent_inputs: int,
        n_agent_outputs: int,
        n_agents: int,
        *,
        centralized: bool | None = None,
        share_params: bool | None = None,
        device: torch.device | str | None = None,
        depth: int | None = None,
        num_cells: Sequence[int] | int | None = None,
        activation_class: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        owner = "MultiAgentMLP"
        if centralized is None or share_params is None:
            raise TypeError(
                f"{owner}: pass centralized=True/False (does each agent see every agent's input?) "
                f"and share_params=True/False (one network for all agents, or one each?)."
            )
        _positive_int(owner, "n_agent_inputs", n_agent_inputs)
        _positive_int(owner, "n_agent_outputs", n_agent_outputs)
        _positive_int(owner, "n_agents", n_agents)
        self.n_agent_inputs = n_agent_inputs
        self.n_agent_outputs = n_agent_outputs
        self.n_agents = n_agents
        self.centralized = bool(centralized)
        self.share_params = bool(share_params)
        widths = _hidden_widths(num_cells, depth)
        in_features = n_agent_inputs * n_agents if self.centralized else n_agent_inputs
        self.agent_networks = nn.ModuleList(
            MLP(in_features, n_agent_outputs, widths, activation_class)
            for _ in range(1 if self.share_params else n_agents)
        )
        if device is not None:
            self.to(device)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]
        if x.ndim < 2 or x.shape[-2] != self.n_agents:
            raise ValueError(
                f"MultiAgentMLP expects inputs of shape [*B, n_agents={self.n_agents}, "
                f"{self.n_agent_inputs}], got {list(x.shape)}. Is the agent dim the one before "
                f"last, and does the group hold {self.n_agents} agents?"
            )
        if self.centralized:
            x = x.flatten(-2, -1)  # every agent sees [x_1, ..., x_n]
        if self.share_params:
            out = self.agent_networks[0](x)
            if self.centralized:  # one output for the team, copied to each agent
                out = out.unsqueeze(-2).expand(*out.shape[:-1], self.n_agents, out.shape[-1])
            return out
        outputs = [
            net(x if self.centralized else x[..., i, :])
            for i, net in enumerate(self.agent_networks)
        ]
        return torch.stack(outputs, dim=-2)


class Mixer(nn.Module):
    """Base of the mixers: checks shapes, then calls ``mix(chosen_action_value, state)``.

    ``forward(local_q)`` or ``forward(local_q, state)`` with ``local_q`` [*B, n, 1] and
    ``state`` [*B, *state_shape]; returns Q_tot [*B, 1].
    """

    def __init__(
        self,
        n_agents: int,
        needs_state: bool,
        state_shape: Sequence[int] | torch.Size,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.n_agents = _positive_int(type(self).__name__, "n_agents", n_agents)
        self.needs_state = needs_state
        self.state_shape = torch.Size(state_shape)
        self.device = device

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        expected = 2 if self.needs_state else 1
        if len(inputs) != expected:
            what = "(local Q-values, state)" if self.needs_state else "(local Q-values) only"
            raise ValueError(
                f"{name} takes {what}, got {len(inputs)} inputs. Check the in_keys of the "
                f"TensorDictModule that wraps it."
            )
        chosen_action_value = inputs[0]
        state = inputs[1] if self.needs_state else None
        if chosen_action_value.ndim < 2 or chosen_action_value.shape[-2:] != (self.n_agents, 1):
            raise ValueError(
                f"{name} mixes {self.n_agents} agents: it expects local Q-values of shape "
                f"[*B, {self.n_agents}, 1], got {list(chosen_action_value.shape)}. Either the "
                f"group has a different number of agents than the mixer was built for, or the "
                f"trailing dim of the chosen action values is missing."
            )
        batch = chosen_action_value.shape[:-2]
        if state is not None and state.shape[len(batch) :] != self.state_shape:
            raise ValueError(
                f"{name} expects a state of shape [*B, {', '.join(map(str, self.state_shape))}] "
                f"with *B = {list(batch)}, got {list(state.shape)}."
            )
        out = self.mix(chosen_action_value, state)
        if out.shape != (*batch, 1):
            raise ValueError(f"{name}.mix returned {list(out.shape)}, expected {[*batch, 1]}.")
        return out

    def mix(self, chosen_action_value: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class VDNMixer(Mixer):
    r"""Value decomposition (Sunehag et al. 2018, eq. 1): :math:`Q_{tot} = \sum_a Q_a`  (VDN-1).

    ∂Q_tot/∂Q_a = 1: monotonic, and additive, so it cannot represent a payoff in which one
    agent's best action depends on what the others do (the QMIX paper's two-step game).
    """

    def __init__(self, n_agents: int, device: torch.device | str | None = None) -> None:
        super().__init__(n_agents, needs_state=False, state_shape=(), device=device)

    def mix(self, chosen_action_value: torch.Tensor, state=None) -> torch.Tensor:
        return chosen_action_value.sum(dim=-2)  # (VDN-1)


class QMixer(Mixer):
    r"""The QMIX mixing network (Rashid et al. 2018, Sec. 4.1 and Fig. 2).

    A two-layer network over the local Q-values whose weights and biases are produced from the
    global state s by hypernetworks:

    .. math::
        W_1 = |\,\mathrm{hyper\_w\_1}(s)\,| \in \mathbb{R}^{n \times E},\quad
        b_1 = \mathrm{hyper\_b\_1}(s) \in \mathbb{R}^{E}  \tag{QMIX-1}

    .. math::
        h = \mathrm{ELU}(Q^\top W_1 + b_1)  \tag{QMIX-2}

    .. math::
        W_2 = |\,\mathrm{hyper\_w\_final}(s)\,| \in \mathbb{R}^{E \times 1},\quad
        b_2 = V(s) = \mathrm{Linear}(\mathrm{ReLU}(\mathrm{Linear}(s)))  \tag{QMIX-3}

    .. math::
        Q_{tot} = h^\top W_2 + b_2  \tag{QMIX-4}

    The absolute value makes every mixing weight non-negative and ELU is increasing, so
    ∂Q_tot/∂Q_a ≥ 0 (QMIX-5). The biases are not constrained: they depend on s only, not on the
    Q-values, so the state can still shift Q_tot freely. E is ``mixing_embed_dim``; a state of
    any shape is flattened to ``prod(state_shape)`` features. Single-layer hypernetworks for the
    weights and a two-layer one for the final bias, as in the paper and in TorchRL.
    """

    def __init__(
        self,
        state_shape: Sequence[int] | torch.Size,
        mixing_embed_dim: int,
        n_agents: int,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(n_agents, needs_state=True, state_shape=state_shape, device=device)
        self.embed_dim = _positive_int("QMixer", "mixing_embed_dim", mixing_embed_dim)
        self.state_dim = math.prod(self.state_shape)
        self.hyper_w_1 = nn.Linear(self.state_dim, self.embed_dim * n_agents, device=device)
        self.hyper_w_final = nn.Linear(self.state_dim, self.embed_dim, device=device)
        self.hyper_b_1 = nn.Linear(self.state_dim, self.embed_dim, device=device)
        self.V = nn.Sequential(
            nn.Linear(self.state_dim, self.embed_dim, device=device),
            nn.ReLU(),
            nn.Linear(self.embed_dim, 1, device=device),
        )

    def mix(self, chosen_action_value: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        batch = chosen_action_value.shape[:-2]
        s = state.reshape(-1, self.state_dim)
        q = chosen_action_value.reshape(-1, 1, self.n_agents)  # Q^T, one row per sample
        w1 = self.hyper_w_1(s).abs().view(-1, self.n_agents, self.embed_dim)  # (QMIX-1)
        b1 = self.hyper_b_1(s).view(-1, 1, self.embed_dim)
        hidden = nn.functional.elu(torch.bmm(q, w1) + b1)  # (QMIX-2)
        w2 = self.hyper_w_final(s).abs().view(-1, self.embed_dim, 1)  # (QMIX-3)
        b2 = self.V(s).view(-1, 1, 1)
        q_tot = torch.bmm(hidden, w2) + b2  # (QMIX-4)
        return q_tot.view(*batch, 1)


def make_multiagent_categorical_actor(
    obs_dim: int,
    n_actions: int,
    n_agents: int,
    *,
    share_params: bool = True,
    num_cells: Sequence[int] | int | None = None,
):
    """Each agent's categorical policy pi(a^i | o^i) from its own observation (MAPPO, IPPO).

    Reads ``("agents", "observation")`` ``[*B, n_agents, obs_dim]``; writes ``("agents",
    "logits")``, a sampled ``("agents", "action")`` ``[*B, n_agents]`` and its ``("agents",
    "action_log_prob")``, TorchRL's multi-agent layout.
    """
    from tensordict.nn import (
        InteractionType,
        ProbabilisticTensorDictModule,
        ProbabilisticTensorDictSequential,
        TensorDictModule,
    )
    from torch.distributions import Categorical

    logits = TensorDictModule(
        MultiAgentMLP(
            obs_dim, n_actions, n_agents, centralized=False, share_params=share_params,
            num_cells=num_cells,
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "logits")],
    )  # fmt: skip
    head = ProbabilisticTensorDictModule(
        in_keys={"logits": ("agents", "logits")},
        out_keys=[("agents", "action")],
        distribution_class=Categorical,
        return_log_prob=True,
        log_prob_key=("agents", "action_log_prob"),
        default_interaction_type=InteractionType.RANDOM,
    )
    return ProbabilisticTensorDictSequential(logits, head)


def make_multiagent_value_network(
    obs_dim: int,
    n_agents: int,
    *,
    centralized: bool,
    share_params: bool = True,
    num_cells: Sequence[int] | int | None = None,
):
    """Each agent's V(s): from every agent's observation (``centralized``, MAPPO's critic) or
    from its own (IPPO's). Reads ``("agents", "observation")``; writes ``("agents",
    "state_value")`` [*B, n_agents, 1]."""
    from tensordict.nn import TensorDictModule

    return TensorDictModule(
        MultiAgentMLP(
            obs_dim, 1, n_agents, centralized=centralized, share_params=share_params,
            num_cells=num_cells,
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )  # fmt: skip
