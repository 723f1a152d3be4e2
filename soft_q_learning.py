"""Soft Q-learning (SQL): the policy is the energy-based model π(a|s) ∝ exp(Q(s,a)/α).

Papers
- Haarnoja, Tang, Abbeel, Levine 2017, "Reinforcement Learning with Deep Energy-Based Policies", arXiv:1702.08165
  (Thm. 1-3; Eq. 10 soft value by importance sampling; Eq. 11 Bellman loss; Eq. 13-14 amortized SVGD; App. C).
- Liu, Wang 2016, "Stein Variational Gradient Descent", arXiv:1608.04471 (RBF kernel, median-heuristic bandwidth).
- Authors' code haarnoja/softqlearning: done mask, squash correction, reward scales, hard target copy.
Theory: docs/soft_q_learning.md, whose equation numbers (SQL-n) the docstrings cite. Implementation traps:
docs/pitfalls.md. Read top to bottom: the settings, the environments, the math, the networks, the replay buffer, one
gradient step, the training loop, evaluation; below the "Plumbing" banner is only bookkeeping (run directory,
checkpoints, errors).

There is no actor loss: only a soft Bellman backup for Q and a way to sample from exp(Q/α). Discrete actions: the soft
value is exact, α log Σ_a exp(Q(s,a)/α), and π = softmax(Q/α). Continuous actions (the paper's algorithm): the soft
value is estimated by importance sampling (SQL-4), and a sampling network a = f_φ(s, ξ) is trained by amortized Stein
variational gradient descent towards exp(Q(s,·)/α) (SQL-9, SQL-10). The default task is the paper's multi-goal
experiment; `--plot multigoal.png` draws its figure.

Run:  python soft_q_learning.py                                   # MultiGoal, about 4 minutes on one CPU core
      python soft_q_learning.py --env-id CartPole-v1              # discrete soft Q-learning
      python soft_q_learning.py --env-id Pendulum-v1              # any Box environment
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
import tyro

SCRIPT = "soft_q_learning"


@dataclass
class Args:
    # The algorithm
    env_id: str = "MultiGoal"
    """'MultiGoal' (the paper's multi-goal task, defined here), a gymnasium id, or your own as module:Env-v0"""
    total_timesteps: int | None = None
    """environment steps (default from PRESETS: MultiGoal 15k, discrete 60k, other continuous 30k)"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv, same-step autoreset); one gradient step per vector step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity in transitions (softqlearning examples: 1e6)"""
    gamma: float = 0.99
    """discount factor (softqlearning examples: 0.99)"""
    tau: float = 1.0
    """target update rate: Q̄ ← τ Q + (1 − τ) Q̄ every --target-network-frequency steps (1: hard copy)"""
    batch_size: int | None = None
    """minibatch size (default from PRESETS: 64 as softqlearning multigoal_sql.py; discrete 64; continuous 128)"""
    learning_starts: int | None = None
    """random actions and no updates before this step (default from PRESETS: MultiGoal 100 as softqlearning; 1000)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the sampling network f_φ (softqlearning multigoal_sql.py and mujoco_all_sql.py: 3e-4)"""
    q_lr: float | None = None
    """Adam learning rate of Q (default from PRESETS: 3e-4 as softqlearning; discrete 1e-3)"""
    target_network_frequency: int | None = None
    """gradient steps between target updates (default from PRESETS: 1000 as softqlearning; discrete 500)"""
    alpha: float | None = None
    """temperature α in π ∝ exp(Q/α) (default from PRESETS: 1 with reward scaling as the paper; discrete 0.02)"""
    reward_scale: float | None = None
    """rewards are scaled by this, 1/α in effect (default from PRESETS: MultiGoal 0.1; continuous 10; discrete 1)"""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of Q and f_φ (softqlearning: 128, 128, ReLU)"""
    value_samples: int = 16
    """M, uniform action samples for the importance-sampled soft value (softqlearning value_n_particles: 16)"""
    svgd_particles: int = 32
    """K, particles per state for amortized SVGD (softqlearning kernel_n_particles: 32 for MultiGoal, 16 for MuJoCo)"""
    svgd_update_ratio: float = 0.5
    """fraction of the K particles updated; the others are the fixed particles j of the SVGD sum (softqlearning: 0.5)"""
    kernel_min_bandwidth: float = 1e-3
    """floor of the median-heuristic RBF bandwidth h (softqlearning kernel.py h_min: 1e-3)"""
    squash_correction: bool = True
    """add ∇ Σ log(1-a²) to ∇ log p as softqlearning does: f_φ then samples exp(Q/α)Π(1-a²), not exp(Q/α)"""
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
    eval_every: int = 5_000
    """evaluation every this many environment steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, on a separate environment"""
    eval_stochastic: bool | None = None
    """evaluate by sampling the policy instead of argmax Q / f_φ(s, 0) (default: True on MultiGoal, False elsewhere)"""
    goal_episodes: int = 50
    """MultiGoal: episodes sampled from the start at the end of training to count which goal each reaches"""
    plot: str | None = None
    """MultiGoal: write a PNG of sampled trajectories and Q(s,·) contours to this path at the end (needs matplotlib)"""
    output_dir: str = "runs"
    """runs are written to {output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}/"""
    checkpoint_every: int = 0
    """write checkpoint.pt every this many environment steps (0: only at the end)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints, so that --resume continues learning from it (large)"""
    resume: str | None = None
    """continue the run of this checkpoint.pt, in its run directory, up to --total-timesteps"""
    eval_only: str | None = None
    """load this checkpoint.pt and only evaluate it (goal counts and --plot on MultiGoal, --capture-video to watch)"""
    log_every: int = 1_000
    """write losses and the progress line every this many environment steps"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "maxent-rl"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (team or user)"""
    capture_video: bool = False
    """record the final evaluation episodes to {run_dir}/videos (needs moviepy)"""

# Defaults that depend on the task, filled into the None fields above by `with_defaults`. MultiGoal follows
# softqlearning examples/multigoal_sql.py; "continuous" follows its mujoco_all_sql.py where it applies (lr 3e-4,
# 1000-step hard target update) with the reward scale tuned here for Pendulum; "discrete" was tuned here on CartPole-v1.
PRESETS = {
    "MultiGoal": dict(total_timesteps=15_000, target_network_frequency=1000, batch_size=64, learning_starts=100,
                      q_lr=3e-4, alpha=1.0, reward_scale=0.1),
    "continuous": dict(total_timesteps=30_000, target_network_frequency=1000, batch_size=128, learning_starts=1000,
                       q_lr=3e-4, alpha=1.0, reward_scale=10.0),
    "discrete": dict(total_timesteps=60_000, target_network_frequency=500, batch_size=64, learning_starts=1000,
                     q_lr=1e-3, alpha=0.02, reward_scale=1.0),
}


# ----------------------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------------------
class MultiGoalEnv(gym.Env):
    """The multi-goal environment of 2017, §6.1 (softqlearning/environments/multigoal.py)  — (SQL-13).

    State: position in [−7, 7]². Action: velocity in [−1, 1]² (clipped). position ← clip(position + action).
    Reward: −(30 ‖a‖² + min_g ‖position − g‖²), computed at the new position, plus 10 and termination when
    the new position is within distance 1 of a goal. Goals (5, 0), (−5, 0), (0, 5), (0, −5), in this order in
    `info["goal"]` and in `goal_reach_counts`. Start ~ N(0, 0.1² I). Episodes are cut at 30 steps by make_env
    (softqlearning multigoal_sql.py: max_path_length=30).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    goals = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=np.float32)
    goal_radius, goal_reward, action_cost, distance_cost, init_sigma, bound = 1.0, 10.0, 30.0, 1.0, 0.1, 7.0

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(-self.bound, self.bound, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.render_mode = render_mode
        self.position = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self.init_sigma * self.np_random.normal(size=2)
        self.position = np.clip(start, -self.bound, self.bound).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        self.position = np.clip(self.position + action, -self.bound, self.bound).astype(np.float32)
        squared_distances = ((self.position - self.goals) ** 2).sum(-1)
        reward = -(self.action_cost * float((action**2).sum()) + self.distance_cost * float(squared_distances.min()))
        nearest = int(squared_distances.argmin())
        terminated = bool(math.sqrt(squared_distances[nearest]) < self.goal_radius)
        if terminated:
            reward += self.goal_reward
        return self.position.copy(), reward, terminated, False, {"goal": nearest if terminated else -1}

    def render(self):
        size = 128
        image = np.full((size, size, 3), 255, dtype=np.uint8)

        def pixel(point):
            column, row = ((np.asarray(point) + self.bound) / (2 * self.bound) * (size - 1)).round().astype(int)
            return size - 1 - row, column

        for goal in self.goals:
            row, column = pixel(goal)
            image[max(row - 3, 0): row + 4, max(column - 3, 0): column + 4] = (220, 40, 40)
        row, column = pixel(self.position)
        image[max(row - 2, 0): row + 3, max(column - 2, 0): column + 2] = (40, 40, 220)
        return image


MULTIGOAL_EPISODE_STEPS = 30


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One environment; MultiGoal is built here, anything else by gym.make."""
    if env_id == "MultiGoal":
        return gym.wrappers.TimeLimit(MultiGoalEnv(render_mode=render_mode), MULTIGOAL_EPISODE_STEPS)
    return gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))


