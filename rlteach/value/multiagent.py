r"""GAE with an agent dimension: per-agent advantages from team rewards (Yu et al. 2022).

In cooperative multi-agent RL the environment usually hands out **one** reward and **one**
done flag for the whole team, while a multi-agent critic gives **one value per agent**:

=============================  ==================  ==========================================
key (default)                  shape               role
=============================  ==================  ==========================================
``state_value`` (often         [*B, T, n, 1]       V_i(s_t) of agent i (critic output)
``("agents", "state_value")``)
``("next", "reward")``         [*B, T, 1] or       r_t: the team reward, or one per agent
                               [*B, T, n, 1]       (``("agents", "reward")``)
``("next", "done")``,          [*B, T, 1]          shared end-of-trajectory flags
``("next", "terminated")``
``advantage``, ``value_target`` [*B, T, n, 1]      outputs, one per agent
=============================  ==================  ==========================================

:class:`MultiAgentGAE` broadcasts every team signal along the agent dim (MAGAE-1) and then runs
the ordinary GAE recursion (GAE-1)–(GAE-3) of :func:`rlteach.value.generalized_advantage_estimate`
independently for each agent:

.. math::
    r^i_t = r_t,\quad d^i_t = d_t,\quad \mathrm{term}^i_t = \mathrm{term}_t
    \qquad \text{for every agent } i  \tag{MAGAE-1}

.. math::
    \hat A^i_t = \sum_{l \ge 0} (\gamma\lambda)^l \, \delta^i_{t+l},\qquad
    \delta^i_t = r^i_t + \gamma (1-\mathrm{term}^i_t) V_i(s'_t) - V_i(s_t)  \tag{MAGAE-2}

With ``average_gae=True`` the advantage is standardised **per agent**: mean and (unbiased) std
are taken over every dim except the agent dim, std floored at 1e-4 (MAGAE-3). A reward that
already has the agent dim (a competitive game, or per-agent shaping as in MPE) is used as it is.

This mirrors ``torchrl.objectives.value.MultiAgentGAE`` (TorchRL 0.14.1), which does the same
broadcast before the same recursion and the same per-agent standardisation; the agent dim is the
one before last (``agent_dim=-2``), the convention of ``MultiAgentMLP``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from rlteach.value.estimators import GAE

__all__ = ["MultiAgentGAE", "broadcast_to_agents"]


def broadcast_to_agents(
    tensor: torch.Tensor, value: torch.Tensor, agent_dim: int = -2, *, name: str = "reward"
) -> torch.Tensor:
    """(MAGAE-1) Expand a team signal ``[*B, T, 1]`` to the value's shape ``[*B, T, n, 1]``.

    A tensor that already has as many dims as ``value`` is per-agent and is returned as it is,
    after checking that its agent count matches.

    Raises:
        ValueError: the tensor has neither ``value.ndim`` nor ``value.ndim - 1`` dims, or its
            agent count differs from the value's.
    """
    dim = agent_dim % value.ndim
    n_agents = value.shape[dim]
    if tensor.ndim == value.ndim:
        if tensor.shape[dim] != n_agents:
            raise ValueError(
                f"MultiAgentGAE: {name} has {tensor.shape[dim]} agents (shape "
                f"{list(tensor.shape)}) but the value has {n_agents} (shape {list(value.shape)}). "
                f"Per-agent entries must come from the same group of agents as the critic."
            )
        return tensor
    if tensor.ndim != value.ndim - 1:
        raise ValueError(
            f"MultiAgentGAE: {name} must have either the value's shape {list(value.shape)} "
            f"(one entry per agent) or that shape without the agent dim {dim} (a team signal), "
            f"got shape {list(tensor.shape)}."
        )
    return tensor.unsqueeze(dim).expand(value.shape[: dim + 1] + tensor.shape[dim:])


class MultiAgentGAE(GAE):
    """GAE whose value network returns one value per agent; see the module docstring.

    Same constructor as :class:`rlteach.value.GAE` plus ``agent_dim`` (default ``-2``: the dim
    before the trailing feature dim of the value). A loss uses it with
    ``loss.make_value_estimator(MultiAgentGAE(gamma=..., lmbda=..., value_network=critic))``.
    """

    # values [*B, T, n_agents, 1] (one trailing dim only is refused below, naming the agent dim);
    # team signals [*B, T, 1] or per agent [*B, T, n_agents, 1]
    _signal_trailing_dims = (1, 2)
    _value_trailing_dims = (1, 2)

    def __init__(self, *, agent_dim: int = -2, **kwargs) -> None:
        if isinstance(agent_dim, bool) or not isinstance(agent_dim, int):
            raise ValueError(f"MultiAgentGAE: agent_dim must be an int, got {agent_dim!r}.")
        super().__init__(**kwargs)
        self.agent_dim = agent_dim

    def _gae_inputs(self, td: TensorDictBase, time_dim: int):
        """GAE's inputs with the team's reward, done and terminated copied to every agent."""
        value, next_value = self._values(td)
        if value.ndim < td.batch_dims + 2:
            raise ValueError(
                f"MultiAgentGAE: the value {self.tensor_keys.value!r} has shape "
                f"{list(value.shape)}, with no agent dim after the batch dims "
                f"{list(td.batch_size)}; expected [*B, T, n_agents, 1]. For a single agent use GAE."
            )
        reward = self._reward(td)
        gamma = self._gamma(td, reward)
        done, terminated = self._flags(td)
        # (MAGAE-1) team signals -> one copy per agent
        reward = broadcast_to_agents(reward, value, self.agent_dim, name="reward")
        done = broadcast_to_agents(done, value, self.agent_dim, name="done")
        terminated = broadcast_to_agents(terminated, value, self.agent_dim, name="terminated")
        if gamma.ndim:  # gamma^n of n-step transitions has the reward's (team) shape
            gamma = broadcast_to_agents(gamma, value, self.agent_dim, name="gamma")
        # GAE's forward then runs (MAGAE-2) = (GAE-1)-(GAE-3) per agent
        return gamma, value, next_value, reward, done, terminated

    def _standardize_advantage(self, advantage: torch.Tensor) -> torch.Tensor:
        """(MAGAE-3) (Â - mean_i) / max(std_i, 1e-4), statistics over all dims but the agent's."""
        agent_dim = self.agent_dim % advantage.ndim
        dims = [d for d in range(advantage.ndim) if d != agent_dim]
        mean = advantage.mean(dim=dims, keepdim=True)
        std = advantage.std(dim=dims, keepdim=True).clamp_min(1e-4)
        return (advantage - mean) / std
