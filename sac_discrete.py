"""Soft Actor-Critic for discrete actions, from vector or pixel observations.

Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings" (arXiv:1910.07207), on top of
SAC v2 (Haarnoja et al. 2018b: twin Q, target Q, learned temperature).
Follows ../shared/seeds/000_bce46c73146642c0.txt "Discrete SAC" (and "Soft Actor-Critic" for the twin Q,
the target networks and the temperature), in the form collected in ../shared/NOTES.md "Discrete SAC".

What changes from continuous SAC: the policy is a categorical distribution over |A| actions and each critic
outputs Q(s,·) for all actions at once, so every expectation over actions is an exact sum, π(·|s)ᵀ[...],
with no sampling and no reparameterization.

Observations are detected from the observation space: a flat vector gets an MLP; 2-D uint8 frames (Atari
`ALE/...` ids after the standard preprocessing, or any environment emitting grayscale frames) get the
Nature CNN, 4 stacked frames, and a replay buffer that stores each uint8 frame once.

Run `python sac_discrete.py --help` for every flag; the README section gives the measured results.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import netrc
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT_NAME = "sac_discrete"


@dataclass
class Args:
    exp_name: str = SCRIPT_NAME
    """name of this experiment, part of the run directory name"""
    seed: int = 1
    """seed of python random, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """torch.use_deterministic_algorithms(True): same seed on CPU gives identical metrics"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where networks and replay buffer live; auto = cuda when available"""
    env_id: str = "CartPole-v1"
    """gymnasium id with a Discrete action space (CartPole-v1, Acrobot-v1, LunarLander-v3, ALE/Pong-v5, ...)"""
    total_timesteps: int = 30_000
    """environment steps in total (all vector envs together); 30k solves CartPole-v1 (README section)"""
    num_envs: int = 1
    """parallel environments in a synchronous vector env"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions (CleanRL sac_atari); frames are stored once, so 1M Atari frames is ~6.6 GiB"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.01
    """target update rate θ̄ ← τθ + (1-τ)θ̄ every --target-network-frequency steps (tuned here; Atari: 1.0 = hard copy)"""
    batch_size: int = 64
    """transitions per gradient update (64: Christodoulou 2019 and CleanRL sac_atari)"""
    learning_starts: int = 1_000
    """uniform-random environment steps before learning starts (tuned here for CartPole; Atari: 20000)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy and of log α (Christodoulou 2019)"""
    q_lr: float = 1e-3
    """Adam learning rate of the twin critics (tuned here for CartPole, README; Christodoulou 2019: 3e-4)"""
    adam_eps: float = 1e-4
    """Adam epsilon (1e-4 in the discrete SAC reproductions and CleanRL sac_atari)"""
    update_frequency: int = 1
    """one gradient update every this many environment steps (Atari: 4)"""
    target_network_frequency: int = 1
    """environment steps between target updates (1 = Polyak every step; Atari: 8000 with --tau 1)"""
    alpha: float = 0.2
    """entropy temperature α: fixed value, or the initial value with --autotune"""
    autotune: bool = True
    """learn α by minimising the temperature loss towards the target entropy"""
    target_entropy_scale: float = 0.5
    """target entropy H̄ = scale · log|A| (paper 0.98, CleanRL 0.89; 0.5 measured best on CartPole, README)"""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of the MLPs used for vector observations"""
    q_loss: Literal["mse", "huber"] = "mse"
    """critic loss: ½(Q - y)² as in the notes, or Huber (smooth L1) which bounds the gradient of large errors"""
    frame_stack: int = 4
    """frames stacked for image observations (Mnih et al. 2015)"""
    terminal_on_life_loss: bool = False
    """Atari only: end a training episode when a life is lost (evaluation always plays full games)"""
    clip_rewards: bool = True
    """Atari only: store sign(reward) in the replay buffer; logged and evaluated scores stay unclipped"""
    track: bool = False
    """log metrics to Weights & Biases"""
    wandb_project_name: str = "maxent-rl"
    """Weights & Biases project"""
    wandb_entity: str | None = None
    """Weights & Biases entity (team); None = your default"""
    capture_video: bool = False
    """record the first greedy evaluation episode of each evaluation to {run_dir}/videos (needs moviepy)"""
    eval_every: int = 10_000
    """environment steps between evaluations (a final evaluation always runs); 0 = final only"""
    eval_episodes: int = 10
    """episodes per evaluation, played once greedily (argmax π) and once sampling from π"""
    output_dir: str = "runs"
    """directory under which the run directory is created"""
    checkpoint_every: int = 100_000
    """environment steps between checkpoints (one is always written at the end); 0 = end only"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints, so that --resume continues exactly"""
    resume: str | None = None
    """checkpoint.pt to continue training from"""
    eval_only: str | None = None
    """checkpoint.pt to evaluate (no training); combine with --capture-video to watch it"""
    log_every: int = 1_000
    """environment steps between loss logs, non-finite checks and plain progress lines"""
    compile: bool = False
    """wrap the gradient update in torch.compile (off: not faster for these small networks on CPU)"""


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# ----------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def make_env(args: Args, seed: int, for_evaluation: bool = False, video_dir: str | None = None):
    """One environment with the standard preprocessing; evaluation envs play full games without clipping."""

    def thunk():
        render = {"render_mode": "rgb_array"} if video_dir is not None else {}
        if is_atari(args.env_id):
            try:
                import ale_py
            except ImportError:
                raise UsageError(f"--env-id {args.env_id} needs ale-py: pip install ale-py") from None
            gym.register_envs(ale_py)
            # AtariPreprocessing does the frame skipping (max-pooling the last two frames), so the ALE must not.
            env = make_registered(args.env_id, frameskip=1, **render)
            try:
                import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
            except ImportError:
                raise UsageError(f"--env-id {args.env_id} needs OpenCV for the preprocessing: pip install opencv-python") from None
            env = gym.wrappers.AtariPreprocessing(
                env,
                noop_max=30,
                frame_skip=4,
                screen_size=84,
                terminal_on_life_loss=args.terminal_on_life_loss and not for_evaluation,
                grayscale_obs=True,
                scale_obs=False,
            )
        else:
            env = make_registered(args.env_id, **render)
        space = env.observation_space
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 2 and space.dtype == np.uint8:
            env = gym.wrappers.FrameStackObservation(env, args.frame_stack)
        if video_dir is not None:
            env = gym.wrappers.RecordVideo(
                env, video_dir, episode_trigger=lambda episode: episode % (2 * args.eval_episodes) == 0
            )
        env.action_space.seed(seed)
        return env

    return thunk


