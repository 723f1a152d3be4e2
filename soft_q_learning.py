"""Soft Q-learning (SQL): the policy is the energy-based model π(a|s) ∝ exp(Q(s,a)/α).

Haarnoja, Tang, Abbeel, Levine 2017, "Reinforcement Learning with Deep Energy-Based Policies" (ICML), and the
authors' code haarnoja/softqlearning. Notes: 004_373c382e863be436.txt §4.6.2 "Soft Q-learning" (Eq. 16-18 and the
multi-goal experiment), 000_bce46c73146642c0.txt "Backup Operators for Greedy Policy" (the soft Bellman backup with
the Boltzmann policy), 003_d078be8757ca7397.txt §4.1.1 (soft Q and soft V, Eq. 4.3-4.17), and ../shared/NOTES.md
"Soft Q-learning". There is no actor loss: only a soft Bellman backup for Q and a way to sample from exp(Q/α).

Discrete actions (chosen automatically for a Discrete action space): the soft value is exact,
    V(s) = α log Σ_a exp(Q(s,a)/α),   π(·|s) = softmax(Q(s,·)/α),   Q(s,a) ← r + γ (1 − d) V̄(s').
Continuous actions (a Box action space; the paper's algorithm):
    V(s) = α [log (1/M) Σ_j exp(Q(s,a_j)/α) / q(a_j)],  a_j ~ q = uniform on [−1, 1]^d  (importance sampling, paper Eq. 10)
    a sampling network a = f_φ(s, ξ), ξ ~ N(0, I), trained by amortized Stein variational gradient descent towards
    exp(Q(s,·)/α) (paper Eq. 13-14, Appendix C).
The temperature appears twice: `--alpha` divides Q, `--reward-scale` multiplies rewards. The paper fixes α = 1 and
scales rewards (NOTES pitfall 11): 0.1 for the multi-goal environment, 30 for Swimmer/Hopper/HalfCheetah.

The default run is the paper's multi-goal experiment (`--env-id MultiGoal`, defined below): a point mass starts at
the origin and four goals pay the same. A maximum-entropy policy keeps all four; `--plot multigoal.png` draws
sampled trajectories and Q(s,·) at three states. Evaluation on MultiGoal samples the stochastic policy (a
deterministic policy cannot be multimodal); elsewhere it is deterministic (argmax Q, or f_φ(s, ξ = 0)) by default.

    python soft_q_learning.py                                   # MultiGoal, about 4 minutes on one CPU core
    python soft_q_learning.py --env-id CartPole-v1              # discrete soft Q-learning
    python soft_q_learning.py --env-id Pendulum-v1              # any Box environment
"""

from __future__ import annotations

import json
import math
import netrc
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT_NAME = "soft_q_learning"
CHECKPOINT_FORMAT = 1


