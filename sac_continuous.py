"""Soft Actor-Critic for continuous actions: SAC v1 (separate V network) and SAC v2 (twin Q, learned temperature).

Papers
- v1: Haarnoja, Zhou, Abbeel, Levine 2018a, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement Learning
  with a Stochastic Actor", arXiv:1801.01290.
- v2: Haarnoja, Zhou, Hartikainen, et al. 2018b, "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905.
Theory: docs/sac.md, whose equation numbers (SAC-n) the docstrings cite. Implementation traps: docs/pitfalls.md.
Read top to bottom: the settings, the environments, the math, the networks, the replay buffer, one gradient step, the
training loop, evaluation; below the "Plumbing" banner is only bookkeeping (run directory, checkpoints, errors).

Run:  python sac_continuous.py                       # SAC v2 on Pendulum-v1
      python sac_continuous.py --variant v1           # SAC v1
      python sac_continuous.py --env-id Hopper-v5 --total-timesteps 1000000 --learning-starts 5000 --q-lr 3e-4
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT = "sac_continuous"


@dataclass
class Args:
    # The algorithm
    env_id: str = "Pendulum-v1"
    """gymnasium id with Box actions (Pendulum-v1, Hopper-v5, ...); your own: module:Env-v0, the module registers it"""
    variant: Literal["v1", "v2"] = "v2"
    """v2: twin Q, target Q, learned temperature (2018b); v1: separate V network and target V, fixed alpha (2018a)"""
    total_timesteps: int = 15_000
    """environment steps (Pendulum learns in ~10k; papers: 1M for Hopper, Walker2d, HalfCheetah, Ant; 10M Humanoid)"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv); one gradient step is made per environment step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity in transitions (papers: 1e6)"""
    gamma: float = 0.99
    """discount factor (papers: 0.99)"""
    tau: float = 0.005
    """Polyak rate of the target networks (papers: 0.005)"""
    batch_size: int = 256
    """minibatch size (papers: 256)"""
    learning_starts: int = 1_000
    """uniformly random actions for this many steps before learning (CleanRL: 5e3 for MuJoCo; 1e3 suits Pendulum)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor (papers: 3e-4)"""
    q_lr: float = 1e-3
    """Adam learning rate of Q, V (v1) and log alpha (papers: 3e-4; 1e-3 as CleanRL, faster on Pendulum)"""
    policy_frequency: int = 1
    """update the actor (and V, alpha) every this many gradient steps (papers: 1)"""
    target_network_frequency: int = 1
    """Polyak-update the targets every this many gradient steps (papers: 1)"""
    alpha: float = 0.2
    """temperature: the fixed value, or the initial one with --autotune (v1 paper: alpha 1 with --reward-scale 5)"""
    autotune: bool = True
    """learn alpha by dual gradient descent (SAC-11, SAC-12), as SAC v2 does; SAC v1 (2018a) always keeps alpha fixed"""
    target_entropy: float | None = None
    """entropy target H-bar for --autotune; default -dim(A), measured in the squashed [-1, 1] action space"""
    reward_scale: float = 1.0
    """multiply rewards by this, an inverse temperature (v1 paper: 5 Hopper, Walker2d, HalfCheetah, Ant; 20 Humanoid)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layer widths of every network (papers: 256, 256)"""
    log_std_min: float = -5.0
    """lower clamp of the actor's log standard deviation (CleanRL: -5; haarnoja/sac v1: -20)"""
    log_std_max: float = 2.0
    """upper clamp of the actor's log standard deviation (haarnoja/sac and CleanRL: 2)"""
    policy_regularization: float = 0.0
    """L2 penalty on the actor's mean and log std (haarnoja/sac v1: 1e-3, with --log-std-min -20; 2018b: none)"""
    # The run: seeding, evaluation, outputs, checkpoints
    exp_name: str = SCRIPT
    """name of the experiment, part of the run directory name"""
    seed: int = 1
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """torch.use_deterministic_algorithms: same seed on CPU gives the same run"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the networks and the replay buffer live (auto: cuda when available)"""
    threads: int = 1
    """torch's CPU threads, 0: torch's default (on 2 cores, 2 were 1.3x faster than 1 if idle, 2.4x slower if busy)"""
    eval_every: int = 2_500
    """evaluation every this many environment steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, on a separate environment"""
    output_dir: str = "runs"
    """runs are written to {output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}/"""
    checkpoint_every: int = 10_000
    """write checkpoint.pt every this many environment steps (0: only at the end)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints, so that --resume continues learning from it (large)"""
    resume: str | None = None
    """continue the run of this checkpoint.pt, in its run directory, up to --total-timesteps"""
    eval_only: str | None = None
    """load this checkpoint.pt and only evaluate it (with --capture-video to watch)"""
    log_every: int = 1_000
    """write losses and the progress line every this many environment steps"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "maxent-rl"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (team or user)"""
    capture_video: bool = False
    """record an evaluation episode of the final policy to {run_dir}/videos (needs moviepy)"""

# ----------------------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------------------
def make_env(args: Args, render_mode: str | None = None) -> gym.Env:
    """One environment, checked: this script needs bounded Box actions and Box observations."""
    env_id = args.env_id
    try:
        env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id}: {error}") from None
    except ImportError as error:  # an extra, or the module of a module:Env-v0 id
        raise UsageError(f"--env-id {env_id} needs a missing package ({error})") from None
    if isinstance(env.action_space, gym.spaces.Discrete):
        raise UsageError(f"--env-id {env_id} has discrete actions: use sac_discrete.py (this script needs Box actions)")
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        raise UsageError(f"--env-id {env_id}: needs Box observation and action spaces, "
                         f"got {env.observation_space} and {env.action_space}")
    if not np.all(np.isfinite(env.action_space.low)) or not np.all(np.isfinite(env.action_space.high)):
        raise UsageError(f"--env-id {env_id}: the action space must be bounded, got {env.action_space}")
    return env