def make_registered(env_id: str, **kwargs):
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise UsageError(f"--env-id {env_id} needs an extra package: {error}") from None
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id} is not a registered gymnasium environment ({error})") from None


def make_vector_env(args: Args) -> gym.vector.SyncVectorEnv:
    """SAME_STEP autoreset: a done sub-env is reset inside step() and its true last obs is in infos["final_obs"]."""
    envs = gym.vector.SyncVectorEnv(
        [make_env(args, args.seed + i) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    check_spaces(args.env_id, envs.single_observation_space, envs.single_action_space)
    return envs


def check_spaces(env_id: str, observation_space, action_space) -> None:
    if isinstance(action_space, gym.spaces.Box):
        raise UsageError(
            f"--env-id {env_id} has a continuous (Box) action space; discrete SAC needs Discrete actions: "
            "use sac_continuous.py"
        )
    if not isinstance(action_space, gym.spaces.Discrete):
        raise UsageError(f"--env-id {env_id} has action space {action_space}; sac_discrete.py needs Discrete")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) not in (1, 3):
        raise UsageError(
            f"--env-id {env_id} has observation space {observation_space}; "
            "sac_discrete.py needs a flat Box vector or 2-D uint8 frames"
        )
    if len(observation_space.shape) == 3 and observation_space.dtype != np.uint8:
        raise UsageError(f"--env-id {env_id}: image observations must be uint8 frames, got {observation_space}")


def is_image_space(observation_space) -> bool:
    return len(observation_space.shape) == 3


# ----------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------


class EnsembleLinear(nn.Module):
    """`members` independent linear layers applied in one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # the nn.Linear default initialisation, per member
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def nature_cnn_output_size(frame_stack: int, height: int, width: int) -> int:
    with torch.no_grad():
        return nature_cnn(frame_stack, members=1)(torch.zeros(1, frame_stack, height, width)).shape[1]


def nature_cnn(frame_stack: int, members: int) -> nn.Sequential:
    """Mnih et al. 2015 convolutions; with members > 1 the stacks run side by side as grouped convolutions."""
    return nn.Sequential(
        nn.Conv2d(frame_stack, 32 * members, 8, stride=4),  # every member reads the same input
        nn.ReLU(),
        nn.Conv2d(32 * members, 64 * members, 4, stride=2, groups=members),
        nn.ReLU(),
        nn.Conv2d(64 * members, 64 * members, 3, stride=1, groups=members),
        nn.ReLU(),
        nn.Flatten(),
    )


class Actor(nn.Module):
    """Categorical policy: logits of π(·|s) (000 "Discrete SAC": π maps a state to [0, 1]^|A|)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.is_image = len(obs_shape) == 3
        if self.is_image:
            features = nature_cnn_output_size(*obs_shape)
            self.net = nn.Sequential(
                nature_cnn(obs_shape[0], members=1), nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, n_actions)
            )
        else:
            self.net = mlp([obs_shape[0], *hidden_sizes, n_actions])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if self.is_image else obs
        return self.net(x)