@dataclass
class Args:
    exp_name: str = SCRIPT_NAME
    """name of this experiment, part of the run directory name"""
    seed: int = 1
    """seed of python random, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """torch.use_deterministic_algorithms(True): same seed on CPU gives identical metrics"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the networks and the replay buffer live; auto picks cuda when available"""
    env_id: str = "MultiGoal"
    """'MultiGoal' (the paper's multi-goal environment, defined here) or any gymnasium id with a Discrete or Box action space"""
    total_timesteps: int | None = None
    """environment steps (default from PRESETS: MultiGoal 15k, discrete 60k, other continuous 30k)"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv, same-step autoreset); one gradient step per vector step"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (softqlearning examples: 1e6)"""
    gamma: float = 0.99
    """discount factor (softqlearning examples: 0.99)"""
    tau: float = 1.0
    """target network update rate: Q̄ ← τ Q + (1 − τ) Q̄ every --target-network-frequency steps; 1 = hard copy as in softqlearning"""
    target_network_frequency: int | None = None
    """gradient steps between target updates (default from PRESETS: 1000 as softqlearning td_target_update_interval; discrete 500)"""
    batch_size: int | None = None
    """minibatch size (default from PRESETS: 64 as softqlearning multigoal_sql.py; discrete 64; continuous 128)"""
    learning_starts: int | None = None
    """uniformly random actions and no updates before this step (default from PRESETS: MultiGoal 100 = softqlearning min_pool_size; discrete 1000; continuous 1000)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the sampling network f_φ (softqlearning multigoal_sql.py and mujoco_all_sql.py: 3e-4)"""
    q_lr: float | None = None
    """Adam learning rate of Q (default from PRESETS: 3e-4 as softqlearning; discrete 1e-3)"""
    alpha: float | None = None
    """temperature α in π ∝ exp(Q/α) (default from PRESETS: 1 with reward scaling as the paper for MultiGoal and continuous; discrete 0.02)"""
    reward_scale: float | None = None
    """rewards are multiplied by this; with α = 1 it is the inverse temperature (default from PRESETS: MultiGoal 0.1 as softqlearning multigoal_sql.py; continuous 10; discrete 1)"""
    autotune: bool = False
    """not available: soft Q-learning has no entropy target; kept for the shared interface, must stay False"""
    hidden_size: int = 128
    """units in each of the two hidden layers of Q and f_φ (softqlearning: 128 x 128, ReLU)"""
    value_samples: int = 16
    """M, uniform action samples for the importance-sampled soft value (softqlearning value_n_particles: 16)"""
    svgd_particles: int = 32
    """K, particles per state for amortized SVGD (softqlearning kernel_n_particles: 32 for MultiGoal, 16 for MuJoCo)"""
    svgd_update_ratio: float = 0.5
    """fraction of the K particles that are updated; the rest are the fixed particles j of the SVGD sum (softqlearning kernel_update_ratio: 0.5)"""
    kernel_min_bandwidth: float = 1e-3
    """floor of the median-heuristic RBF bandwidth h (softqlearning kernel.py h_min: 1e-3)"""
    squash_correction: bool = True
    """add Σ log(1 − a²) to log p(a) in the SVGD gradient as softqlearning sql.py does (not in the paper); keeps particles off the box edges"""
    eval_stochastic: bool | None = None
    """evaluate by sampling the policy instead of argmax Q / f_φ(s, 0) (default: True on MultiGoal, False elsewhere)"""
    goal_episodes: int = 50
    """MultiGoal: episodes sampled from the start at the end of training to count which goal each reaches"""
    plot: str | None = None
    """MultiGoal: write a PNG of sampled trajectories and Q(s,·) contours to this path at the end (needs matplotlib)"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "maxent-rl"
    """wandb project"""
    wandb_entity: str | None = None
    """wandb entity (team or user)"""
    capture_video: bool = False
    """record videos of evaluation episodes into the run directory (needs moviepy)"""
    eval_every: int = 5_000
    """environment steps between evaluations (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, on a separate environment"""
    output_dir: str = "runs"
    """parent directory of the run directory"""
    checkpoint_every: int = 0
    """environment steps between checkpoints (0: only at the end and on interruption)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints (exact resume, larger files)"""
    resume: str | None = None
    """continue training from this checkpoint.pt (writes into its run directory)"""
    eval_only: str | None = None
    """load this checkpoint.pt, evaluate with the run's env, seed and temperature, write summary.json (and --plot) and exit"""
    log_every: int = 1_000
    """environment steps between log lines and loss metrics"""
    compile: bool = False
    """wrap the update in torch.compile (off by default: not measured faster for these small networks)"""


# Defaults that depend on the task. MultiGoal follows softqlearning examples/multigoal_sql.py; "continuous" follows
# its mujoco_all_sql.py where it applies (lr 3e-4, 1000-step hard target update, reward scale from pitfall 11)
# with the scale tuned here for Pendulum; "discrete" was tuned here on CartPole-v1.
PRESETS = {
    "MultiGoal": dict(total_timesteps=15_000, target_network_frequency=1000, batch_size=64, learning_starts=100,
                      q_lr=3e-4, alpha=1.0, reward_scale=0.1),
    "continuous": dict(total_timesteps=30_000, target_network_frequency=1000, batch_size=128, learning_starts=1000,
                       q_lr=3e-4, alpha=1.0, reward_scale=10.0),
    "discrete": dict(total_timesteps=60_000, target_network_frequency=500, batch_size=64, learning_starts=1000,
                     q_lr=1e-3, alpha=0.02, reward_scale=1.0),
}


class UsageError(Exception):
    """Bad input: main() prints the message on one line and exits with status 2."""


# ----------------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------------
class MultiGoalEnv(gym.Env):
    """The multi-goal environment of Haarnoja et al. 2017 §6.1 (softqlearning/environments/multigoal.py).

    State: position in [−7, 7]². Action: velocity in [−1, 1]² (clipped). position ← clip(position + action).
    Reward: −(30 ‖a‖² + min_g ‖position − g‖²), computed at the new position, plus 10 and termination when the new
    position is within distance 1 of a goal. Goals (5, 0), (−5, 0), (0, 5), (0, −5), in this order in
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
    return gym.make(env_id, render_mode=render_mode)


def check_env(env_id: str) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces, or a UsageError naming --env-id."""
    try:
        env = make_env(env_id)
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id}: {error}. Use 'MultiGoal' or a registered gymnasium id such as CartPole-v1 or Pendulum-v1") from None
    except ImportError as error:
        raise UsageError(f"--env-id {env_id} needs a missing package ({error}); install it, e.g. pip install 'gymnasium[box2d]'") from None
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UsageError(f"--env-id {env_id}: observations must be a flat Box (vector); got {observation_space}")
    if isinstance(action_space, gym.spaces.Discrete):
        return observation_space, action_space
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise UsageError(f"--env-id {env_id}: the action box must be bounded (uniform proposal of the soft value); got {action_space}")
        return observation_space, action_space
    raise UsageError(f"--env-id {env_id}: action space must be Discrete or a 1-D Box; got {action_space}")