def make_vector_env(args: Args) -> gym.vector.VectorEnv:
    """--num-envs copies of make_env with SAME_STEP autoreset: an episode's last observation comes in info["final_obs"]
    on the step it ends, so no stored transition crosses an episode boundary (docs/pitfalls.md#vector-autoreset)."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args)] * args.num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def true_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s' of each transition: next_obs, except where an episode just ended, whose last observation is in final_obs
    (next_obs there already starts the next episode)."""
    real_next_obs = next_obs.copy()
    if "_final_obs" in infos:
        for i in np.flatnonzero(infos["_final_obs"]):
            real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs


# ----------------------------------------------------------------------------------------------------------------------
# The math: each target and loss of docs/sac.md as a function of tensors. Batch vectors are (B,), the twin Q (2, B).
# ----------------------------------------------------------------------------------------------------------------------
def log_one_minus_tanh_squared(u: torch.Tensor) -> torch.Tensor:
    """log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), softplus(x) = log(1 + eˣ)  — (SAC-4). Exact and
    finite for any u, unlike log(1 − a² + ε) (docs/pitfalls.md#tanh-log-prob)."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(a|s) = log N(u; μ, σ) − Σ_i log(1 − tanh²u_i) for a = tanh(u)  — (SAC-3); 2018a, Appendix C. The
    density of the action in [−1, 1], where the entropy target −dim(A) is measured too, as in the papers' code
    (SAC-5)."""
    gaussian = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2.0 * math.pi)
    return (gaussian - log_one_minus_tanh_squared(u)).sum(dim=-1)


def soft_q_target_v2(reward, terminated, next_q, next_log_prob, alpha, gamma):
    """y = r + γ(1 − d)(min_i Q̄_i(s', ã') − α log π(ã'|s')), ã' ~ π(·|s') now  — (SAC-10); 2018b,
    Eq. 5-6 plus the done mask. d is `terminated` only: a time limit is not part of the MDP, so it bootstraps
    (docs/pitfalls.md#truncation-vs-termination)."""
    next_value = next_q.min(dim=0).values - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * next_value


def soft_q_target_v1(reward, terminated, next_v_target, gamma):
    """y = r + γ(1 − d) V_ψ̄(s'), with the Polyak-averaged target V network  — (SAC-7); 2018a, Eq. 8 plus the
    done mask it omits."""
    return reward + gamma * (1.0 - terminated) * next_v_target


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q = Σ_i E[½(Q_i(s,a) − y)²] over the twin critics  — (SAC-8); 2018a, Eq. 7; 2018b, Eq. 5.
    q: (2, B), target: (B,)."""
    # A (B, 1) target would broadcast to (2, B, B) without an error: docs/pitfalls.md#silent-broadcasting.
    assert target.shape == q.shape[1:], f"target {tuple(target.shape)} against Q {tuple(q.shape)}"
    return 0.5 * ((q - target) ** 2).mean(dim=1).sum()


def value_target(q_new: torch.Tensor, log_prob: torch.Tensor, alpha) -> torch.Tensor:
    """V target = min_i Q_i(s, a) − α log π(a|s), a ~ π(·|s) freshly sampled, not from the buffer  — (SAC-6);
    2018a, Eq. 5 with α kept."""
    return q_new.min(dim=0).values - alpha * log_prob


def value_loss(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_V(ψ) = E_s[½(V_ψ(s) − target)²]  — (SAC-6); 2018a, Eq. 5 with α kept (dropping it assumes α = 1)."""
    assert v.shape == target.shape, f"V {tuple(v.shape)} against its target {tuple(target.shape)}"
    return 0.5 * ((v - target) ** 2).mean()