def check_env(env_id: str) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces, or a UsageError naming --env-id: flat Box observations, and Discrete or
    bounded 1-D Box actions (the uniform proposal of the soft value needs bounds)."""
    try:
        env = make_env(env_id)
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id}: {error}. Use 'MultiGoal' or a registered gymnasium id such as "
                         "CartPole-v1 or Pendulum-v1") from None
    except ImportError as error:  # an extra such as box2d, or the module of a module:Env-v0 id
        raise UsageError(f"--env-id {env_id} needs a missing package ({error})") from None
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UsageError(f"--env-id {env_id}: observations must be a flat Box (vector); got {observation_space}")
    if isinstance(action_space, gym.spaces.Discrete):
        return observation_space, action_space
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise UsageError(f"--env-id {env_id}: the action box must be bounded (uniform proposal of the soft value); "
                             f"got {action_space}")
        return observation_space, action_space
    raise UsageError(f"--env-id {env_id}: action space must be Discrete or a 1-D Box; got {action_space}")


def make_vector_env(args: Args) -> gym.vector.VectorEnv:
    """--num-envs copies of make_env with SAME_STEP autoreset: an episode's last observation comes in info["final_obs"]
    on the step it ends, so no stored transition crosses an episode boundary (docs/pitfalls.md#vector-autoreset)."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args.env_id)] * args.num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def with_defaults(args: Args) -> Args:
    """Args with its None fields filled from PRESETS, by task: MultiGoal, discrete or continuous actions."""
    _, action_space = check_env(args.env_id)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    task = "MultiGoal" if args.env_id == "MultiGoal" else "discrete" if discrete else "continuous"
    filled = {key: value for key, value in PRESETS[task].items() if getattr(args, key) is None}
    if args.eval_stochastic is None:
        filled["eval_stochastic"] = args.env_id == "MultiGoal"
    return replace(args, **filled)


def true_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s' of each transition: next_obs, except where an episode just ended, whose last observation is in final_obs
    (next_obs there already starts the next episode)."""
    real_next_obs = next_obs.copy()
    if "_final_obs" in infos:
        for i in np.flatnonzero(infos["_final_obs"]):
            real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs


# ----------------------------------------------------------------------------------------------------------------------
# The math: each equation of docs/soft_q_learning.md as a function of tensors.
# ----------------------------------------------------------------------------------------------------------------------
def discrete_soft_value(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """V(s) = α log Σ_a exp(Q(s,a)/α) over the last axis (logsumexp); → max_a Q as α → 0  — (SQL-2); 2017,
    Thm. 1."""
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def boltzmann_logits(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """log π(a|s) up to a constant: π(·|s) = softmax(Q(s,·)/α) = exp((Q(s,·) − V(s))/α)  — (SQL-1); 2017,
    Thm. 1."""
    return q / alpha


def boltzmann_entropy(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """H(π(·|s)) = −Σ_a π(a|s) log π(a|s) for π = softmax(Q/α), averaged over states; an expectation, not a
    one-sample estimate (docs/pitfalls.md#discrete-expectations)."""
    log_pi = torch.log_softmax(boltzmann_logits(q, alpha), -1)
    return -(log_pi.exp() * log_pi).sum(-1).mean()


def uniform_log_density(action_dim: int) -> float:
    """log q(a) = −d log 2 for the uniform proposal on [−1, 1]^d  — (SQL-4)."""
    return -action_dim * math.log(2.0)


def importance_sampled_soft_value(q_samples: torch.Tensor, alpha: float,
                                  log_proposal: torch.Tensor | float) -> torch.Tensor:
    """V(s) ≈ α [logsumexp_j (Q(s,a_j)/α − log q(a_j)) − log M], a_j ~ q; q_samples: (..., M)  — (SQL-4);
    2017, Eq. 10. It estimates α log ∫ exp(Q(s,a)/α) da; with the uniform proposal −log q(a) = d log 2 is the
    `+ action_dim * log 2` of softqlearning sql.py."""
    num_samples = q_samples.shape[-1]
    return alpha * (torch.logsumexp(q_samples / alpha - log_proposal, dim=-1) - math.log(num_samples))


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor,
                  gamma: float) -> torch.Tensor:
    """y = r + γ (1 − d) V̄(s')  — (SQL-5); 2017, Eq. 11 plus the done mask it omits. d is termination only: a
    time limit bootstraps (docs/pitfalls.md#truncation-vs-termination)."""
    return reward + gamma * (1.0 - terminated) * next_value


def soft_bellman_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q = E[½ (Q(s,a) − y)²], shapes asserted equal  — (SQL-6); 2017, Eq. 11."""
    assert q.shape == target.shape, (q.shape, target.shape)  # docs/pitfalls.md#silent-broadcasting
    return 0.5 * ((q - target) ** 2).mean()


def rbf_kernel(xs: torch.Tensor, ys: torch.Tensor, min_bandwidth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """κ(x, y) = exp(−‖x − y‖² / h), ∇_x κ = −2 (x − y) κ / h  — (SQL-8); Liu & Wang 2016, §5.
    xs: (..., Kx, D), ys: (..., Ky, D).

    Returns kappa (..., Kx, Ky) and its gradient w.r.t. xs (..., Kx, Ky, D). Median heuristic (as softqlearning
    kernel.py): h = median of the Kx·Ky squared distances / log Kx, floored at min_bandwidth and treated as a
    constant (no gradient flows through h).
    """
    diff = xs.unsqueeze(-2) - ys.unsqueeze(-3)
    squared_distances = (diff**2).sum(-1)
    flat = squared_distances.detach().flatten(-2)
    # The (n // 2 + 1)-th largest of the n squared distances, as top_k in softqlearning kernel.py.
    median = flat.kthvalue(flat.shape[-1] - flat.shape[-1] // 2, dim=-1).values
    bandwidth = (median / math.log(xs.shape[-2])).clamp_min(min_bandwidth)[..., None, None]
    kappa = torch.exp(-squared_distances / bandwidth)
    kappa_grad = -2.0 * diff / bandwidth.unsqueeze(-1) * kappa.unsqueeze(-1)
    return kappa, kappa_grad


def svgd_direction(fixed: torch.Tensor, grad_log_p: torch.Tensor, updated: torch.Tensor,
                   min_bandwidth: float = 1e-3) -> torch.Tensor:
    """Δa_i = (1/K) Σ_j [κ(a_j, a_i) ∇_{a_j} log p(a_j) + ∇_{a_j} κ(a_j, a_i)], log p = Q(s,·)/α  — (SQL-9);
    2017, Eq. 13.

    The first term pulls particles towards high Q, the second pushes them apart. fixed (..., Kj, D) are the
    particles a_j with their ∇ log p; updated (..., Ki, D) are the a_i.
    """
    kappa, kappa_grad = rbf_kernel(fixed, updated, min_bandwidth)
    return (kappa.unsqueeze(-1) * grad_log_p.unsqueeze(-2) + kappa_grad).mean(dim=-3)


def svgd_surrogate_loss(updated_actions: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """L(φ) = −Σ_i f_φ(s, ξ_i) · stopgrad(Δa_i), summed over particles, averaged over states  — (SQL-10);
    2017, Eq. 14.

    Its gradient is −Σ_i (∂f_φ/∂φ)ᵀ Δa_i: the network moves its samples along the Stein direction.
    """
    return -(updated_actions * direction.detach()).sum(dim=(-2, -1)).mean()


def squash_correction_gradient(u: torch.Tensor) -> torch.Tensor:
    """∇_a Σ_k log(1 − a_k²) at a = tanh(u): −2a/(1 − a²) = −sinh(2u), the term softqlearning sql.py
    adds to ∇_a log p (not in the paper)  — (SQL-11). SVGD moves the particles in a, so with it the sampler's
    target is exp(Q/α) Π_k (1 − a_k²), not (SQL-1). From the pre-tanh u it stays exact where 1 − a² has
    rounded to 0 (|u| > 9 in float32), which a gradient through log(1 − a²) cannot do."""
    return -torch.sinh(2.0 * u)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Q̄ ← τ Q + (1 − τ) Q̄; τ = 1 is the hard copy of the authors' code  — (SQL-7); 2017, Alg. 1."""
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


class DiscreteQNetwork(nn.Module):
    """Q(s, ·) ∈ R^{|A|}."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ContinuousQNetwork(nn.Module):
    """Q(s, a) for actions in [−1, 1]^d; obs (..., obs_dim) is broadcast against actions (..., K, d) or (..., d)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim + action_dim, hidden_sizes, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if actions.dim() == obs.dim() + 1:  # K actions per state
            obs = obs.unsqueeze(-2).expand(*actions.shape[:-1], obs.shape[-1])
        return self.net(torch.cat([obs, actions], -1)).squeeze(-1)


class SamplingNetwork(nn.Module):
    """a = tanh(f_φ(s, ξ)), ξ ~ N(0, I): the amortized sampler of exp(Q(s,·)/α)  — (SQL-10); 2017, Eq. 13-14
    (softqlearning StochasticNNPolicy with squash=True). Actions live in [−1, 1]^d and are mapped affinely to the
    environment's bounds (docs/pitfalls.md#action-rescaling)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(obs_dim + action_dim, hidden_sizes, action_dim)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor, squash: bool = True) -> torch.Tensor:
        if noise.dim() == obs.dim() + 1:  # K samples per state
            obs = obs.unsqueeze(-2).expand(*noise.shape[:-1], obs.shape[-1])
        u = self.net(torch.cat([obs, noise], -1))
        return torch.tanh(u) if squash else u

    def sample(self, obs: torch.Tensor, num_samples: int | None = None, generator: torch.Generator | None = None,
               deterministic: bool = False, squash: bool = True) -> torch.Tensor:
        """a = tanh(u) (or u itself with squash=False) for ξ ~ N(0, I), or ξ = 0 when deterministic."""
        shape = (*obs.shape[:-1], *(() if num_samples is None else (num_samples,)), self.action_dim)
        noise = (torch.zeros(shape, device=obs.device) if deterministic
                 else torch.randn(shape, device=obs.device, generator=generator))
        return self(obs, noise, squash)


class Agent(nn.Module):
    """Q, its target copy Q̄ and, for continuous actions, the sampler f_φ: one state_dict checkpoints them all."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.Space):
        super().__init__()
        self.alpha = args.alpha
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.q = DiscreteQNetwork(obs_dim, int(action_space.n), args.hidden_sizes)
            self.q_target = DiscreteQNetwork(obs_dim, int(action_space.n), args.hidden_sizes)
            self.sampler = None
        else:
            self.action_dim = int(action_space.shape[0])
            self.q = ContinuousQNetwork(obs_dim, self.action_dim, args.hidden_sizes)
            self.q_target = ContinuousQNetwork(obs_dim, self.action_dim, args.hidden_sizes)
            self.sampler = SamplingNetwork(obs_dim, self.action_dim, args.hidden_sizes)
            low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high))
            self.register_buffer("action_scale", (high - low) / 2)  # docs/pitfalls.md#action-rescaling
            self.register_buffer("action_bias", (high + low) / 2)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.q.parameters()).device

    @torch.no_grad()
    def act(self, obs: np.ndarray, stochastic: bool = True, generator: torch.Generator | None = None):
        """(environment action, action stored in the buffer)  — (SQL-1). Discrete: a ~ softmax(Q/α) by Gumbel-max, or
        argmax Q. Continuous: f_φ(s, ξ) or f_φ(s, 0) in [−1, 1]^d, rescaled to the environment's bounds."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.discrete:
            q = self.q(obs_t)
            if stochastic:  # Gumbel-max sample of softmax(Q/α)
                uniform = torch.rand(q.shape, device=self.device, generator=generator).clamp_(1e-20, 1.0)
                action = (boltzmann_logits(q, self.alpha) - torch.log(-torch.log(uniform))).argmax(-1)
            else:
                action = q.argmax(-1)
            action = action.cpu().numpy()
            return action, action
        action = self.sampler.sample(obs_t, generator=generator, deterministic=not stochastic)
        return (action * self.action_scale + self.action_bias).cpu().numpy(), action.cpu().numpy()


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
def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class Learner:
    """The gradient step, called once per vector-environment step; nothing here synchronises with the host.
    The losses are pure tensor functions; the optimizer steps follow."""

    def __init__(self, agent: Agent, args: Args):
        self.agent, self.args = agent, args
        self.q_optimizer = torch.optim.Adam(agent.q.parameters(), lr=args.q_lr, fused=True)  # one kernel per step
        if not agent.discrete:
            self.policy_optimizer = torch.optim.Adam(agent.sampler.parameters(), lr=args.policy_lr, fused=True)
            # As softqlearning: of K particles a_k = f_φ(s, ξ_k), a fixed set supplies the j of the SVGD sum and the
            # other set i is moved.
            self.num_updated = max(1, int(args.svgd_particles * args.svgd_update_ratio))
            self.num_fixed = args.svgd_particles - self.num_updated
        self.gradient_steps = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        names = ["q_optimizer"] + ([] if self.agent.discrete else ["policy_optimizer"])
        return {name: getattr(self, name) for name in names}

    def q_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The soft value of s' (SQL-2 exact, or SQL-4 by importance sampling), the target (SQL-5) with the reward
        scale (SQL-12), and the soft Bellman loss (SQL-6)."""
        agent, args = self.agent, self.args
        with torch.no_grad():
            if agent.discrete:
                next_value = discrete_soft_value(agent.q_target(batch.next_obs), args.alpha)
            else:
                proposal = torch.rand((len(batch.next_obs), args.value_samples, agent.action_dim),
                                      device=batch.next_obs.device) * 2 - 1
                next_value = importance_sampled_soft_value(agent.q_target(batch.next_obs, proposal), args.alpha,
                                                           uniform_log_density(agent.action_dim))
            target = soft_q_target(args.reward_scale * batch.rewards, batch.terminated, next_value, args.gamma)
        if agent.discrete:
            q = agent.q(batch.obs).gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        else:
            q = agent.q(batch.obs, batch.actions)
        loss = soft_bellman_loss(q, target)
        return loss, {"losses/qf_loss": loss.detach(), "losses/q_mean": q.detach().mean()}

    def svgd_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """One amortized SVGD step's surrogate loss: ∇_a log p at the fixed particles (SQL-11 with
        --squash-correction), the Stein direction (SQL-9) at the updated ones, and the loss (SQL-10); 2017, App. C."""
        agent, args = self.agent, self.args
        # Drawing the fixed set without autograd saves half the backward pass; same distribution.
        with torch.no_grad():
            u = agent.sampler.sample(obs, self.num_fixed, squash=False)  # (B, K_fixed, d), before the tanh
        fixed = torch.tanh(u).requires_grad_(True)
        grad_log_p = torch.autograd.grad(agent.q(obs, fixed).sum() / args.alpha, fixed)[0]
        if args.squash_correction:
            grad_log_p = grad_log_p + squash_correction_gradient(u)
        updated = agent.sampler.sample(obs, self.num_updated)  # (B, K_updated, d)
        direction = svgd_direction(fixed.detach(), grad_log_p, updated.detach(), args.kernel_min_bandwidth)
        return svgd_surrogate_loss(updated, direction)

    def update(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        """One gradient step (2017, Algorithm 1): the soft Bellman step on Q, then the SVGD step on f_φ with the
        just-updated Q (continuous actions), then the target Q̄ (SQL-7)."""
        self.gradient_steps += 1
        q_loss, metrics = self.q_loss(batch)
        optimizer_step(self.q_optimizer, q_loss)

        if self.agent.discrete:
            with torch.no_grad():
                metrics["losses/entropy"] = boltzmann_entropy(self.agent.q(batch.obs), self.args.alpha)
        else:
            policy_loss = self.svgd_loss(batch.obs)
            optimizer_step(self.policy_optimizer, policy_loss)
            metrics["losses/actor_loss"] = policy_loss.detach()
        metrics["losses/alpha"] = self.args.alpha  # fixed: soft Q-learning has no entropy target

        if self.gradient_steps % self.args.target_network_frequency == 0:
            polyak_update(self.agent.q_target, self.agent.q, self.args.tau)
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


def train(args: Args) -> dict:
    """Soft Q-learning's loop (2017, Algorithm 1): act, step the environments, store, one gradient step per vector
    step. Logging, evaluation and checkpoints are one call each on `run` (the plumbing below)."""
    args, checkpoint = start(args, with_defaults)  # --resume: the checkpoint's settings; then the defaults, the checks
    seed_everything(args)
    device = resolve_device(args.device)
    envs = make_vector_env(args)
    obs_dim, action_space = int(envs.single_observation_space.shape[0]), envs.single_action_space
    agent = Agent(args, obs_dim, action_space).to(device)
    learner = Learner(agent, args)
    buffer = ReplayBuffer(args.buffer_size, (obs_dim,), () if agent.discrete else action_space.shape,
                          torch.long if agent.discrete else torch.float32, device)
    if checkpoint is not None:
        restore(checkpoint, agent, learner, buffer)
    # A resumed run starts new episodes (the environments' state is not saved), seeded from its step.
    first_step = checkpoint["global_step"] if checkpoint else 0
    envs.action_space.seed(args.seed + first_step)
    obs, _ = envs.reset(seed=args.seed + first_step)
    metrics: dict[str, torch.Tensor | float] = {}

    with Run(args, checkpoint, lambda: checkpoint_state(agent, learner, buffer, args)) as run:
        while run.global_step < args.total_timesteps and not run.stop_requested:
            if run.global_step < args.learning_starts:
                env_actions = envs.action_space.sample()
                actions = env_actions if agent.discrete else (
                    (env_actions - agent.action_bias.cpu().numpy()) / agent.action_scale.cpu().numpy())
            else:
                env_actions, actions = agent.act(obs)
            next_obs, rewards, terminations, truncations, infos = envs.step(env_actions)
            # Only `terminated` stops bootstrapping; a time-limit truncation is stored as not done (SQL-5).
            buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)
            obs = next_obs
            run.advance(args.num_envs, infos)

            if run.global_step >= args.learning_starts and buffer.size >= args.batch_size:
                metrics = learner.update(buffer.sample(args.batch_size))

            if run.due(args.log_every):
                run.log_losses(metrics)
            if run.due(args.eval_every):
                run.log_evaluation(lambda: periodic_evaluation(agent, args))
            if run.due(args.checkpoint_every):
                run.save()

        if not run.stop_requested:
            video_dir = str(run.dir / "videos") if args.capture_video else None
            run.log_evaluation(lambda: final_evaluation(agent, args, run.extra, video_dir))
    envs.close()
    return run.summary


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------
class Episodes(NamedTuple):
    returns: list[float]
    goals: list[int]  # MultiGoal: the goal each episode reached (−1: none)
    paths: list[np.ndarray]  # MultiGoal: the positions of each episode

    def metrics(self) -> dict[str, float]:
        return {"eval/return_mean": float(np.mean(self.returns)), "eval/return_std": float(np.std(self.returns))}