class TwinCritic(nn.Module):
    """Q_1(s,·), Q_2(s,·) in one call with stacked weights; returns shape (2, B, |A|)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.is_image = len(obs_shape) == 3
        if self.is_image:
            self.features = nature_cnn_output_size(*obs_shape)
            self.encoder = nature_cnn(obs_shape[0], members=2)
            sizes = [self.features, 512, n_actions]
        else:
            sizes = [obs_shape[0], *hidden_sizes, n_actions]
        self.layers = nn.ModuleList(EnsembleLinear(2, sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.is_image:
            # Grouped-conv output keeps each member's channels contiguous: (B, 2·C·h·w) -> (2, B, C·h·w).
            x = self.encoder(obs.float() / 255.0).view(obs.shape[0], 2, self.features).transpose(0, 1)
        else:
            x = obs.unsqueeze(0).expand(2, *obs.shape)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


# ----------------------------------------------------------------------------------------------------------
# The math (000 "Discrete SAC"; ../shared/NOTES.md "Discrete SAC"). Shapes: logits, Q(s,·): (B, |A|);
# every expectation over actions is an exact sum over the last axis, then a mean over the batch.
# ----------------------------------------------------------------------------------------------------------


def policy_probabilities(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """π(·|s) and log π(·|s) from logits; log π from log_softmax, never log(softmax + ε) (NOTES pitfall 8)."""
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.exp(), log_probs


def policy_entropy(probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """H(π(·|s)) = -π(·|s)ᵀ log π(·|s), per state (the expectation; NOTES error 2)."""
    return -(probs * log_probs).sum(-1)


def soft_state_value(
    next_probs: torch.Tensor, next_log_probs: torch.Tensor, next_target_q: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """V(s') = π(·|s')ᵀ[min_i Q̄_i(s',·) − α log π(·|s')], exact (000 "Discrete SAC" Eq. dsac.1). next_target_q: (2, B, |A|)."""
    return (next_probs * (next_target_q.min(dim=0).values - alpha * next_log_probs)).sum(-1)


def soft_q_target(
    reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + γ(1 − d)V(s') (000 "Soft Actor-Critic" Eq. sac.6). Only termination sets d = 1: a time limit bootstraps."""
    return reward + gamma * (1.0 - terminated) * next_value