def make_vector_env(env_id: str, num_envs: int, seed: int) -> gym.vector.SyncVectorEnv:
    """Same-step autoreset: the final observation of a finished episode is in infos['final_obs'] (NOTES pitfall 2)."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.action_space.seed(seed)
    return envs


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------
def mlp(in_size: int, hidden_size: int, out_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size), nn.ReLU(),
                         nn.Linear(hidden_size, out_size))


class DiscreteQNetwork(nn.Module):
    """Q(s, ·) ∈ R^{|A|}."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden_size, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ContinuousQNetwork(nn.Module):
    """Q(s, a) for actions in [−1, 1]^d; obs (..., obs_dim) is broadcast against actions (..., K, d) or (..., d)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int):
        super().__init__()
        self.net = mlp(obs_dim + action_dim, hidden_size, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if actions.dim() == obs.dim() + 1:  # K actions per state
            obs = obs.unsqueeze(-2).expand(*actions.shape[:-1], obs.shape[-1])
        return self.net(torch.cat([obs, actions], -1)).squeeze(-1)


class SamplingNetwork(nn.Module):
    """a = tanh(f_φ(s, ξ)), ξ ~ N(0, I): the amortized sampler of exp(Q(s,·)/α) (paper §3.2; softqlearning
    StochasticNNPolicy with squash=True). Actions live in [−1, 1]^d and are mapped affinely to the env's bounds."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_size: int):
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(obs_dim + action_dim, hidden_size, action_dim)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if noise.dim() == obs.dim() + 1:  # K samples per state
            obs = obs.unsqueeze(-2).expand(*noise.shape[:-1], obs.shape[-1])
        return torch.tanh(self.net(torch.cat([obs, noise], -1)))

    def sample(self, obs: torch.Tensor, num_samples: int | None = None, generator: torch.Generator | None = None,
               deterministic: bool = False) -> torch.Tensor:
        shape = (*obs.shape[:-1], *(() if num_samples is None else (num_samples,)), self.action_dim)
        noise = torch.zeros(shape, device=obs.device) if deterministic else torch.randn(shape, device=obs.device, generator=generator)
        return self(obs, noise)