def evaluate(agent: Agent, args: Args, episodes: int, video_dir: str | None = None) -> Episodes:
    """Episodes on a separate environment with its own seeds and its own torch generator (the training random
    numbers are untouched); the policy is sampled with --eval-stochastic, else argmax Q or f_φ(s, 0)
    (docs/pitfalls.md#deterministic-evaluation)."""
    seed = args.seed + 10_000
    env = make_env(args.env_id, render_mode="rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: True, disable_logger=True)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns, goals, paths = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total, goal, path = False, 0.0, -1, [obs]
        while not done:
            action, _ = agent.act(obs[None], stochastic=args.eval_stochastic, generator=generator)
            obs, reward, terminated, truncated, info = env.step(action[0])
            total, done = total + float(reward), terminated or truncated
            goal = int(info.get("goal", -1)) if terminated else goal
            path.append(obs)
        returns.append(total), goals.append(goal), paths.append(np.array(path))
    env.close()
    return Episodes(returns, goals, paths)


def goal_reach_counts(goals: list[int]) -> list[int]:
    """How many episodes ended at each of the four goals, in MultiGoalEnv.goals order."""
    return [sum(1 for g in goals if g == k) for k in range(len(MultiGoalEnv.goals))]


def periodic_evaluation(agent: Agent, args: Args) -> dict[str, float]:
    """--eval-episodes episodes; on MultiGoal also how many of the four goals were reached."""
    episodes = evaluate(agent, args, args.eval_episodes)
    metrics = episodes.metrics()
    if args.env_id == "MultiGoal":
        metrics["eval/goals_reached"] = sum(1 for count in goal_reach_counts(episodes.goals) if count > 0)
    return metrics


def final_evaluation(agent: Agent, args: Args, summary: dict, video_dir: str | None = None) -> dict[str, float]:
    """The last evaluation: on MultiGoal --goal-episodes sampled episodes, whose goal counts (and --plot) go into
    `summary`; elsewhere --eval-episodes. Returns the eval/ metrics to log."""
    count = args.goal_episodes if args.env_id == "MultiGoal" else args.eval_episodes
    episodes = evaluate(agent, args, count, video_dir)
    summary.update(eval_episodes=count, eval_stochastic=args.eval_stochastic)
    if args.env_id == "MultiGoal":
        summary["goal_reach_counts"] = goal_reach_counts(episodes.goals)
        if args.plot:
            plot_multigoal(agent, episodes.paths, args.plot, title=f"soft Q-learning, MultiGoal, seed {args.seed}: "
                           f"goals reached {summary['goal_reach_counts']} of {count}")
    return episodes.metrics()


def plot_multigoal(agent: Agent, paths: list[np.ndarray], path: str, title: str = "") -> None:
    """Left: trajectories sampled from the start over the distance-cost contours. Right: Q(s,·) over the action
    box at the three states of softqlearning's QFPolicyPlotter, with 100 samples of f_φ(s, ξ) on top."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1.35, 1, 1, 1]})
    grid = np.linspace(-7.5, 7.5, 200)
    x, y = np.meshgrid(grid, grid)
    cost = np.min([(x - gx) ** 2 + (y - gy) ** 2 for gx, gy in MultiGoalEnv.goals], axis=0)
    axes[0].contour(x, y, cost, levels=15, cmap="Greys", linewidths=0.6)
    for trajectory in paths:
        axes[0].plot(trajectory[:, 0], trajectory[:, 1], color="tab:blue", lw=0.8, alpha=0.7)
    axes[0].plot(*MultiGoalEnv.goals.T, "o", color="tab:red", ms=9)
    axes[0].set(xlim=(-7, 7), ylim=(-7, 7), aspect="equal", title=f"{len(paths)} episodes sampled from the start",
                xlabel="x", ylabel="y")
    action_grid = torch.linspace(-1, 1, 101, device=agent.device)
    a1, a2 = torch.meshgrid(action_grid, action_grid, indexing="xy")
    actions = torch.stack([a1.flatten(), a2.flatten()], -1)
    generator = torch.Generator(device=agent.device).manual_seed(0)
    for ax, state in zip(axes[1:], ([-2.5, 0.0], [0.0, 0.0], [2.5, 2.5])):
        obs = torch.tensor(state, device=agent.device)
        with torch.no_grad():
            q = agent.q(obs.expand(len(actions), 2), actions).reshape(101, 101).cpu().numpy()
            samples = agent.sampler.sample(obs, 100, generator=generator).cpu().numpy()
        contour = ax.contourf(a1.cpu().numpy(), a2.cpu().numpy(), q, levels=20, cmap="viridis")
        fig.colorbar(contour, ax=ax, fraction=0.046)
        ax.plot(samples[:, 0], samples[:, 1], ".", color="white", ms=4)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", title=f"Q(s, a), s = ({state[0]}, {state[1]})",
               xlabel="a_x", ylabel="a_y")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
# Settings that only shape the evaluation may also change on --resume and --eval-only.
RESUME_MAY_CHANGE.update({"goal_episodes", "plot", "eval_stochastic"})
EVAL_MAY_CHANGE.update({"goal_episodes", "plot", "eval_stochastic"})


def validate(args: Args) -> list[tuple[bool, str]]:
    """This script's own checks, each (holds, the error line if it does not)."""
    return [
        (args.reward_scale > 0.0, f"--reward-scale must be > 0, got {args.reward_scale}"),
        (args.value_samples >= 1, f"--value-samples must be >= 1, got {args.value_samples}"),
        (args.svgd_particles >= 3,
         f"--svgd-particles must be >= 3 (a fixed and an updated set), got {args.svgd_particles}"),
        (0.0 < args.svgd_update_ratio < 1.0, f"--svgd-update-ratio must be in (0, 1), got {args.svgd_update_ratio}"),
        (args.kernel_min_bandwidth > 0.0, f"--kernel-min-bandwidth must be > 0, got {args.kernel_min_bandwidth}"),
        (args.goal_episodes >= 1, f"--goal-episodes must be >= 1, got {args.goal_episodes}"),
        (args.plot is None or args.env_id == "MultiGoal",
         "--plot draws the MultiGoal picture only; drop it or use --env-id MultiGoal"),
        (args.plot is None or importable("matplotlib"), "--plot needs matplotlib: pip install matplotlib"),
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
    """--eval-only: the checkpoint's agent, evaluated as the final evaluation of training is (goal counts and --plot on
    MultiGoal; with --capture-video, videos next to the checkpoint)."""
    args, checkpoint = start(args, with_defaults)
    device = resolve_device(args.device)
    observation_space, action_space = check_env(args.env_id)
    agent = Agent(args, int(observation_space.shape[0]), action_space).to(device)
    load_weights(agent, checkpoint["agent"], "--eval-only")
    summary: dict = {}
    video_dir = str(Path(args.eval_only).resolve().parent / "videos") if args.capture_video else None
    metrics = final_evaluation(agent, args, summary, video_dir)
    result = {"env_id": args.env_id, "eval_return_mean": metrics["eval/return_mean"],
              "eval_return_std": metrics["eval/return_std"], "global_step": checkpoint["global_step"],
              "checkpoint": args.eval_only, **summary}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