def critic_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Σ_i E[½(Q_i(s,a) − y)²] over the twin critics (NOTES "SAC v2"); q_taken: (2, B), target: (B,).

    kind="huber" replaces ½e² by Huber(e) (quadratic for |e| ≤ 1, linear beyond), an option against Q blow-ups.
    """
    target = target.unsqueeze(0).expand_as(q_taken)
    if kind == "huber":
        return 2.0 * F.smooth_l1_loss(q_taken, target)
    return 2.0 * 0.5 * F.mse_loss(q_taken, target)  # mean over both critics × 2 = sum of the two critic losses


def actor_loss(probs: torch.Tensor, log_probs: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """J_π = E_s[π(·|s)ᵀ(α log π(·|s) − min_i Q_i(s,·))], q: (2, B, |A|), treated as a constant.

    000 "Discrete SAC" writes π(s)ᵀ[Q − α log π], the objective to *maximise*; we minimise its negative.
    """
    return (probs * (alpha * log_probs - q.min(dim=0).values.detach())).sum(-1).mean()


def temperature_loss(
    probs: torch.Tensor, log_probs: torch.Tensor, log_alpha: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """J(α) = E_s[π(·|s)ᵀ(−α(log π(·|s) + H̄))] (000 "Discrete SAC"), a function of α alone.

    Its gradient in log α is −α(H̄ − H(π)): α grows while the entropy is below the target H̄ and shrinks above.
    We optimise log α so α stays positive (NOTES pitfall 6); with Adam, using α or log α as the factor in front
    of (log π + H̄) makes no measurable difference (CleanRL PR #414), so the equation is kept as written.
    """
    return (probs.detach() * (-log_alpha.exp() * (log_probs.detach() + target_entropy))).sum(-1).mean()


def target_entropy_for(n_actions: int, scale: float) -> float:
    """H̄ = scale · log|A|: a fraction of the uniform policy's entropy (NOTES pitfall 7)."""
    return scale * math.log(n_actions)


# ----------------------------------------------------------------------------------------------------------
# Replay buffers (preallocated tensors on the device, sampled with torch.randint / torch.multinomial)
# ----------------------------------------------------------------------------------------------------------


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """Circular buffer of (s, a, r, s', terminated) for vector observations."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], device: torch.device):
        self.capacity, self.device = capacity, device
        self.obs = torch.zeros((capacity, *obs_shape), dtype=torch.float32, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.position, self.size = 0, 0

    def add(self, obs, next_obs, actions, rewards, terminated, done) -> None:
        """next_obs is the true next observation (the final one for a done sub-env); done is unused here."""
        n = len(actions)
        rows = torch.arange(self.position, self.position + n, device=self.device) % self.capacity
        self.obs[rows] = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        self.next_obs[rows] = torch.as_tensor(next_obs, dtype=torch.float32, device=self.device)
        self.actions[rows] = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        self.rewards[rows] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        self.terminated[rows] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        rows = torch.randint(0, self.size, (batch_size,), device=self.device)
        return Batch(self.obs[rows], self.actions[rows], self.rewards[rows], self.next_obs[rows], self.terminated[rows])

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("obs", "next_obs", "actions", "rewards", "terminated", "position", "size")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value.to(self.device) if torch.is_tensor(value) else value)


class FrameReplayBuffer:
    """Replay of stacked uint8 frames that stores each frame once (NOTES pitfall 12).

    Each environment writes its own stream of slots. Slot t holds the newest frame of s_t with a_t, r_t, d_t and
    how many steps s_t is into its episode (capped at stack - 1). The stack of s_t is rebuilt from slots t-3..t,
    repeating the episode's first frame where the episode is younger than the stack (FrameStackObservation's
    "reset" padding); s_{t+1} is rebuilt the same way from slot t+1. When an episode ends, its last frame stays
    in slot t+1 and the next episode starts at t+2, so every sampled s' is the true next observation.
    A slot can start a transition ("valid") only when all frames it reads are current; sampling is uniform
    over valid slots. Memory: capacity × (H·W + 21) bytes, e.g. 1M × 84 × 84 ≈ 6.6 GiB.
    """

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, int, int], device: torch.device):
        self.stack, height, width = obs_shape
        self.slots = capacity // num_envs
        self.num_envs, self.device = num_envs, device
        shape = (num_envs, self.slots)
        self.frames = torch.zeros((*shape, height, width), dtype=torch.uint8, device=device)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.rewards = torch.zeros(shape, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(shape, dtype=torch.float32, device=device)
        self.steps_into_episode = torch.zeros(shape, dtype=torch.uint8, device=device)
        self.valid = torch.zeros(shape, dtype=torch.float32, device=device)
        self.position = np.zeros(num_envs, dtype=np.int64)
        self.episode_step = np.zeros(num_envs, dtype=np.int64)
        # Offsets back from the newest frame, oldest first: s_t = frames[t-3], ..., frames[t].
        self.offsets = torch.arange(self.stack - 1, -1, -1, device=device)

    def add(self, obs, next_obs, actions, rewards, terminated, done) -> None:
        envs = torch.arange(self.num_envs, device=self.device)
        t = torch.as_tensor(self.position, device=self.device)
        next_t = (t + 1) % self.slots
        # Slots t-1 .. t+stack read frames t or t+1, about to be overwritten: only t-1 and t stay consistent.
        stale = (t.unsqueeze(1) + torch.arange(1, self.stack + 1, device=self.device)) % self.slots
        self.valid[envs.unsqueeze(1), stale] = 0.0
        cap = self.stack - 1
        self.frames[envs, t] = torch.as_tensor(obs[:, -1], device=self.device)
        self.steps_into_episode[envs, t] = torch.as_tensor(np.minimum(self.episode_step, cap), dtype=torch.uint8, device=self.device)
        self.actions[envs, t] = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        self.rewards[envs, t] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        self.terminated[envs, t] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        self.valid[envs, t] = 1.0
        # s_{t+1} goes in the next slot now; unless the episode ended, the next add() rewrites it unchanged.
        self.frames[envs, next_t] = torch.as_tensor(next_obs[:, -1], device=self.device)
        self.steps_into_episode[envs, next_t] = torch.as_tensor(np.minimum(self.episode_step + 1, cap), dtype=torch.uint8, device=self.device)
        done = np.asarray(done, dtype=bool)
        self.position = (self.position + np.where(done, 2, 1)) % self.slots
        self.episode_step = np.where(done, 0, self.episode_step + 1)

    def _stack(self, env: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        back = torch.minimum(self.offsets.unsqueeze(0), self.steps_into_episode[env, t].long().unsqueeze(1))
        return self.frames[env.unsqueeze(1), (t.unsqueeze(1) - back) % self.slots]

    def sample(self, batch_size: int) -> Batch:
        flat = torch.multinomial(self.valid.view(-1), batch_size, replacement=True)
        env, t = flat // self.slots, flat % self.slots
        obs, next_obs = self._stack(env, t), self._stack(env, (t + 1) % self.slots)
        return Batch(obs, self.actions[env, t], self.rewards[env, t], next_obs, self.terminated[env, t])

    def state_dict(self) -> dict:
        names = ("frames", "actions", "rewards", "terminated", "steps_into_episode", "valid", "position", "episode_step")
        return {name: getattr(self, name) for name in names}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value.to(self.device) if torch.is_tensor(value) else value)

    def start_new_episodes(self) -> None:
        """After --resume the environments restart: close every stream's episode at its pending last frame."""
        self.position = (self.position + 1) % self.slots
        self.episode_step[:] = 0

    def nbytes(self) -> int:
        tensors = (self.frames, self.actions, self.rewards, self.terminated, self.steps_into_episode, self.valid)
        return sum(x.numel() * x.element_size() for x in tensors)


# ----------------------------------------------------------------------------------------------------------
# The agent: networks, optimisers and one gradient update
# ----------------------------------------------------------------------------------------------------------


def make_adam(params, lr: float, eps: float) -> torch.optim.Optimizer:
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, eps=eps, foreach=True)