def actor_loss(log_prob: torch.Tensor, q_new: torch.Tensor, alpha) -> torch.Tensor:
    """J_π(φ) = E_{s,ε}[α log π(ã|s) − min_i Q_i(s, ã)], ã = tanh(μ + σε) reparameterized  — (SAC-9);
    2018b, Eq. 9."""
    assert log_prob.shape == q_new.shape[1:], f"log π {tuple(log_prob.shape)} against Q {tuple(q_new.shape)}"
    return (alpha * log_prob - q_new.min(dim=0).values).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """J(α) = E_{a~π}[−α(log π(a|s) + H̄)]  — (SAC-11); 2018b, Eq. 18; written as (SAC-12), log α in place of
    α: the gradient has the same sign, alpha stays positive, and the step does not shrink as alpha does (as
    Stable-Baselines3, and the SAC authors' softlearning in its TF1 code; since March 2020 softlearning multiplies by α
    = exp(log α), as in (SAC-11); CleanRL measured both forms equal, PR #414). The entropy estimate is detached: this
    loss moves alpha only. Entropy below the target (log pi > -H-bar) makes alpha grow."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def policy_regularization_loss(mean: torch.Tensor, log_std: torch.Tensor, weight: float) -> torch.Tensor:
    """weight · ½(E[μ²] + E[(log σ)²]): the original SAC v1 code's penalty that keeps the pre-tanh Gaussian near
    the origin (haarnoja/sac; not in the papers' equations). Off by default."""
    return weight * 0.5 * ((mean**2).mean() + (log_std**2).mean())


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← τθ + (1 − τ)θ̄  — (SAC-13); 2018b, Algorithm 1."""
    for target_param, param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(param, tau)  # θ̄ + τ(θ − θ̄)


# ----------------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------------
def mlp(in_size: int, hidden_sizes: tuple[int, ...], out_size: int) -> nn.Sequential:
    layers, size = [], in_size
    for hidden in hidden_sizes:
        layers += [nn.Linear(size, hidden), nn.ReLU()]
        size = hidden
    return nn.Sequential(*layers, nn.Linear(size, out_size))


class EnsembleLinear(nn.Module):
    """`members` independent linear layers evaluated in one batched matmul: (E, B, in) -> (E, B, out).
    Each member is initialised exactly like nn.Linear, so the members are ordinary Q networks, only faster."""

    def __init__(self, members: int, in_size: int, out_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_size, out_size))
        self.bias = nn.Parameter(torch.empty(members, 1, out_size))
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1:
            # One output per member: a broadcast multiply-and-sum, 3x faster on CPU than bmm's matrix-vector path.
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Q_1 and Q_2 in one network: Q(s, a) -> (2, B), both critics in the same matmuls, in place of two networks called
    in turn: 6-12% of a step and 28% fewer operator calls (benchmarks/ablation.md)."""

    def __init__(self, obs_size: int, action_size: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        sizes = (obs_size + action_size, *hidden_sizes)
        self.hidden = nn.ModuleList(EnsembleLinear(2, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.out = EnsembleLinear(2, sizes[-1], 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1).expand(2, -1, -1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x).squeeze(-1)


class Actor(nn.Module):
    """Gaussian policy squashed by tanh: u = mu + sigma * eps, a = tanh(u) in [-1, 1], then rescaled affinely to the
    environment's bounds with action_scale and action_bias  — (SAC-2), (SAC-5); docs/pitfalls.md#action-rescaling."""

    def __init__(self, obs_size, action_size, hidden_sizes, action_low, action_high, log_std_min, log_std_max):
        super().__init__()
        self.trunk = mlp(obs_size, hidden_sizes[:-1], hidden_sizes[-1])
        self.head = nn.Linear(hidden_sizes[-1], 2 * action_size)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        low, high = torch.as_tensor(action_low, dtype=torch.float32), torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(F.relu(self.trunk(obs))).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized a = tanh(μ + σ ⊙ ε) in [−1, 1] and log π(a|s) of (SAC-3), shape (B,)  — (SAC-2)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action tanh(μ), in [−1, 1]  — (SAC-14); docs/pitfalls.md#deterministic-evaluation."""
        return torch.tanh(self(obs)[0])

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        """[−1, 1] → [low, high]: low + (a + 1)(high − low)/2  — (SAC-5)."""
        return action * self.action_scale + self.action_bias


class Agent(nn.Module):
    """Every learned tensor, so one state_dict checkpoints them all."""

    def __init__(self, args: Args, obs_size: int, action_space: gym.spaces.Box):
        super().__init__()
        action_size = int(np.prod(action_space.shape))
        self.actor = Actor(obs_size, action_size, args.hidden_sizes, action_space.low, action_space.high,
                           args.log_std_min, args.log_std_max)
        self.critic = TwinQ(obs_size, action_size, args.hidden_sizes)
        if args.variant == "v2":
            self.critic_target = TwinQ(obs_size, action_size, args.hidden_sizes)
            self.critic_target.load_state_dict(self.critic.state_dict())
            self.critic_target.requires_grad_(False)
        else:
            self.value = mlp(obs_size, args.hidden_sizes, 1)
            self.value_target = mlp(obs_size, args.hidden_sizes, 1)
            self.value_target.load_state_dict(self.value.state_dict())
            self.value_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(args.alpha)), requires_grad=bool(args.autotune))


# ----------------------------------------------------------------------------------------------------------------------
# Replay buffer
# ----------------------------------------------------------------------------------------------------------------------
class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """Preallocated tensors on the training device, sampled uniformly with torch.randint; actions as the policy gives
    them, and `terminated` (never `truncated`) for the mask."""

    def __init__(self, capacity: int, obs_shape: tuple, action_shape: tuple, action_dtype: torch.dtype,
                 device: torch.device):
        self.capacity, self.position, self.size = capacity, 0, 0
        self.data = Batch(
            obs=torch.zeros((capacity, *obs_shape), device=device),
            actions=torch.zeros((capacity, *action_shape), dtype=action_dtype, device=device),
            rewards=torch.zeros(capacity, device=device),
            next_obs=torch.zeros((capacity, *obs_shape), device=device),
            terminated=torch.zeros(capacity, device=device),
        )

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Add one transition per environment."""
        index = (self.position + torch.arange(len(rewards))) % self.capacity
        for store, value in zip(self.data, (obs, actions, rewards, next_obs, terminated)):
            store[index] = torch.as_tensor(value, device=store.device).to(store.dtype)
        self.position = (self.position + len(rewards)) % self.capacity
        self.size = min(self.size + len(rewards), self.capacity)

    def sample(self, batch_size: int) -> Batch:
        index = torch.randint(0, self.size, (batch_size,), device=self.data.rewards.device)
        return Batch(*(store[index] for store in self.data))

    def state_dict(self) -> dict:
        """The filled rows only: a copy, since saving a slice would write the whole preallocated tensor."""
        return {"position": self.position, "size": self.size,
                **{name: store[: self.size].clone().cpu() for name, store in self.data._asdict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.size = state["position"], state["size"]
        for name, store in self.data._asdict().items():
            store[: self.size] = state[name].to(store.device)


# ----------------------------------------------------------------------------------------------------------------------
# One gradient step
# ----------------------------------------------------------------------------------------------------------------------
class Learner:
    """The gradient steps of both variants, called once per environment step; nothing here synchronises with the host.
    The losses are pure tensor functions; the optimizer steps follow."""

    def __init__(self, agent: Agent, args: Args):
        self.agent, self.args = agent, args
        # One kernel per optimizer step, in place of torch's loop over the tensors: 6-9% of a step (ablation.md).
        adam = {"fused": True}
        self.q_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.q_lr, **adam)
        self.actor_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.policy_lr, **adam)
        self.alpha_optimizer = torch.optim.Adam([agent.log_alpha], lr=args.q_lr, **adam)
        # The optimizers of the policy step, and the parameters its one backward pass computes gradients for.
        self.policy_optimizers = [self.actor_optimizer] + ([self.alpha_optimizer] if args.autotune else [])
        if args.variant == "v1":
            self.value_optimizer = torch.optim.Adam(agent.value.parameters(), lr=args.q_lr, **adam)
            self.policy_optimizers.append(self.value_optimizer)
        self.policy_params = [p for optimizer in self.policy_optimizers for group in optimizer.param_groups
                              for p in group["params"]]
        self.gradient_steps = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        names = ["q_optimizer", "actor_optimizer", "alpha_optimizer"]
        names += ["value_optimizer"] if self.args.variant == "v1" else []
        return {name: getattr(self, name) for name in names}

    def critic_losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """J_Q (SAC-8) towards the v2 target (SAC-10: twin target Q, next action from the current policy) or the v1
        target (SAC-7: target V)."""
        agent, args = self.agent, self.args
        alpha = agent.log_alpha.detach().exp()
        reward = args.reward_scale * batch.rewards
        with torch.no_grad():
            if args.variant == "v2":
                next_action, next_log_prob = agent.actor.sample(batch.next_obs)
                next_q = agent.critic_target(batch.next_obs, next_action)
                target = soft_q_target_v2(reward, batch.terminated, next_q, next_log_prob, alpha, args.gamma)
            else:
                next_value = agent.value_target(batch.next_obs).squeeze(-1)
                target = soft_q_target_v1(reward, batch.terminated, next_value, args.gamma)
        q = agent.critic(batch.obs, batch.actions)
        loss = critic_loss(q, target)
        return loss, {"losses/qf_loss": loss.detach(), "losses/q_mean": q.detach().mean()}

    def policy_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor loss, plus the V loss (v1) and the temperature loss (--autotune), all from the same fresh actions and
        the just-updated critic (docs/pitfalls.md#fresh-q-for-actor): (SAC-9), (SAC-6) for v1, (SAC-12)."""
        agent, args = self.agent, self.args
        alpha = agent.log_alpha.detach().exp()
        action, log_prob = agent.actor.sample(obs)
        q_new = agent.critic(obs, action)
        loss = actor_loss(log_prob, q_new, alpha)
        metrics = {"losses/actor_loss": loss.detach(), "losses/entropy": -log_prob.detach().mean(),
                   "losses/alpha": alpha}
        if args.variant == "v1":
            v_loss = value_loss(agent.value(obs).squeeze(-1), value_target(q_new, log_prob, alpha).detach())
            loss = loss + v_loss
            metrics["losses/value_loss"] = v_loss.detach()
        if args.policy_regularization > 0.0:
            loss = loss + policy_regularization_loss(*agent.actor(obs), args.policy_regularization)
        if args.autotune:
            a_loss = temperature_loss(agent.log_alpha, log_prob, args.target_entropy)
            loss = loss + a_loss
            metrics["losses/alpha_loss"] = a_loss.detach()
        return loss, metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step (2018b, Algorithm 1): the critics (SAC-8), then the actor (SAC-9) with V (SAC-6, v1) and
        α (SAC-12), then the targets (SAC-13)."""
        self.gradient_steps += 1
        loss, metrics = self.critic_losses(batch)
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()

        if self.gradient_steps % self.args.policy_frequency == 0:
            loss, policy_metrics = self.policy_losses(batch.obs)
            for optimizer in self.policy_optimizers:
                optimizer.zero_grad(set_to_none=True)
            # One backward pass for the sum of the actor, V and alpha losses, in place of one per loss (5-7% of a step,
            # benchmarks/ablation.md): each detaches the others' inputs, so each gets its own gradient; the critic none.
            loss.backward(inputs=self.policy_params)
            for optimizer in self.policy_optimizers:
                optimizer.step()
            metrics.update(policy_metrics)

        if self.gradient_steps % self.args.target_network_frequency == 0:
            if self.args.variant == "v2":
                polyak_update(self.agent.critic_target, self.agent.critic, self.args.tau)
            else:
                polyak_update(self.agent.value_target, self.agent.value, self.args.tau)
        return metrics


# ----------------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------------
def seed_everything(args: Args) -> None:
    """Seed python, numpy and torch and set torch's threads; with --torch-deterministic, repeatable kernels too: the
    same seed and thread count on CPU give the same run (docs/pitfalls.md#reproducibility)."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.torch_deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses deterministic mode without it
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


def with_defaults(args: Args) -> Args:
    """Args with the defaults that depend on the task: SAC v1 (2018a) keeps α fixed whatever --autotune says; the
    entropy target is H̄ = −dim(A) unless given (SAC-11)."""
    env = make_env(args)
    action_size = int(np.prod(env.action_space.shape))
    env.close()
    return replace(args, autotune=args.autotune and args.variant == "v2",
                   target_entropy=-float(action_size) if args.target_entropy is None else args.target_entropy)


def train(args: Args) -> dict:
    """SAC's loop (2018a and 2018b, Algorithm 1): act, step the environments, store, one gradient step per
    environment step. Logging, evaluation and checkpoints are one call each on `run` (the plumbing below)."""
    args, checkpoint = start(args, with_defaults)  # --resume: the checkpoint's settings; then the defaults, the checks
    seed_everything(args)
    device = resolve_device(args.device)
    envs = make_vector_env(args)
    obs_size = int(np.prod(envs.single_observation_space.shape))
    action_size = int(np.prod(envs.single_action_space.shape))
    agent = Agent(args, obs_size, envs.single_action_space).to(device)
    learner = Learner(agent, args)
    buffer = ReplayBuffer(args.buffer_size, envs.single_observation_space.shape, (action_size,), torch.float32, device)
    if checkpoint is not None:
        restore(checkpoint, agent, learner, buffer)
    # A resumed run starts new episodes (the environments' state is not saved), seeded from its step.
    first_step = checkpoint["global_step"] if checkpoint else 0
    envs.action_space.seed(args.seed + first_step)
    obs, _ = envs.reset(seed=args.seed + first_step)
    action_scale, action_bias = agent.actor.action_scale.cpu().numpy(), agent.actor.action_bias.cpu().numpy()
    metrics: dict[str, torch.Tensor] = {}

    with Run(args, checkpoint, lambda: checkpoint_state(agent, learner, buffer, args)) as run:
        while run.global_step < args.total_timesteps and not run.stop_requested:
            if run.global_step < args.learning_starts:
                env_actions = envs.action_space.sample()
                actions = (env_actions - action_bias) / action_scale  # stored in the policy's [-1, 1] space
            else:
                with torch.no_grad():
                    obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    actions = agent.actor.sample(obs_tensor)[0].cpu().numpy()
                env_actions = actions * action_scale + action_bias
            next_obs, rewards, terminations, truncations, infos = envs.step(env_actions)
            # Only `terminated` stops bootstrapping; a time-limit truncation is stored as not done (SAC-10).
            buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)
            obs = next_obs
            run.advance(args.num_envs, infos)

            if run.global_step > args.learning_starts and buffer.size >= args.batch_size:
                for _ in range(args.num_envs):  # one gradient step per environment step, as in the papers
                    metrics = learner.update(buffer.sample(args.batch_size))

            if run.due(args.log_every):
                run.log_losses(metrics)
            if run.due(args.eval_every):
                run.log_evaluation(lambda: evaluate(agent, args, device, args.eval_episodes))
            if run.due(args.checkpoint_every):
                run.save()

        if not run.stop_requested and run.last_eval_step != run.global_step:
            run.log_evaluation(lambda: evaluate(agent, args, device, args.eval_episodes))
        if args.capture_video and not run.stop_requested:
            evaluate(agent, args, device, 1, video_dir=str(run.dir / "videos"))
    return run.summary


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------
def evaluate(agent: Agent, args: Args, device: torch.device, episodes: int, video_dir: str | None = None) -> dict:
    """Mean and spread of the returns of the deterministic policy tanh(μ) (SAC-14), on a separate environment."""
    env = make_env(args, render_mode="rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: True, disable_logger=True)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=args.seed + 100_000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                action = agent.actor.to_env(agent.actor.deterministic(obs_tensor))
            obs, reward, terminated, truncated, _ = env.step(action.cpu().numpy())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return {"eval/return_mean": float(np.mean(returns)), "eval/return_std": float(np.std(returns))}



# ======================================================================================================================
# ---- Plumbing: run directory, logging, checkpoints, resume, errors. Safe to skip on a first read. ----
# Nothing below changes what is learned: it checks, records, saves and restores. Up to "end of the shared plumbing" the
# text is the same in all three training scripts (tests/test_repository.py); what differs is written after that line.
# ======================================================================================================================
class UsageError(Exception):
    """Bad input: one line naming the flag, file or size, exit status 2, and no run directory left behind."""


class RunFailed(Exception):
    """A failure during the run (a non-finite loss, a full disk): one line, exit status 1, the last checkpoint kept."""


# What a resumed run may change: its length, cadences and outputs; what --eval-only may change: the evaluation.
RESUME_MAY_CHANGE = {"total_timesteps", "checkpoint_every", "eval_every", "eval_episodes", "log_every", "save_buffer",
                     "output_dir", "device", "threads", "track", "wandb_project_name", "wandb_entity", "capture_video"}
EVAL_MAY_CHANGE = {"eval_episodes", "seed", "device", "threads", "capture_video", "output_dir"}


def main(args) -> int:
    """Train, or with --eval-only evaluate a checkpoint: bad input exits 2, a failed run 1, an interrupted one 130."""
    try:
        return 130 if (evaluate_checkpoint(args) if args.eval_only else train(args)).get("interrupted") else 0
    except (UsageError, RunFailed, OSError) as error:  # OSError: a full disk, a vanished directory, named by itself
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except (RuntimeError, MemoryError) as error:  # an allocation larger than the machine can ever back
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        print(f"error: out of memory ({str(error)[:80]}); lower --buffer-size or --hidden-sizes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second signal while the first one's checkpoint was being written
        return 130


def start(args, with_defaults):
    """The settings and checkpoint to start from: with --resume or --eval-only the checkpoint's settings, of which the
    command line may change only what the mode allows; then the task's defaults (`with_defaults`), then the checks."""
    checkpoint, path = None, args.resume or args.eval_only
    if path:
        flag, may_change = ("--resume", RESUME_MAY_CHANGE) if args.resume else ("--eval-only", EVAL_MAY_CHANGE)
        checkpoint = load_checkpoint(path, flag)
        given = {arg[2:].split("=")[0].replace("-", "_").removeprefix("no_") for arg in sys.argv if arg[:2] == "--"}
        saved = {name: value for name, value in checkpoint["args"].items() if name not in ("resume", "eval_only")}
        for name, value in saved.items():
            if name in given and getattr(args, name) != value and name not in may_change:
                raise UsageError(f"{flag} {path}: --{name.replace('_', '-')} {getattr(args, name)} differs from the "
                                 f"checkpoint's {value}; only --{', --'.join(sorted(may_change)).replace('_', '-')} "
                                 "may change")
        args = replace(args, **{name: value for name, value in saved.items() if name not in given})
        if args.resume:
            hold(Path(path).resolve().parent, flag)
            if args.total_timesteps <= checkpoint["global_step"]:
                raise UsageError(f"--resume {path}: the run is at step {checkpoint['global_step']}; pass a larger "
                                 "--total-timesteps to go on")
    args = with_defaults(args)
    for ok, message in shared_checks(args) + validate(args):  # the first that fails is the error
        if not ok:
            raise UsageError(message)
    resolve_device(args.device)
    return args, checkpoint


def shared_checks(args) -> list[tuple[bool, str]]:
    """The checks all training scripts share, each (holds, the error line if it does not)."""
    at_least = dict.fromkeys(["total_timesteps", "num_envs", "buffer_size", "batch_size", "eval_episodes", "log_every",
                              "target_network_frequency"], 1)
    at_least |= dict.fromkeys(["learning_starts", "eval_every", "checkpoint_every", "threads"], 0)
    checks = [(getattr(args, name) >= low, f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
              for name, low in at_least.items()]
    return checks + [(getattr(args, name) > 0, f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
                     for name in ["alpha", "policy_lr", "q_lr", "tau"]] + [
        (0.0 <= args.gamma <= 1.0 and args.tau <= 1.0, "--gamma and --tau must be in [0, 1]"),
        (args.batch_size <= args.buffer_size, f"--batch-size {args.batch_size} is above --buffer-size "
         f"{args.buffer_size}"),
        (args.eval_only or max(args.learning_starts, args.batch_size) < args.total_timesteps,
         f"--learning-starts {args.learning_starts} and --batch-size {args.batch_size} must be below --total-timesteps "
         f"{args.total_timesteps}: the run would never learn"),
        (min(args.hidden_sizes, default=0) >= 1, f"--hidden-sizes needs positive widths, got {args.hidden_sizes}"),
        (not (args.resume and args.eval_only), "--resume and --eval-only exclude each other; pass one"),
        (Path(args.exp_name).name == args.exp_name not in ("", ".", ".."), f"--exp-name {args.exp_name!r} must be a "
         "plain name: the run directory stays inside --output-dir"),
        (not args.capture_video or importable("moviepy"), "--capture-video needs moviepy: pip install moviepy"),
        (not args.track or importable("wandb"), "--track needs wandb: pip install wandb"),
    ]


def importable(module: str) -> bool:
    """Whether an optional package imports: a copied script runs without tqdm, matplotlib, moviepy or wandb."""
    try:
        return importlib.import_module(module) is not None
    except ImportError:
        return False


def resolve_device(name: str) -> torch.device:
    """--device auto is cuda when a GPU is available, else cpu."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def load_checkpoint(path: str, flag: str) -> dict:
    """A checkpoint of this script, loaded with weights_only=True (never runs code from the file), or one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file; pass the checkpoint.pt of a run directory") from None
    except Exception as error:  # truncated, corrupted, a directory, or not a torch file
        raise UsageError(f"{flag} {path}: not a readable checkpoint ({type(error).__name__})") from None
    writer = f"{state['script']}.py" if isinstance(state, dict) and "script" in state else "another program"
    if writer != f"{SCRIPT}.py" or not isinstance(state.get("args"), dict) or set(state["args"]) - {
            field.name for field in fields(Args)}:
        raise UsageError(f"{flag} {path}: written by {writer}, not by this version of {SCRIPT}.py")
    return state


def load_weights(module: nn.Module, state: dict, flag: str) -> None:
    """load_state_dict, where weights that do not fit the checkpoint's own settings are one line, not a traceback."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        detail = str(error).strip().splitlines()[-1].strip()[:100]
        raise UsageError(f"{flag}: the checkpoint's weights do not fit its settings ({detail})") from None


def hold(directory: Path, flag: str) -> None:
    """Lock a run directory for as long as this process lives, so that no second process resumes it (POSIX)."""
    if importable("fcntl"):
        import fcntl

        try:  # the descriptor stays open: the operating system releases the lock however the process ends
            fcntl.flock(os.open(directory, os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{flag} {directory}: another process is running this run") from None


class Run:
    """A run's directory (held by one process), metrics.jsonl, curves.png, progress, W&B, step counter, signals,
    checkpoints, and summary.json however it ends. `checkpoint_state()` is what the script saves beyond the shared
    fields."""

    def __init__(self, args, checkpoint: dict | None, checkpoint_state):
        self.args, self.checkpoint_state, self.extra = args, checkpoint_state, {}
        self.global_step = self.previous_step = checkpoint["global_step"] if checkpoint else 0
        self.episodes = checkpoint["episodes"] if checkpoint else 0
        self.last_return = self.last_eval = self.last_eval_step = self.learning_clock = None
        self.wandb = self.progress_bar = None
        self.start_time, self.eval_seconds, self.stop_requested, self.evaluating = time.time(), 0.0, 0, False
        self.dir = Path(args.resume).resolve().parent if checkpoint else self.new_directory()
        self.checkpoint_path, self.metrics_path = self.dir / "checkpoint.pt", self.dir / "metrics.jsonl"
        (self.dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
        if checkpoint and self.metrics_path.exists():  # forget what was logged after the checkpoint
            lines = self.metrics_path.read_text().splitlines(keepends=True)
            self.metrics_path.write_text("".join(line for line in lines
                                                 if json.loads(line)["global_step"] <= self.global_step))
        self.metrics_file = open(self.metrics_path, "a")
        if args.track:
            try:
                self.wandb = importlib.import_module("wandb").init(
                    project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args), name=self.dir.name,
                    id=self.dir.name, resume="allow", dir=str(self.dir), settings={"init_timeout": 30})
            except Exception as error:  # no credentials, no network: nothing to keep of a run that never started
                if checkpoint is None:
                    shutil.rmtree(self.dir, ignore_errors=True)
                raise UsageError(f"--track: W&B did not start ({type(error).__name__}); run `wandb login` and check "
                                 "the network, or set WANDB_MODE=offline to log locally") from None
        if sys.stderr.isatty() and importable("tqdm"):  # else a plain line every --log-every steps
            self.progress_bar = importlib.import_module("tqdm").tqdm(total=args.total_timesteps,
                                                                     initial=self.global_step, unit="step")
        self.previous_handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def new_directory(self) -> Path:
        """{output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}, with the process id when that name is taken."""
        args = self.args
        name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        path = Path(args.output_dir) / name
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # another run started in the same second
            (path := path.with_name(f"{name}-{os.getpid()}")).mkdir()
        except OSError as error:
            raise UsageError(f"--output-dir {args.output_dir}: cannot create a directory ({error.strerror})") from None
        hold(path, "--output-dir")
        return path

    def on_signal(self, signum, frame) -> None:
        """The first Ctrl-C or SIGTERM stops after this step, or at once in an evaluation; a second one at once."""
        self.stop_requested += 1
        if self.stop_requested > 1 or self.evaluating:
            raise KeyboardInterrupt

    def advance(self, steps: int, infos: dict) -> None:
        """Count the environment steps and log the episodes that ended (gymnasium's RecordEpisodeStatistics). The
        speed is measured over the learning phase only: from the first step after --learning-starts."""
        self.previous_step, self.global_step = self.global_step, self.global_step + steps
        if self.learning_clock is None and self.global_step > self.args.learning_starts:
            self.learning_clock = (time.time(), self.previous_step)
        if self.progress_bar is not None:
            self.progress_bar.update(steps)
        for i in np.flatnonzero(infos.get("_episode", [])):
            episode = {"charts/episodic_return": float(infos["episode"]["r"][i]),
                       "charts/episodic_length": int(infos["episode"]["l"][i])}
            self.episodes, self.last_return = self.episodes + 1, episode["charts/episodic_return"]
            self.log(episode)

    def due(self, every: int) -> bool:
        """True on the step that crosses a multiple of `every` (0: never); with N environments the counter jumps N."""
        return every > 0 and self.global_step // every > self.previous_step // every

    def sps(self) -> float:
        seconds = time.time() - self.learning_clock[0] - self.eval_seconds if self.learning_clock else 0.0
        return (self.global_step - self.learning_clock[1]) / seconds if seconds > 0 else 0.0

    def log(self, metrics: dict) -> None:
        """One event of metrics.jsonl (and of W&B with --track)."""
        record = {"global_step": self.global_step, "wall_time": round(time.time() - self.start_time, 3), **metrics}
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=self.global_step)

    def log_losses(self, metrics: dict[str, torch.Tensor]) -> None:
        """Read the latest losses (the learning phase's only host synchronisation), stop on a non-finite one, and write
        them with the speed and a progress line."""
        values = {name: float(value) for name, value in metrics.items()}
        for name, value in values.items():
            if not math.isfinite(value):
                raise RunFailed(f"{name} is {value} at step {self.global_step}; {self.kept_checkpoint()}")
        self.log({**values, "charts/SPS": round(self.sps(), 1)})
        text = f"SPS {self.sps():.0f}" if self.learning_clock else "random actions, learning not started"
        text += f", return {self.last_return:.1f}" if self.last_return is not None else ""
        if self.progress_bar is not None:
            self.progress_bar.set_postfix_str(text)
        else:
            print(f"step {self.global_step}/{self.args.total_timesteps}: {text}", file=sys.stderr, flush=True)

    def log_evaluation(self, evaluate) -> None:
        """Run `evaluate()` (a dict of eval/... metrics; a signal stops it at once), log it, keep its time out of the
        speed, and redraw curves.png."""
        started, self.evaluating = time.time(), True
        try:
            self.last_eval, self.last_eval_step = evaluate(), self.global_step
        finally:
            self.evaluating = False
        self.log(self.last_eval)
        self.plot()
        self.eval_seconds += time.time() - started if self.learning_clock else 0.0

    def plot(self) -> None:
        """curves.png, when matplotlib is there: returns, the critic, and α with the policy's entropy (and target)."""
        if not importable("matplotlib"):
            return
        events = [json.loads(line) for line in self.metrics_path.read_text().splitlines()]
        figure = importlib.import_module("matplotlib.figure").Figure(figsize=(15, 3.6), layout="tight")  # no window
        panels = [["charts/episodic_return", "eval/return_mean"], ["losses/qf_loss", "losses/q_mean"],
                  ["losses/alpha", "losses/entropy", "losses/target_entropy"]]
        for axis, keys in zip(figure.subplots(1, 3), panels):
            for key in keys:
                if points := [(event["global_step"], event[key]) for event in events if key in event]:
                    axis.plot(*zip(*points), ".-" if key.startswith("eval") else "-", label=key)
                    axis.legend(fontsize=8)
            if keys[0] == "losses/alpha" and isinstance(getattr(self.args, "target_entropy", None), float):
                axis.axhline(self.args.target_entropy, color="grey", linestyle="--")  # sac_continuous.py's H-bar
        figure.suptitle(self.dir.name, fontsize=9)
        with contextlib.suppress(OSError):  # a full disk is reported by the files that matter, not by the picture
            figure.savefig(self.dir / "curves.png", dpi=80)

    def kept_checkpoint(self) -> str:
        exists = self.checkpoint_path.exists()
        return f"the last good checkpoint is {self.checkpoint_path}" if exists else "no checkpoint was written"

    def save(self) -> None:
        """Write checkpoint.pt atomically (a temporary file, then os.replace), so that a crash or a full disk mid-write
        keeps the previous one; never over a good checkpoint with NaN or inf weights."""
        state = {"script": SCRIPT, "args": asdict(self.args), "global_step": self.global_step,
                 "episodes": self.episodes, "rng": {"torch": torch.get_rng_state(), "cuda":
                 torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, **self.checkpoint_state()}
        for name, tensor in state["agent"].items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise RunFailed(f"{name} is not finite at step {self.global_step}; {self.kept_checkpoint()}")
        temporary = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        try:
            with open(temporary, "wb") as file:  # a file object: a full disk is then an OSError that says so
                torch.save(state, file)
            os.replace(temporary, self.checkpoint_path)
        except OSError as error:
            raise RunFailed(f"cannot write {self.checkpoint_path} ({error.strerror}); {self.kept_checkpoint()}"
                            ) from None
        finally:
            temporary.unlink(missing_ok=True)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, error_type, error, traceback) -> bool:
        """However the run ends, save what was learned (not after a failure, nor mid-step after a second signal), then
        write summary.json; an interruption ends here, as a stop after the step would."""
        try:
            if error_type is not RunFailed and not (error_type is KeyboardInterrupt and self.stop_requested > 1):
                self.save()
        except RunFailed as failure:
            error = failure
            raise
        finally:
            for s, handler in self.previous_handlers.items():
                signal.signal(s, handler)
            self.metrics_file.close()
            if not self.stop_requested:  # a stop asked for is answered at once; curves.png keeps its last evaluation
                self.plot()
            if self.progress_bar is not None:
                self.progress_bar.close()
            if self.wandb is not None:
                self.wandb.finish()
            last_eval = {key.replace("/", "_"): value for key, value in (self.last_eval or {}).items()}
            self.summary = {"global_step": self.global_step, "train_sps": round(self.sps(), 1),
                            "eval_return_mean": None, **last_eval, "episodes": self.episodes,
                            "wall_time_s": round(time.time() - self.start_time, 2), "run_dir": str(self.dir),
                            "interrupted": self.stop_requested > 0 and self.global_step < self.args.total_timesteps,
                            "error": None if error is None or isinstance(error, KeyboardInterrupt) else str(error),
                            **self.extra}
            (self.dir / "summary.json").write_text(json.dumps(self.summary, indent=2))
            print(f"{self.dir}: step {self.global_step}, eval return {self.summary['eval_return_mean']}, train SPS "
                  f"{self.summary['train_sps']}" + " (interrupted)" * self.summary["interrupted"], file=sys.stderr)
        return error_type is KeyboardInterrupt


# ---- end of the shared plumbing ----


# ---- What only this script checks, saves and restores ----
def validate(args: Args) -> list[tuple[bool, str]]:
    """This script's own checks, each (holds, the error line if it does not)."""
    return [
        (args.reward_scale > 0.0, f"--reward-scale must be > 0, got {args.reward_scale}"),
        (args.policy_frequency >= 1, f"--policy-frequency must be >= 1, got {args.policy_frequency}"),
        (args.log_std_min < args.log_std_max, "--log-std-min must be below --log-std-max"),
        (args.policy_regularization >= 0.0, f"--policy-regularization must be >= 0, got {args.policy_regularization}"),
    ]


def checkpoint_state(agent: Agent, learner: Learner, buffer: ReplayBuffer, args: Args) -> dict:
    """What a resume needs beyond the shared fields: networks, optimizers, the replay buffer (with --save-buffer)."""
    return {"agent": agent.state_dict(), "gradient_steps": learner.gradient_steps,
            "optimizers": {name: optimizer.state_dict() for name, optimizer in learner.optimizers().items()},
            "buffer": buffer.state_dict() if args.save_buffer else None}


def restore(checkpoint: dict, agent: Agent, learner: Learner, buffer: ReplayBuffer) -> None:
    """Load a checkpoint_state into the run. The environments are not in it: the resumed run starts new episodes."""
    load_weights(agent, checkpoint["agent"], "--resume")
    for name, optimizer in learner.optimizers().items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    learner.gradient_steps = checkpoint["gradient_steps"]
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if checkpoint["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    if checkpoint["buffer"] is not None:
        buffer.load_state_dict(checkpoint["buffer"])
    else:
        print("note: the checkpoint holds no replay buffer (--save-buffer); learning resumes from an empty one",
              file=sys.stderr)


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-only: the checkpoint's policy, evaluated as in training (with --capture-video, videos next to it)."""
    args, checkpoint = start(args, with_defaults)
    device = resolve_device(args.device)
    env = make_env(args)
    agent = Agent(args, int(np.prod(env.observation_space.shape)), env.action_space).to(device)
    env.close()
    load_weights(agent, checkpoint["agent"], "--eval-only")
    result = evaluate(agent, args, device, args.eval_episodes)
    if args.capture_video:
        evaluate(agent, args, device, 1, video_dir=str(Path(args.eval_only).resolve().parent / "videos"))
    summary = {"env_id": args.env_id, "eval_return_mean": result["eval/return_mean"],
               "eval_return_std": result["eval/return_std"], "global_step": checkpoint["global_step"],
               "checkpoint": args.eval_only}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