# ----------------------------------------------------------------------------------------------------------------
# The math (each function is one equation; "NOTES" is ../shared/NOTES.md "Soft Q-learning")
# ----------------------------------------------------------------------------------------------------------------
def discrete_soft_value(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """V(s) = α log Σ_a exp(Q(s,a)/α) over the last axis (NOTES; 000 "Backup Operators for Greedy Policy"). → max_a Q as α → 0."""
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def boltzmann_logits(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """log π(a|s) up to a constant: π(·|s) = softmax(Q(s,·)/α) (NOTES; 004 §4.6.2 "π ∝ exp(Q_soft/β)")."""
    return q / alpha


def uniform_log_density(action_dim: int) -> float:
    """log q(a) of the uniform proposal on [−1, 1]^d: −d log 2."""
    return -action_dim * math.log(2.0)


def importance_sampled_soft_value(q_samples: torch.Tensor, alpha: float, log_proposal: torch.Tensor | float) -> torch.Tensor:
    """V(s) = α [logsumexp_j (Q(s,a_j)/α − log q(a_j)) − log M], a_j ~ q; q_samples has shape (..., M).

    Paper Eq. 10; NOTES "Soft Q-learning". It estimates α log ∫ exp(Q(s,a)/α) da; with the uniform proposal
    −log q(a) = d log 2 is the `+ action_dim * log 2` of softqlearning sql.py.
    """
    num_samples = q_samples.shape[-1]
    return alpha * (torch.logsumexp(q_samples / alpha - log_proposal, dim=-1) - math.log(num_samples))


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − d) V̄(s') (004 Eq. 17; paper Eq. 11). d is termination only: time limits bootstrap (NOTES pitfall 1)."""
    return reward + gamma * (1.0 - terminated) * next_value


def soft_bellman_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q = E[½ (Q(s,a) − y)²] (paper Eq. 11; softqlearning sql.py `bellman_residual`)."""
    assert q.shape == target.shape, (q.shape, target.shape)  # NOTES pitfall 3: no silent broadcasting
    return 0.5 * ((q - target) ** 2).mean()


def rbf_kernel(xs: torch.Tensor, ys: torch.Tensor, min_bandwidth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """κ(x, y) = exp(−‖x − y‖² / h) and ∇_x κ(x, y) = −2 (x − y) κ / h for xs (..., Kx, D), ys (..., Ky, D).

    Returns kappa (..., Kx, Ky) and its gradient w.r.t. xs (..., Kx, Ky, D). Median heuristic (Liu & Wang 2016, as
    softqlearning kernel.py): h = median of the Kx·Ky squared distances / log Kx, floored at min_bandwidth and
    treated as a constant (no gradient flows through h).
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


def svgd_direction(fixed: torch.Tensor, grad_log_p: torch.Tensor, updated: torch.Tensor, min_bandwidth: float = 1e-3) -> torch.Tensor:
    """Δa_i = (1/K) Σ_j [κ(a_j, a_i) ∇_{a_j} log p(a_j) + ∇_{a_j} κ(a_j, a_i)], with log p = Q(s,·)/α.

    Paper Eq. 13 (NOTES "Soft Q-learning"): the first term pulls particles towards high Q, the second pushes them
    apart. fixed (..., Kj, D) are the particles a_j with their ∇ log p; updated (..., Ki, D) are the a_i.
    """
    kappa, kappa_grad = rbf_kernel(fixed, updated, min_bandwidth)
    return (kappa.unsqueeze(-1) * grad_log_p.unsqueeze(-2) + kappa_grad).mean(dim=-3)


def svgd_surrogate_loss(updated_actions: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """L(φ) = −Σ_i f_φ(s, ξ_i) · stopgrad(Δa_i), summed over particles, averaged over states (paper Eq. 14).

    Its gradient is −Σ_i (∂f_φ/∂φ)ᵀ Δa_i: the network moves its samples along the Stein direction.
    """
    return -(updated_actions * direction.detach()).sum(dim=(-2, -1)).mean()


def squash_log_correction(actions: torch.Tensor) -> torch.Tensor:
    """Σ_k log(1 − a_k²), which softqlearning sql.py adds to log p before differentiating (not in the paper)."""
    return torch.log1p(-actions.clamp(-1 + 1e-6, 1 - 1e-6) ** 2).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# Replay buffer
# ----------------------------------------------------------------------------------------------------------------
class ReplayBuffer:
    """Preallocated tensors on the device; uniform sampling with torch.randint."""

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple, action_dtype: torch.dtype, device: torch.device):
        self.capacity, self.device, self.position, self.size = capacity, device, 0, 0
        self.obs = torch.zeros((capacity, obs_dim), device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.terminated = torch.zeros(capacity, device=device)

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        n = len(obs)
        index = (self.position + torch.arange(n)) % self.capacity
        self.obs[index] = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        self.next_obs[index] = torch.as_tensor(next_obs, dtype=torch.float32, device=self.device)
        self.actions[index] = torch.as_tensor(actions, device=self.device).to(self.actions.dtype)
        self.rewards[index] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        self.terminated[index] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int):
        index = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index], self.terminated[index]

    def state_dict(self) -> dict:
        keys = ("obs", "next_obs", "actions", "rewards", "terminated")
        return {"position": self.position, "size": self.size, **{k: getattr(self, k)[: self.size].cpu() for k in keys}}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.size = state["position"], state["size"]
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[: self.size] = state[key].to(self.device)


# ----------------------------------------------------------------------------------------------------------------
# The agent: networks, optimizers, one update, acting
# ----------------------------------------------------------------------------------------------------------------
def make_adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class SoftQAgent:
    """Holds Q, its target copy, the sampler (continuous only) and their optimizers."""

    def __init__(self, args: Args, obs_dim: int, action_space: gym.Space, device: torch.device):
        self.args, self.device = args, device
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions = int(action_space.n)
            self.q = DiscreteQNetwork(obs_dim, self.n_actions, args.hidden_size).to(device)
            self.q_target = DiscreteQNetwork(obs_dim, self.n_actions, args.hidden_size).to(device)
            self.sampler = None
        else:
            self.action_dim = int(action_space.shape[0])
            self.q = ContinuousQNetwork(obs_dim, self.action_dim, args.hidden_size).to(device)
            self.q_target = ContinuousQNetwork(obs_dim, self.action_dim, args.hidden_size).to(device)
            self.sampler = SamplingNetwork(obs_dim, self.action_dim, args.hidden_size).to(device)
            self.policy_optimizer = make_adam(self.sampler.parameters(), args.policy_lr, device)
            low, high = (torch.as_tensor(b, dtype=torch.float32, device=device) for b in (action_space.low, action_space.high))
            self.action_scale, self.action_bias = (high - low) / 2, (high + low) / 2  # NOTES pitfall 5
            self.num_updated = max(1, int(args.svgd_particles * args.svgd_update_ratio))
            self.num_fixed = args.svgd_particles - self.num_updated
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_optimizer = make_adam(self.q.parameters(), args.q_lr, device)
        self.updates = 0
        self.update = torch.compile(self._update) if args.compile else self._update

    # ---- one gradient step on a minibatch; returns detached metrics (no .item() here) ----
    def _update(self, obs, actions, rewards, next_obs, terminated) -> dict[str, torch.Tensor]:
        args = self.args
        with torch.no_grad():
            if self.discrete:
                next_value = discrete_soft_value(self.q_target(next_obs), args.alpha)
            else:
                proposal = torch.rand((len(next_obs), args.value_samples, self.action_dim), device=self.device) * 2 - 1
                next_value = importance_sampled_soft_value(self.q_target(next_obs, proposal), args.alpha,
                                                           uniform_log_density(self.action_dim))
            target = soft_q_target(args.reward_scale * rewards, terminated, next_value, args.gamma)
        if self.discrete:
            q = self.q(obs).gather(1, actions.long().unsqueeze(1)).squeeze(1)
        else:
            q = self.q(obs, actions)
        qf_loss = soft_bellman_loss(q, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        metrics = {"losses/qf_loss": qf_loss.detach(), "losses/q_mean": q.detach().mean()}
        if self.discrete:
            with torch.no_grad():
                log_pi = torch.log_softmax(boltzmann_logits(self.q(obs), args.alpha), -1)
                metrics["losses/entropy"] = -(log_pi.exp() * log_pi).sum(-1).mean()
        else:
            metrics["losses/actor_loss"] = self.svgd_step(obs)
        return metrics

    def svgd_step(self, obs: torch.Tensor) -> torch.Tensor:
        """One amortized SVGD step of f_φ towards exp(Q(s,·)/α) (paper Algorithm 1; softqlearning sql.py)."""
        args = self.args
        # As softqlearning: of K particles a_k = f_φ(s, ξ_k), a fixed set supplies the j of the sum and the other
        # set i is moved. Drawing the fixed set without autograd saves half the backward pass; same distribution.
        with torch.no_grad():
            fixed = self.sampler.sample(obs, self.num_fixed)  # (B, K_fixed, d)
        fixed.requires_grad_(True)
        log_p = self.q(obs, fixed) / args.alpha
        if args.squash_correction:
            log_p = log_p + squash_log_correction(fixed)
        grad_log_p = torch.autograd.grad(log_p.sum(), fixed)[0]
        # Drawn after the gradient above, so that under --compile the two graphs stay apart (one backward each).
        updated = self.sampler.sample(obs, self.num_updated)  # (B, K_updated, d)
        direction = svgd_direction(fixed.detach(), grad_log_p, updated.detach(), args.kernel_min_bandwidth)
        policy_loss = svgd_surrogate_loss(updated, direction)
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        return policy_loss.detach()

    def update_target(self) -> None:
        """Q̄ ← τ Q + (1 − τ) Q̄ (τ = 1: the hard copy of softqlearning)."""
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()), self.args.tau)

    # ---- acting ----
    @torch.no_grad()
    def act(self, obs: np.ndarray, stochastic: bool = True, generator: torch.Generator | None = None):
        """Returns (env action, action stored in the buffer). Discrete: Boltzmann sample or argmax Q.
        Continuous: f_φ(s, ξ) or f_φ(s, 0), rescaled from [−1, 1] to the env's bounds."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.discrete:
            q = self.q(obs_t)
            if stochastic:  # Gumbel-max sample of softmax(Q/α)
                uniform = torch.rand(q.shape, device=self.device, generator=generator).clamp_(1e-20, 1.0)
                action = (boltzmann_logits(q, self.args.alpha) - torch.log(-torch.log(uniform))).argmax(-1)
            else:
                action = q.argmax(-1)
            action = action.cpu().numpy()
            return action, action
        action = self.sampler.sample(obs_t, generator=generator, deterministic=not stochastic)
        return (action * self.action_scale + self.action_bias).cpu().numpy(), action.cpu().numpy()

    def state_dict(self) -> dict:
        state = {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                 "q_optimizer": self.q_optimizer.state_dict(), "updates": self.updates}
        if self.sampler is not None:
            state["sampler"] = self.sampler.state_dict()
            state["policy_optimizer"] = self.policy_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.updates = state["updates"]
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
            self.policy_optimizer.load_state_dict(state["policy_optimizer"])


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------
def evaluate(agent: SoftQAgent, env_id: str, episodes: int, seed: int, stochastic: bool,
             video_dir: str | None = None) -> dict:
    """Episodes on a separate environment with its own seeds and its own torch generator (training RNG untouched).
    Returns returns, lengths, goal reached per episode (MultiGoal; −1 = none) and positions (MultiGoal)."""
    env = make_env(env_id, render_mode="rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: True, disable_logger=True)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns, lengths, goals, paths = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total, length, goal, path = False, 0.0, 0, -1, [obs]
        while not done:
            action, _ = agent.act(obs[None], stochastic=stochastic, generator=generator)
            obs, reward, terminated, truncated, info = env.step(action[0])
            total, length, done = total + float(reward), length + 1, terminated or truncated
            goal = int(info.get("goal", -1)) if terminated else goal
            path.append(obs)
        returns.append(total), lengths.append(length), goals.append(goal), paths.append(np.array(path))
    env.close()
    return {"returns": returns, "lengths": lengths, "goals": goals, "paths": paths}


def goal_reach_counts(goals: list[int]) -> list[int]:
    """How many episodes ended at each of the four goals, in MultiGoalEnv.goals order."""
    return [sum(1 for g in goals if g == k) for k in range(len(MultiGoalEnv.goals))]


def plot_multigoal(agent: SoftQAgent, paths: list[np.ndarray], path: str, title: str = "") -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# Checkpointing
# ----------------------------------------------------------------------------------------------------------------
def rng_state() -> dict:
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, agent: SoftQAgent, args: Args, global_step: int, episodes: int,
                    buffer: ReplayBuffer | None, shapes: dict) -> None:
    """Written to a temporary file, then os.replace: a crash mid-write keeps the previous checkpoint."""
    state = {"script": SCRIPT_NAME, "format": CHECKPOINT_FORMAT, "args": asdict(args), "shapes": shapes,
             "agent": agent.state_dict(), "rng": rng_state(), "global_step": global_step, "episodes": episodes}
    if buffer is not None and args.save_buffer:
        state["buffer"] = buffer.state_dict()
    temporary = path + ".tmp"
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str, flag: str) -> dict:
    """The checkpoint dict, or a UsageError naming the flag and the file."""
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: no such file; pass the checkpoint.pt of a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupted, truncated, or not a torch file
        raise UsageError(f"{flag} {path}: not a readable checkpoint ({type(error).__name__}); use a checkpoint.pt written by {SCRIPT_NAME}.py") from None
    if not isinstance(state, dict) or state.get("script") != SCRIPT_NAME:
        other = state.get("script") if isinstance(state, dict) else None
        raise UsageError(f"{flag} {path}: checkpoint of {other or 'another program'}, not {SCRIPT_NAME}.py; use that script or a {SCRIPT_NAME} checkpoint")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{flag} {path}: checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}")
    return state


def check_shapes(state: dict, shapes: dict, flag: str, path: str) -> None:
    if state["shapes"] != shapes:
        raise UsageError(f"{flag} {path}: checkpoint is for {state['shapes']} (env {state['args']['env_id']}), "
                         f"this run is {shapes}; pass --env-id {state['args']['env_id']} and the same --hidden-size")


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------
def resolve_args(args: Args, discrete: bool) -> Args:
    """Fill the None fields from PRESETS and check every value; a UsageError names the flag."""
    preset = PRESETS["MultiGoal" if args.env_id == "MultiGoal" else "discrete" if discrete else "continuous"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.eval_stochastic is None:
        args.eval_stochastic = args.env_id == "MultiGoal"
    checks = [
        (0.0 <= args.gamma <= 1.0, "--gamma must be in [0, 1]"),
        (0.0 < args.tau <= 1.0, "--tau must be in (0, 1]"),
        (args.alpha > 0, "--alpha must be > 0 (α → 0 is ordinary Q-learning; use a small value such as 1e-3)"),
        (args.reward_scale > 0, "--reward-scale must be > 0"),
        (args.total_timesteps >= 0, "--total-timesteps must be >= 0"),
        (args.num_envs >= 1, "--num-envs must be >= 1"),
        (args.batch_size >= 1, "--batch-size must be >= 1"),
        (args.buffer_size >= 1, "--buffer-size must be >= 1"),
        (args.batch_size <= args.buffer_size, f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}; lower it or raise --buffer-size"),
        (args.learning_starts >= 0, "--learning-starts must be >= 0"),
        (args.target_network_frequency >= 1, "--target-network-frequency must be >= 1"),
        (args.q_lr > 0 and args.policy_lr > 0, "--q-lr and --policy-lr must be > 0"),
        (args.hidden_size >= 1, "--hidden-size must be >= 1"),
        (args.value_samples >= 1, "--value-samples must be >= 1"),
        (args.svgd_particles >= 3, "--svgd-particles must be >= 3 (a fixed and an updated set)"),
        (0.0 < args.svgd_update_ratio < 1.0, "--svgd-update-ratio must be in (0, 1)"),
        (args.kernel_min_bandwidth > 0, "--kernel-min-bandwidth must be > 0"),
        (args.eval_every >= 0 and args.eval_episodes >= 1, "--eval-every must be >= 0 and --eval-episodes >= 1"),
        (args.goal_episodes >= 1, "--goal-episodes must be >= 1"),
        (args.log_every >= 1, "--log-every must be >= 1"),
        (args.checkpoint_every >= 0, "--checkpoint-every must be >= 0"),
        (not args.autotune, "--autotune is not available in soft Q-learning (no entropy target); set --alpha or --reward-scale"),
        (args.plot is None or args.env_id == "MultiGoal", "--plot draws the MultiGoal picture only; drop it or use --env-id MultiGoal"),
        (args.resume is None or args.eval_only is None, "--resume and --eval-only exclude each other; pass one"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return args


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device("cuda" if choice in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def start_wandb(args: Args, run_name: str, run_dir: str):
    if os.environ.get("WANDB_MODE", "") in ("disabled",):
        pass
    elif not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
        try:
            logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            logged_in = False
        if not logged_in:
            raise UsageError("--track: no Weights & Biases credentials; run `wandb login` or set WANDB_MODE=offline")
    try:
        import wandb
    except ImportError:
        raise UsageError("--track needs wandb: pip install wandb") from None
    return wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args), name=run_name,
                      dir=run_dir)


class MetricsLog:
    """metrics.jsonl (+ wandb): one JSON object per event with global_step and wall_time."""

    def __init__(self, path: str, start_time: float, wandb_run=None):
        self.file, self.start_time, self.wandb_run = open(path, "a"), start_time, wandb_run

    def write(self, global_step: int, metrics: dict) -> None:
        record = {"global_step": global_step, "wall_time": round(time.time() - self.start_time, 3), **metrics}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=global_step)

    def close(self) -> None:
        self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes the current step, saves, and exits 130."""

    def __init__(self):
        self.raised = False
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def final_evaluation(agent: SoftQAgent, args: Args, run_dir: str, seed: int) -> dict:
    """eval_return_* for summary.json; on MultiGoal, --goal-episodes sampled episodes with goal_reach_counts."""
    episodes = args.goal_episodes if args.env_id == "MultiGoal" else args.eval_episodes
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    result = evaluate(agent, args.env_id, episodes, seed, args.eval_stochastic, video_dir)
    summary = {"eval_return_mean": float(np.mean(result["returns"])), "eval_return_std": float(np.std(result["returns"])),
               "eval_episodes": episodes, "eval_stochastic": args.eval_stochastic}
    if args.env_id == "MultiGoal":
        summary["goal_reach_counts"] = goal_reach_counts(result["goals"])
        if args.plot:
            plot_multigoal(agent, result["paths"], args.plot, title=f"soft Q-learning, MultiGoal, seed {args.seed}: "
                           f"goals reached {summary['goal_reach_counts']} of {episodes}")
    return summary