class Agent:
    """Actor, twin critics and their targets, log α, and the three optimisers."""

    def __init__(self, args: Args, obs_shape: tuple[int, ...], n_actions: int, device: torch.device):
        self.args, self.device, self.obs_shape, self.n_actions = args, device, tuple(obs_shape), n_actions
        self.actor = Actor(obs_shape, n_actions, args.hidden_sizes).to(device)
        self.critic = TwinCritic(obs_shape, n_actions, args.hidden_sizes).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(args.alpha), device=device, requires_grad=args.autotune)
        self.target_entropy = target_entropy_for(n_actions, args.target_entropy_scale)
        self.q_optimizer = make_adam(self.critic.parameters(), args.q_lr, args.adam_eps)
        self.actor_optimizer = make_adam(self.actor.parameters(), args.policy_lr, args.adam_eps)
        self.alpha_optimizer = make_adam([self.log_alpha], args.policy_lr, args.adam_eps) if args.autotune else None
        self.update = torch.compile(self._update) if args.compile else self._update

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Sample a ~ π(·|s) for a batch of observations (exploration during training)."""
        with torch.no_grad():
            logits = self.actor(torch.as_tensor(obs, device=self.device))
            return torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1).cpu().numpy()

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One step on the critics, then the actor, then α. Returns detached tensors (no host sync here)."""
        args = self.args
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_probs, next_log_probs = policy_probabilities(self.actor(batch.next_obs))
            next_value = soft_state_value(next_probs, next_log_probs, self.critic_target(batch.next_obs), alpha)
            target = soft_q_target(batch.rewards, batch.terminated, next_value, args.gamma)

        q_all = self.critic(batch.obs)
        q_taken = q_all.gather(2, batch.actions.view(1, -1, 1).expand(2, -1, 1)).squeeze(2)
        qf_loss = critic_loss(q_taken, target, args.q_loss)
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()

        # Fresh Q from the just-updated critics (NOTES pitfall 14); the actor does not backpropagate into them.
        with torch.no_grad():
            q_policy = self.critic(batch.obs)
        probs, log_probs = policy_probabilities(self.actor(batch.obs))
        policy_loss = actor_loss(probs, log_probs, q_policy, alpha)
        self.actor_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.actor_optimizer.step()

        if self.alpha_optimizer is not None:
            alpha_loss = temperature_loss(probs, log_probs, self.log_alpha, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
        else:
            alpha_loss = torch.zeros((), device=self.device)

        return {
            "losses/qf_loss": qf_loss.detach(),
            "losses/actor_loss": policy_loss.detach(),
            "losses/alpha": alpha,
            "losses/alpha_loss": alpha_loss.detach(),
            "losses/entropy": policy_entropy(probs, log_probs).mean().detach(),
            "losses/q_mean": q_taken.mean().detach(),
            "losses/q_max": q_all.max().detach(),
            "losses/target_mean": target.mean(),
        }

    def update_target(self) -> None:
        """θ̄ ← τθ + (1 − τ)θ̄ (000 "Soft Actor-Critic"); τ = 1 is a hard copy."""
        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.args.tau)

    def state_dict(self) -> dict:
        state = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "q_optimizer": self.q_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
        }
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None and "alpha_optimizer" in state:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])


# ----------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------


def evaluate(actor: Actor, env: gym.Env, episodes: int, seed: int, greedy: bool, device: torch.device) -> list[float]:
    """Returns of `episodes` full episodes: a = argmax π(·|s) if greedy (NOTES pitfall 10), else a ~ π(·|s).

    Sampling uses its own generator, so evaluating never changes the training random stream.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    returns = []
    obs, _ = env.reset(seed=seed)
    for episode in range(episodes):
        if episode > 0:
            obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                logits = actor(torch.as_tensor(np.asarray(obs)[None], device=device))
                if greedy:
                    action = logits.argmax(dim=-1)
                else:
                    action = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
            obs, reward, terminated, truncated, _ = env.step(int(action.item()))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def evaluate_both(actor: Actor, env: gym.Env, args: Args, device: torch.device) -> dict[str, float]:
    """Greedy and stochastic evaluation from the same start states; eval/return_mean is the greedy one."""
    seed = args.seed + 100_000
    greedy = evaluate(actor, env, args.eval_episodes, seed, greedy=True, device=device)
    stochastic = evaluate(actor, env, args.eval_episodes, seed, greedy=False, device=device)
    return {
        "eval/return_mean": float(np.mean(greedy)),
        "eval/return_std": float(np.std(greedy)),
        "eval/stochastic_return_mean": float(np.mean(stochastic)),
        "eval/stochastic_return_std": float(np.std(stochastic)),
    }


def make_eval_env(args: Args, run_dir: Path) -> gym.Env:
    video_dir = None
    if args.capture_video:
        video_dir = str(run_dir / "videos")
    env = make_env(args, args.seed + 100_000, for_evaluation=True, video_dir=video_dir)()
    check_spaces(args.env_id, env.observation_space, env.action_space)
    return env


# ----------------------------------------------------------------------------------------------------------
# Checkpoints, metrics, run directory
# ----------------------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic: write a temporary file, then os.replace, so a crash never destroys the previous checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, flag: str) -> dict:
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupted file
        raise UsageError(f"{flag} {path}: not a readable checkpoint ({type(error).__name__}); pass a checkpoint.pt written by sac_discrete.py") from None
    if not isinstance(payload, dict) or payload.get("script") != SCRIPT_NAME:
        found = payload.get("script") if isinstance(payload, dict) else None
        raise UsageError(f"{flag} {path}: checkpoint was written by {found or 'another program'}, not sac_discrete.py")
    return payload


def check_checkpoint_shape(payload: dict, obs_shape: tuple[int, ...], n_actions: int, args: Args, flag: str, path: str) -> None:
    saved = (tuple(payload["obs_shape"]), payload["n_actions"], tuple(payload["args"]["hidden_sizes"]))
    wanted = (tuple(obs_shape), n_actions, tuple(args.hidden_sizes))
    if saved != wanted:
        raise UsageError(
            f"{flag} {path}: checkpoint has (obs shape, actions, hidden sizes) {saved} but this run has {wanted}; "
            f"use --env-id {payload['args']['env_id']} and the same --hidden-sizes"
        )


def capture_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """metrics.jsonl (one JSON object per event) and, with --track, the same to Weights & Biases."""

    def __init__(self, run_dir: Path, start_time: float, wandb_run=None):
        self.file = open(run_dir / "metrics.jsonl", "a")
        self.start_time, self.wandb_run = start_time, wandb_run

    def log(self, global_step: int, metrics: dict) -> None:
        values = {name: float(value) for name, value in metrics.items()}
        record = {"global_step": int(global_step), "wall_time": time.time() - self.start_time, **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=int(global_step))

    def close(self) -> None:
        self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_wandb(args: Args, run_name: str, run_dir: Path):
    try:
        import wandb
    except ImportError:
        raise UsageError("--track needs wandb: pip install wandb") from None
    if not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY") and not has_wandb_netrc():
        raise UsageError("--track: no Weights & Biases credentials; run `wandb login` or set WANDB_MODE=offline")
    return wandb.init(
        project=args.wandb_project_name, entity=args.wandb_entity, config=dataclasses.asdict(args),
        name=run_name, dir=str(run_dir),
    )


def has_wandb_netrc() -> bool:
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def validate_args(args: Args) -> None:
    checks = [
        (0.0 <= args.gamma <= 1.0, f"--gamma {args.gamma} must be in [0, 1]"),
        (0.0 < args.tau <= 1.0, f"--tau {args.tau} must be in (0, 1]"),
        (args.batch_size >= 1, f"--batch-size {args.batch_size} must be at least 1"),
        (args.buffer_size >= 1, f"--buffer-size {args.buffer_size} must be at least 1"),
        (args.batch_size <= args.buffer_size, f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}; lower it or raise --buffer-size"),
        (args.num_envs >= 1, f"--num-envs {args.num_envs} must be at least 1"),
        (args.total_timesteps >= 0, f"--total-timesteps {args.total_timesteps} must be >= 0"),
        (args.learning_starts >= 0, f"--learning-starts {args.learning_starts} must be >= 0"),
        (args.update_frequency >= 1, f"--update-frequency {args.update_frequency} must be at least 1"),
        (args.target_network_frequency >= 1, f"--target-network-frequency {args.target_network_frequency} must be at least 1"),
        (args.alpha > 0.0, f"--alpha {args.alpha} must be > 0"),
        (0.0 <= args.target_entropy_scale < 1.0, f"--target-entropy-scale {args.target_entropy_scale} must be in [0, 1): the uniform policy's entropy log|A| is the maximum"),
        (args.eval_episodes >= 1, f"--eval-episodes {args.eval_episodes} must be at least 1"),
        (args.eval_every >= 0 and args.checkpoint_every >= 0, "--eval-every and --checkpoint-every must be >= 0"),
        (args.log_every >= 1, f"--log-every {args.log_every} must be at least 1"),
        (len(args.hidden_sizes) >= 1 and min(args.hidden_sizes) >= 1, f"--hidden-sizes {args.hidden_sizes} needs at least one positive width"),
        (args.frame_stack >= 1, f"--frame-stack {args.frame_stack} must be at least 1"),
        (args.policy_lr > 0 and args.q_lr > 0, "--policy-lr and --q-lr must be > 0"),
        (not (args.resume and args.eval_only), "--resume and --eval-only exclude each other"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if args.capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise UsageError("--capture-video needs moviepy: pip install moviepy") from None


def make_run_dir(args: Args) -> tuple[str, Path]:
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.output_dir) / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    return run_name, run_dir


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps({**summary, "run_dir": str(run_dir.resolve())}, indent=2))


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes the current step, saves, and exits 130."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every --log-every steps."""

    def __init__(self, total: int, initial: int):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.total, self.shown = total, initial

    def update(self, global_step: int, sps: float, last_return: float | None, plain_line: bool) -> None:
        text = f"SPS {sps:.0f} return {last_return if last_return is not None else float('nan'):.1f}"
        if self.bar is not None:
            self.bar.update(global_step - self.shown)
            self.bar.set_postfix_str(text, refresh=False)
        elif plain_line:
            print(f"step {global_step}/{self.total} {text}", flush=True)
        self.shown = global_step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]; used with vector envs that step N at a time."""
    return every > 0 and after // every > before // every


def stop_non_finite(name: str, value: float, global_step: int, checkpoint_path: Path, last_good: dict | None) -> None:
    """Save the last checkpoint taken while all losses were finite, name the culprit, exit 1."""
    if last_good is not None:
        save_checkpoint(checkpoint_path, last_good)
    where = f"last good checkpoint in {checkpoint_path}" if last_good is not None else "no checkpoint written"
    print(f"error: non-finite {name} = {value} at step {global_step}; {where}", file=sys.stderr)
    raise SystemExit(1)


def train(args: Args) -> dict:
    device = resolve_device(args.device)
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(args)
    obs_shape = envs.single_observation_space.shape
    n_actions = int(envs.single_action_space.n)
    image = is_image_space(envs.single_observation_space)
    if image and args.buffer_size // args.num_envs < 2 * args.frame_stack + 2:
        raise UsageError(f"--buffer-size {args.buffer_size} is too small for image observations: use at least {(2 * args.frame_stack + 2) * args.num_envs}")
    if image and args.buffer_size > 2**24:
        raise UsageError(f"--buffer-size {args.buffer_size}: the frame buffer samples with torch.multinomial, limited to 2**24 slots")

    agent = Agent(args, obs_shape, n_actions, device)
    if image:
        buffer = FrameReplayBuffer(args.buffer_size, args.num_envs, obs_shape, device)
    else:
        buffer = ReplayBuffer(args.buffer_size, obs_shape, device)

    global_step, episodes, pending_updates = 0, 0, 0
    if args.resume:
        payload = load_checkpoint(args.resume, "--resume")
        check_checkpoint_shape(payload, obs_shape, n_actions, args, "--resume", args.resume)
        agent.load_state_dict(payload["agent"])
        restore_rng_state(payload["rng"])
        global_step, episodes, pending_updates = payload["global_step"], payload["episodes"], payload["pending_updates"]
        if "buffer" in payload:
            buffer.load_state_dict(payload["buffer"])
            if image:
                buffer.start_new_episodes()

    run_name, run_dir = make_run_dir(args)
    eval_env = make_eval_env(args, run_dir)
    start_time = time.time()
    log = MetricsLog(run_dir, start_time, start_wandb(args, run_name, run_dir) if args.track else None)
    checkpoint_path = run_dir / "checkpoint.pt"

    def checkpoint_payload() -> dict:
        payload = {
            "script": SCRIPT_NAME, "args": dataclasses.asdict(args), "obs_shape": tuple(obs_shape),
            "n_actions": n_actions, "agent": agent.state_dict(), "rng": capture_rng_state(),
            "global_step": global_step, "episodes": episodes, "pending_updates": pending_updates,
        }
        if args.save_buffer:
            payload["buffer"] = buffer.state_dict()
        return payload

    # A resumed run cannot restore the simulator's internal state; it starts fresh episodes from a derived seed.
    obs, _ = envs.reset(seed=args.seed + global_step)
    envs.action_space.seed(args.seed + global_step)
    episode_return = np.zeros(args.num_envs)
    episode_length = np.zeros(args.num_envs, dtype=np.int64)
    last_return, last_eval, metrics = None, None, None
    last_good = copy.deepcopy(checkpoint_payload()) if not args.save_buffer else None
    learning_start_time, learning_start_step, eval_seconds = None, None, 0.0
    progress = Progress(args.total_timesteps, global_step)
    interrupted = False

    with StopRequest() as stop:
        while global_step < args.total_timesteps:
            if global_step < args.learning_starts:
                actions = envs.action_space.sample()
            else:
                try:
                    actions = agent.act(obs)
                except RuntimeError:  # π(·|s) is NaN: a loss diverged since the last log interval
                    values = {name: float(value) for name, value in (metrics or {}).items()}
                    bad = next((name for name, value in values.items() if not math.isfinite(value)), "policy logits")
                    stop_non_finite(bad, values.get(bad, float("nan")), global_step, checkpoint_path, last_good)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            done = terminated | truncated
            real_next_obs = next_obs.copy()
            for i in np.flatnonzero(done):
                real_next_obs[i] = infos["final_obs"][i]
            stored_rewards = np.sign(rewards) if image and is_atari(args.env_id) and args.clip_rewards else rewards
            buffer.add(obs, real_next_obs, actions, stored_rewards, terminated, done)
            obs = next_obs

            episode_return += rewards
            episode_length += 1
            before, global_step = global_step, global_step + args.num_envs
            for i in np.flatnonzero(done):
                episodes += 1
                last_return = float(episode_return[i])
                log.log(global_step, {"charts/episodic_return": last_return, "charts/episodic_length": episode_length[i]})
                episode_return[i], episode_length[i] = 0.0, 0

            if global_step > args.learning_starts:
                if learning_start_time is None:
                    learning_start_time, learning_start_step = time.time(), before
                pending_updates += global_step - max(before, args.learning_starts)
                while pending_updates >= args.update_frequency:
                    metrics = agent.update(buffer.sample(args.batch_size))
                    pending_updates -= args.update_frequency
                if crossed(before, global_step, args.target_network_frequency):
                    agent.update_target()

            if crossed(before, global_step, args.log_every):
                sps = global_step / max(time.time() - start_time, 1e-9)
                if metrics is not None:
                    values = {name: float(value) for name, value in metrics.items()}
                    for name in ("losses/qf_loss", "losses/actor_loss", "losses/alpha_loss", "losses/alpha"):
                        if not math.isfinite(values[name]):
                            stop_non_finite(name, values[name], global_step, checkpoint_path, last_good)
                    log.log(global_step, {**values, "charts/SPS": sps})
                    if not args.save_buffer:
                        last_good = copy.deepcopy(checkpoint_payload())
                progress.update(global_step, sps, last_return, plain_line=True)
            elif progress.bar is not None:
                progress.update(global_step, global_step / max(time.time() - start_time, 1e-9), last_return, plain_line=False)

            if crossed(before, global_step, args.eval_every) and global_step < args.total_timesteps:
                eval_start = time.time()
                last_eval = evaluate_both(agent.actor, eval_env, args, device)
                eval_seconds += time.time() - eval_start
                log.log(global_step, last_eval)

            if crossed(before, global_step, args.checkpoint_every):
                save_checkpoint(checkpoint_path, checkpoint_payload())

            if stop.requested:
                interrupted = True
                break

    progress.close()
    train_seconds = (time.time() - learning_start_time - eval_seconds) if learning_start_time else 0.0
    train_sps = (global_step - learning_start_step) / train_seconds if train_seconds > 0 else 0.0
    save_checkpoint(checkpoint_path, checkpoint_payload())
    if not interrupted:
        last_eval = evaluate_both(agent.actor, eval_env, args, device)
        log.log(global_step, last_eval)
    eval_env.close()
    envs.close()
    log.close()
    summary = {
        "global_step": global_step,
        "train_sps": train_sps,
        "eval_return_mean": last_eval["eval/return_mean"] if last_eval else None,
        "eval_return_std": last_eval["eval/return_std"] if last_eval else None,
        "eval_stochastic_return_mean": last_eval["eval/stochastic_return_mean"] if last_eval else None,
        "eval_stochastic_return_std": last_eval["eval/stochastic_return_std"] if last_eval else None,
        "episodes": episodes,
        "wall_time_s": time.time() - start_time,
        "interrupted": interrupted,
    }
    write_summary(run_dir, summary)
    if interrupted:
        print(f"interrupted at step {global_step}; checkpoint and summary written to {run_dir}", file=sys.stderr)
        raise SystemExit(130)
    return {**summary, "run_dir": str(run_dir)}


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-only: rebuild the policy from a checkpoint and evaluate it (greedy and stochastic)."""
    payload = load_checkpoint(args.eval_only, "--eval-only")
    saved = payload["args"]
    args = dataclasses.replace(
        args, env_id=saved["env_id"], hidden_sizes=tuple(saved["hidden_sizes"]), frame_stack=saved["frame_stack"]
    )
    device = resolve_device(args.device)
    seed_everything(args.seed, args.torch_deterministic)
    run_name, run_dir = make_run_dir(args)
    start_time = time.time()
    env = make_eval_env(args, run_dir)
    check_checkpoint_shape(payload, env.observation_space.shape, int(env.action_space.n), args, "--eval-only", args.eval_only)
    actor = Actor(env.observation_space.shape, int(env.action_space.n), args.hidden_sizes).to(device)
    actor.load_state_dict(payload["agent"]["actor"])
    log = MetricsLog(run_dir, start_time, start_wandb(args, run_name, run_dir) if args.track else None)
    results = evaluate_both(actor, env, args, device)
    log.log(payload["global_step"], results)
    env.close()
    log.close()
    summary = {
        "global_step": payload["global_step"],
        "train_sps": 0.0,
        "eval_return_mean": results["eval/return_mean"],
        "eval_return_std": results["eval/return_std"],
        "eval_stochastic_return_mean": results["eval/stochastic_return_mean"],
        "eval_stochastic_return_std": results["eval/stochastic_return_std"],
        "episodes": 0,
        "wall_time_s": time.time() - start_time,
        "checkpoint": args.eval_only,
    }
    write_summary(run_dir, summary)
    return {**summary, "run_dir": str(run_dir)}


def main(args: Args) -> dict:
    validate_args(args)
    if args.eval_only:
        return evaluate_checkpoint(args)
    return train(args)


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