def train(args: Args) -> int:
    """The whole run; returns the exit status (0, 1 for a non-finite loss, 130 when interrupted)."""
    start_time = time.time()
    if args.eval_only:
        state = load_checkpoint(args.eval_only, "--eval-only")
        saved = state["args"]
        for key in ("env_id", "seed", "hidden_size", "alpha", "reward_scale", "svgd_particles"):
            setattr(args, key, saved[key])
    observation_space, action_space = check_env(args.env_id)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    args = resolve_args(args, discrete)
    device = pick_device(args.device)
    if args.capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise UsageError("--capture-video needs moviepy: pip install moviepy") from None
    seed_everything(args.seed, args.torch_deterministic)
    obs_dim = int(observation_space.shape[0])
    shapes = {"obs_dim": obs_dim, "discrete": discrete, "actions": int(action_space.n) if discrete else int(action_space.shape[0]),
              "hidden_size": args.hidden_size}
    agent = SoftQAgent(args, obs_dim, action_space, device)

    if args.eval_only:
        check_shapes(state, shapes, "--eval-only", args.eval_only)
        agent.load_state_dict(state["agent"])
        run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}-eval__{args.seed}__{int(start_time)}"
        run_dir = os.path.join(args.output_dir, run_name)
        os.makedirs(run_dir, exist_ok=True)
        summary = {"global_step": state["global_step"], "checkpoint": args.eval_only, "train_sps": None, "episodes": 0,
                   **final_evaluation(agent, args, run_dir, args.seed + 10_000)}
        summary.update(wall_time_s=time.time() - start_time, run_dir=run_dir)
        write_json(os.path.join(run_dir, "summary.json"), summary)
        print(json.dumps(summary))
        return 0

    buffer = ReplayBuffer(args.buffer_size, obs_dim, () if discrete else action_space.shape,
                          torch.long if discrete else torch.float32, device)
    global_step, episodes = 0, 0
    if args.resume:
        state = load_checkpoint(args.resume, "--resume")
        check_shapes(state, shapes, "--resume", args.resume)
        agent.load_state_dict(state["agent"])
        set_rng_state(state["rng"])
        global_step, episodes = state["global_step"], state["episodes"]
        if "buffer" in state:
            buffer.load_state_dict(state["buffer"])
        run_dir = os.path.dirname(os.path.abspath(args.resume))
        run_name = os.path.basename(run_dir)
    else:
        run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(start_time)}"
        run_dir = os.path.join(args.output_dir, run_name)
    os.makedirs(run_dir, exist_ok=True)
    write_json(os.path.join(run_dir, "args.json"), asdict(args))
    checkpoint_path = os.path.join(run_dir, "checkpoint.pt")
    log = MetricsLog(os.path.join(run_dir, "metrics.jsonl"), start_time,
                     start_wandb(args, run_name, run_dir) if args.track else None)

    # A resumed run starts new episodes (the environment's state is not in the checkpoint).
    envs = make_vector_env(args.env_id, args.num_envs, args.seed + global_step)
    obs, _ = envs.reset(seed=[args.seed + global_step + i for i in range(args.num_envs)])
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    last_return, metrics = None, {}
    learning_start_step, learning_start_time = None, None
    next_eval = (global_step // args.eval_every + 1) * args.eval_every if args.eval_every else None
    next_log = (global_step // args.log_every + 1) * args.log_every
    next_checkpoint = (global_step // args.checkpoint_every + 1) * args.checkpoint_every if args.checkpoint_every else None
    progress = make_progress(args.total_timesteps, global_step)
    stop, status = StopFlag(), 0
    try:
        while global_step < args.total_timesteps and not stop.raised:
            # ---- act and store ----
            if global_step < args.learning_starts:
                env_actions = envs.action_space.sample()
                stored_actions = env_actions if discrete else (env_actions - agent.action_bias.cpu().numpy()) / agent.action_scale.cpu().numpy()
            else:
                env_actions, stored_actions = agent.act(obs)
            next_obs, rewards, terminations, truncations, infos = envs.step(env_actions)
            real_next_obs = next_obs.copy()
            done = terminations | truncations
            for i in np.flatnonzero(done):  # same-step autoreset: next_obs is already the reset observation
                real_next_obs[i] = infos["final_obs"][i]
            buffer.add(obs, stored_actions, rewards, real_next_obs, terminations)
            obs = next_obs
            global_step += args.num_envs
            episode_returns += rewards
            episode_lengths += 1
            for i in np.flatnonzero(done):
                episodes += 1
                last_return = float(episode_returns[i])
                log.write(global_step, {"charts/episodic_return": last_return, "charts/episodic_length": int(episode_lengths[i])})
                episode_returns[i], episode_lengths[i] = 0.0, 0

            # ---- learn ----
            if global_step >= args.learning_starts and buffer.size >= args.batch_size:
                if learning_start_step is None:
                    learning_start_step, learning_start_time = global_step, time.time()
                metrics = agent.update(*buffer.sample(args.batch_size))
                agent.updates += 1
                if agent.updates % args.target_network_frequency == 0:
                    agent.update_target()

            # ---- log, evaluate, checkpoint ----
            if global_step >= next_log:
                next_log += args.log_every
                values = {k: float(v) for k, v in metrics.items()}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    print(f"error: non-finite {bad[0]} at step {global_step}; the last good checkpoint (if any) is kept at "
                          f"{checkpoint_path}; lower --q-lr/--policy-lr or raise --alpha", file=sys.stderr)
                    status = 1
                    break
                sps = (global_step - learning_start_step) / max(time.time() - learning_start_time, 1e-9) if learning_start_step is not None else 0.0
                log.write(global_step, {**values, "losses/alpha": args.alpha, "charts/SPS": round(sps, 1)})
                report_progress(progress, global_step, args.log_every, sps, last_return)
            if next_eval is not None and global_step >= next_eval:
                next_eval += args.eval_every
                result = evaluate(agent, args.env_id, args.eval_episodes, args.seed + 10_000, args.eval_stochastic)
                event = {"eval/return_mean": float(np.mean(result["returns"])), "eval/return_std": float(np.std(result["returns"]))}
                if args.env_id == "MultiGoal":
                    event["eval/goals_reached"] = sum(1 for c in goal_reach_counts(result["goals"]) if c > 0)
                log.write(global_step, event)
            if next_checkpoint is not None and global_step >= next_checkpoint:
                next_checkpoint += args.checkpoint_every
                save_checkpoint(checkpoint_path, agent, args, global_step, episodes, buffer, shapes)
    finally:
        envs.close()
        if progress is not None:
            progress.close()
    try:  # a second signal during the final evaluation only sets the flag again: the summary is still written
        if status == 1:
            return 1
        save_checkpoint(checkpoint_path, agent, args, global_step, episodes, buffer, shapes)
        learning_time = time.time() - learning_start_time if learning_start_time else 0.0
        summary = {"global_step": global_step,
                   "train_sps": (global_step - learning_start_step) / learning_time if learning_time > 0 else None,
                   "episodes": episodes, "interrupted": stop.raised}
        final = final_evaluation(agent, args, run_dir, args.seed + 10_000)
        log.write(global_step, {"eval/return_mean": final["eval_return_mean"], "eval/return_std": final["eval_return_std"]})
        summary.update(final)
        summary.update(wall_time_s=time.time() - start_time, run_dir=run_dir)
        write_json(os.path.join(run_dir, "summary.json"), summary)
        print(f"{run_dir}: eval return {summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f}"
              + (f", goals reached {summary['goal_reach_counts']}" if "goal_reach_counts" in summary else ""), file=sys.stderr)
        return 130 if summary["interrupted"] else 0
    finally:
        stop.restore()
        log.close()


def write_json(path: str, data: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(temporary, path)


def make_progress(total: int, initial: int):
    """A tqdm bar on a terminal; None otherwise (then a plain line every --log-every steps)."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def report_progress(progress, global_step: int, log_every: int, sps: float, last_return: float | None) -> None:
    text = f"return {last_return:.1f}" if last_return is not None else "return n/a"
    if progress is None:
        print(f"step {global_step}  SPS {sps:.0f}  {text}", file=sys.stderr, flush=True)
    else:
        progress.update(global_step - progress.n)
        progress.set_postfix_str(f"SPS {sps:.0f}  {text}")


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------
def main(args: Args) -> None:
    try:
        status = train(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    sys.exit(status)


if __name__ == "__main__":
    main(tyro.cli(Args))
