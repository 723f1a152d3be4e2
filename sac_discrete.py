"""Soft Actor-Critic for discrete actions, from vector or pixel observations.

Papers
- Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings", arXiv:1910.07207 (§3; Eq. 10 soft value,
  Eq. 11 temperature loss, Eq. 12 policy loss; Alg. 1).
- Haarnoja, Zhou, Hartikainen, et al. 2018b, "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905
  (twin Q, target Q, Eq. 5 Q loss, Eq. 18 temperature loss).
- Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature 518 (Nature CNN, Atari
  preprocessing).
Theory: docs/sac_discrete.md (equations DSAC-1 ... DSAC-11). Implementation traps: docs/pitfalls.md.

What changes from continuous SAC: the policy is a categorical distribution over |A| actions and each critic outputs
Q(s,·) for all actions at once, so every expectation over actions is an exact sum, π(·|s)ᵀ[...], with no sampling
and no reparameterization. Observations are detected from the observation space: a flat vector gets an MLP; 2-D uint8
frames (Atari `ALE/...` ids after the standard preprocessing, or any environment emitting grayscale frames) get the
Nature CNN, stacked frames, and a replay buffer that stores each uint8 frame once.
Read top to bottom: the settings, the environments, the math, the networks, the replay buffers, one gradient step, the
training loop, evaluation; below the "Plumbing" banner is only bookkeeping (run directory, checkpoints, errors).

Run:  python sac_discrete.py                                    # CartPole-v1 (README: measured results)
      python sac_discrete.py --env-id MsPacmanNoFrameskip-v4         # Atari 100k, the paper's setting (PRESETS)
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

SCRIPT = "sac_discrete"


@dataclass
class Args:
    # The algorithm
    env_id: str = "CartPole-v1"
    """gymnasium id with Discrete actions (CartPole-v1, PongNoFrameskip-v4, ...); your own: module:Env-v0"""
    total_timesteps: int | None = None
    """environment steps, all vector envs together (default from PRESETS: vectors 30k; pixels 100k, the paper)"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv)"""
    buffer_size: int | None = None
    """replay capacity in transitions (default from PRESETS: vectors 1M; pixels 100k, stored once: 0.7 GiB)"""
    gamma: float = 0.99
    """discount factor (papers: 0.99)"""
    tau: float | None = None
    """Polyak rate of the target critics (default from PRESETS: vectors 0.01, tuned here; pixels 1, a hard copy)"""
    batch_size: int = 64
    """minibatch size (64: Christodoulou 2019 and CleanRL sac_atari)"""
    learning_starts: int | None = None
    """uniformly random actions for this many environment steps first (default from PRESETS: vectors 1k; pixels 20k)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor (papers: 3e-4)"""
    q_lr: float | None = None
    """Adam learning rate of the critics and of log alpha (default from PRESETS: vectors 1e-3, tuned; pixels 3e-4)"""
    adam_eps: float | None = None
    """Adam epsilon (default from PRESETS: vectors 1e-4, as CleanRL and the author; pixels 1e-8: 1e-4 stalled ours)"""
    update_frequency: int | None = None
    """one gradient step every this many environment steps (default from PRESETS: vectors 1; pixels 4, the paper)"""
    target_network_frequency: int | None = None
    """gradient steps between target updates (default from PRESETS: vectors 1; pixels 2000, 8000 env steps)"""
    alpha: float = 0.2
    """temperature: the fixed value, or the initial one with --autotune"""
    autotune: bool = True
    """learn alpha by minimising the temperature loss (DSAC-8) towards the target entropy"""
    target_entropy_scale: float | None = None
    """H-bar = scale * log|A| (default from PRESETS: vectors 0.25, measured on three tasks; pixels 0.98, the paper)"""
    twin_q: Literal["min", "mean"] | None = None
    """Q̂ of the twin critics (default from PRESETS: vectors mean, as SD-SAC, min never solved Acrobot; pixels min)"""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of the MLPs used for vector observations"""
    frame_stack: int = 4
    """frames stacked for image observations (Mnih et al. 2015)"""
    terminal_on_life_loss: bool = True
    """Atari only: a lost life ends the episode for the update (DQN, CleanRL, SB3); scores count whole games"""
    clip_rewards: bool = True
    """Atari only: store sign(reward) in the replay buffer; logged and evaluated scores stay unclipped"""
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
    eval_every: int = 10_000
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

# Defaults that depend on the observations, filled into the None fields above by `with_defaults`. "vector" was tuned
# here on CartPole-v1, its twin_q on Acrobot-v1, its target entropy on these two and LunarLander-v3; "pixels" is the
# discrete SAC paper's Atari setting (Christodoulou 2019, Table 1), measured here on three games
# (benchmarks/README.md), with Adam's eps 1e-8 (docs/pitfalls.md#adam-eps-and-init).
PRESETS = {
    "vector": dict(total_timesteps=30_000, buffer_size=1_000_000, learning_starts=1_000, update_frequency=1, tau=0.01,
                   target_network_frequency=1, q_lr=1e-3, adam_eps=1e-4, target_entropy_scale=0.25,
                   twin_q="mean"),
    "pixels": dict(total_timesteps=100_000, buffer_size=100_000, learning_starts=20_000, update_frequency=4, tau=1.0,
                   target_network_frequency=2_000, q_lr=3e-4, adam_eps=1e-8, target_entropy_scale=0.98,
                   twin_q="min"),
}


# ----------------------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------------------
def is_atari(env_id: str) -> bool:
    """Both id families: ALE/Game-v5 (sticky actions 0.25, the protocol of Machado et al. 2018) and GameNoFrameskip-v4
    (no sticky actions: the protocol of DQN, of the discrete SAC paper and of CleanRL)."""
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


class AtariLives(gym.Wrapper):
    """A game goes on across lives: info["life_lost"] marks the step that lost one, which the loop stores as terminal
    for the update (--terminal-on-life-loss), while the episode, its return and the reset stay those of the game.
    Where the game waits for FIRE to launch (Breakout), FIRE is pressed after a reset and after a lost life."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.fire = "FIRE" in env.unwrapped.get_action_meanings()
        self.lives = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.fire:
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = info.get("lives", 0)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives", 0)
        info["life_lost"] = lives < self.lives and not (terminated or truncated)
        self.lives = lives
        if info["life_lost"] and self.fire:
            obs, more_reward, terminated, truncated, info = self.env.step(1)
            reward, info["life_lost"], self.lives = reward + more_reward, True, info.get("lives", 0)
        return obs, reward, terminated, truncated, info


def make_env(args: Args, render_mode: str | None = None) -> gym.Env:
    """One environment with the standard preprocessing, checked: this script needs Discrete actions and observations
    that are flat vectors or 2-D uint8 frames. Evaluation environments play full games. Atari: no-op starts, frame skip
    4 with max-pooling, 84x84 grayscale (Mnih et al. 2015); frames are then stacked."""
    env_id = args.env_id
    kwargs = {"render_mode": render_mode} if render_mode else {}
    if is_atari(env_id):
        try:
            import ale_py
        except ImportError:
            raise UsageError(f"--env-id {env_id} needs ale-py: pip install ale-py") from None
        gym.register_envs(ale_py)
        kwargs["frameskip"] = 1  # AtariPreprocessing does the frame skipping (max-pooling the last two frames)
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id}: {error}") from None
    except ImportError as error:  # an extra, or the module of a module:Env-v0 id
        raise UsageError(f"--env-id {env_id} needs a missing package ({error})") from None
    if is_atari(env_id):
        if not importable("cv2"):  # AtariPreprocessing resizes with OpenCV
            raise UsageError(f"--env-id {env_id} needs OpenCV for the preprocessing: pip install opencv-python")
        # Its own terminal_on_life_loss would end the game (the vector env then resets it): AtariLives instead.
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                                              scale_obs=False, terminal_on_life_loss=False)
        env = AtariLives(env)  # docs/pitfalls.md#atari-life-loss
    if isinstance(env.action_space, gym.spaces.Box):
        raise UsageError(f"--env-id {env_id} has continuous (Box) actions: use sac_continuous.py (this script needs "
                         "Discrete actions)")
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise UsageError(f"--env-id {env_id} has action space {env.action_space}; sac_discrete.py needs Discrete")
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (1, 2) or (
            len(space.shape) == 2 and space.dtype != np.uint8):
        raise UsageError(f"--env-id {env_id} has observation space {space}; "
                         "sac_discrete.py needs a flat Box vector or 2-D uint8 frames")
    if len(space.shape) == 2:
        env = gym.wrappers.FrameStackObservation(env, args.frame_stack)
    return env


def is_image(obs_shape: tuple[int, ...]) -> bool:
    return len(obs_shape) == 3


def make_vector_env(args: Args) -> gym.vector.VectorEnv:
    """--num-envs copies of make_env with SAME_STEP autoreset: an episode's last observation comes in info["final_obs"]
    on the step it ends, so no stored transition crosses an episode boundary (docs/pitfalls.md#vector-autoreset)."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args)] * args.num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def terminal_for_update(terminations: np.ndarray, infos: dict, life_loss: bool) -> np.ndarray:
    """d of each stored transition: the episode terminated, or (Atari with --terminal-on-life-loss) a life was lost.
    A time-limit truncation is not terminal (DSAC-4)."""
    return terminations | infos["life_lost"] if life_loss and "life_lost" in infos else terminations


def true_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s' of each transition: next_obs, except where an episode just ended, whose last observation is in final_obs
    (next_obs there already starts the next episode)."""
    real_next_obs = next_obs.copy()
    if "_final_obs" in infos:
        for i in np.flatnonzero(infos["_final_obs"]):
            real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs


# ----------------------------------------------------------------------------------------------------------------------
# The math: each target and loss of docs/sac_discrete.md as a function of tensors. Logits and Q(s,·) are (B, |A|), the
# twin Q (2, B, |A|); every expectation over actions is an exact sum over the last axis, then a mean over the batch
# (docs/pitfalls.md#discrete-expectations).
# ----------------------------------------------------------------------------------------------------------------------
def policy_probabilities(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """π(·|s) and log π(·|s) = log_softmax(logits), never log(softmax + ε), which is biased (DSAC-1)."""
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.exp(), log_probs


def policy_entropy(probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """H(π(·|s)) = −π(·|s)ᵀ log π(·|s) per state, the exact expectation (DSAC-2)."""
    return -(probs * log_probs).sum(-1)


def twin_q_estimate(q: torch.Tensor, how: str) -> torch.Tensor:
    """Q̂(s,·) from the twin critics, (2, B, |A|) -> (B, |A|), action by action: min_i Q_i, the paper's clipped double
    Q, or ½ Σ_i Q_i, the double average of SD-SAC (Zhou et al. 2022, arXiv:2209.10081), which is not pessimistic
    (DSAC-12; docs/sac_discrete.md#twin-critics-min-or-mean)."""
    return q.min(dim=0).values if how == "min" else q.mean(dim=0)


def soft_state_value(next_probs: torch.Tensor, next_log_probs: torch.Tensor, next_q: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """V(s') = π(·|s')ᵀ[Q̂(s',·) − α log π(·|s')], an exact sum (DSAC-3); Christodoulou 2019, Eq. 10.
    Q̂ is the target critics' twin_q_estimate, (B, |A|)."""
    return (next_probs * (next_q - alpha * next_log_probs)).sum(-1)


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor,
                  gamma: float) -> torch.Tensor:
    """y = r + γ(1 − d) V(s') (DSAC-4); 2018b, Eq. 5 plus the done mask it omits. d is `terminated` only: a
    time-limit truncation is not part of the MDP, so it bootstraps (docs/pitfalls.md#truncation-vs-termination)."""
    return reward + gamma * (1.0 - terminated) * next_value


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q = Σ_i E[½(Q_i(s,a) − y)²] over the twin critics (DSAC-5); 2018b, Eq. 5. q: (2, B), target: (B,)."""
    # A (B, 1) target would broadcast to (2, B, B) without an error: docs/pitfalls.md#silent-broadcasting.
    assert target.shape == q.shape[1:], f"target {tuple(target.shape)} against Q {tuple(q.shape)}"
    return 0.5 * ((q - target) ** 2).mean(dim=1).sum()


def actor_loss(probs: torch.Tensor, log_probs: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """J_π = E_s[π(·|s)ᵀ(α log π(·|s) − Q̂(s,·))] (DSAC-6); Christodoulou 2019, Eq. 12.
    Q̂ is the online critics' twin_q_estimate, (B, |A|), a constant."""
    return (probs * (alpha * log_probs - q.detach())).sum(-1).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """J(α) = E_s[π(·|s)ᵀ(−α(log π(·|s) + H̄))] (DSAC-8); Christodoulou 2019, Eq. 11; 2018b, Eq. 18.
    log_prob is the exact expectation π(·|s)ᵀ log π(·|s) = −H(π(·|s)) per state. Written, as in
    sac_continuous.py, with log α in place of α: the gradient has the same sign, α stays positive, and the step does
    not shrink as α does (docs/pitfalls.md#temperature-log-alpha). Entropy below the target makes α grow."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def target_entropy_for(n_actions: int, scale: float) -> float:
    """H̄ = c · log|A|, a fraction of the uniform policy's entropy (DSAC-9): the paper's c = 0.98 keeps π near
    uniform (with 2 actions the better one gets at most 58.3%), so α grows until π is nearly uniform; 0.25 here for
    vector observations, 0.89 in CleanRL on Atari (docs/pitfalls.md#discrete-target-entropy)."""
    return scale * math.log(n_actions)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← τθ + (1 − τ)θ̄ (DSAC-10); 2018b, Alg. 1. τ = 1 is a hard copy."""
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
        return torch.baddbmm(self.bias, x, self.weight)


def nature_cnn(frame_stack: int, members: int) -> nn.Sequential:
    """The convolutions of Mnih et al. 2015; with members > 1 the stacks run side by side as grouped convolutions."""
    return nn.Sequential(
        nn.Conv2d(frame_stack, 32 * members, 8, stride=4),  # every member reads the same input
        nn.ReLU(),
        nn.Conv2d(32 * members, 64 * members, 4, stride=2, groups=members),
        nn.ReLU(),
        nn.Conv2d(64 * members, 64 * members, 3, stride=1, groups=members),
        nn.ReLU(),
        nn.Flatten(),
    )


def he_init_(network: nn.Module) -> nn.Module:
    """He initialisation: weights N(0, 2/fan_in), the ReLU gain, and zero biases, for the image networks (as CleanRL's
    sac_atari.py and the discrete SAC reproductions). PyTorch's default draws weights √6 times smaller, so the
    features shrink layer by layer and the actor's gradients fall far below Adam's eps = 1e-4, which then scales its
    steps down: the policy learns little more than a state-independent bias (docs/pitfalls.md#adam-eps-and-init).
    He initialisation alone does not fix that on Atari at 100k steps; it needs --adam-eps 1e-8 as well."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # fan_in counts a group's own inputs only
            nn.init.zeros_(module.bias)
        elif isinstance(module, EnsembleLinear):
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / module.weight.shape[1]))
            nn.init.zeros_(module.bias)
    return network


def scaled_frames(obs: torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, C, H, W) -> floats in [0, 1], laid out channels-last (NHWC) in memory, where plain
    `obs.float() / 255` keeps NCHW: same values, same networks, but oneDNN's convolutions run faster on NHWC
    (benchmarks/atari_update.py times one update both ways)."""
    return obs.contiguous(memory_format=torch.channels_last).float() / 255.0


def nature_cnn_output_size(frame_stack: int, height: int, width: int) -> int:
    with torch.no_grad():
        return nature_cnn(frame_stack, members=1)(torch.zeros(1, frame_stack, height, width)).shape[1]


class TwinQ(nn.Module):
    """Q_1(s,·) and Q_2(s,·) ∈ R^|A|, all actions in one pass, both critics in the same matmuls: (2, B, |A|)
    (DSAC-3); Christodoulou 2019, §3."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.is_image = is_image(obs_shape)
        if self.is_image:
            self.features = nature_cnn_output_size(*obs_shape)
            self.encoder = nature_cnn(obs_shape[0], members=2)
            sizes = (self.features, 512)
        else:
            sizes = (obs_shape[0], *hidden_sizes)
        self.hidden = nn.ModuleList(EnsembleLinear(2, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.out = EnsembleLinear(2, sizes[-1], n_actions)
        if self.is_image:
            he_init_(self)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.is_image:
            # Grouped-conv output keeps each member's channels contiguous: (B, 2·C·h·w) -> (2, B, C·h·w).
            x = self.encoder(scaled_frames(obs)).view(obs.shape[0], 2, self.features).transpose(0, 1)
        else:
            x = obs.unsqueeze(0).expand(2, *obs.shape)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class Actor(nn.Module):
    """The logits of the categorical policy π(·|s) (DSAC-1); Christodoulou 2019, §3."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.is_image = is_image(obs_shape)
        if self.is_image:
            features = nature_cnn_output_size(*obs_shape)
            self.net = he_init_(nn.Sequential(
                nature_cnn(obs_shape[0], members=1), nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, n_actions)
            ))
        else:
            self.net = mlp(obs_shape[0], hidden_sizes, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(scaled_frames(obs) if self.is_image else obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s) for acting (DSAC-1)."""
        return torch.multinomial(F.softmax(self(obs), dim=-1), 1).squeeze(1)


class Agent(nn.Module):
    """Every learned tensor, so one state_dict checkpoints them all."""

    def __init__(self, args: Args, obs_shape: tuple[int, ...], n_actions: int):
        super().__init__()
        self.actor = Actor(obs_shape, n_actions, args.hidden_sizes)
        self.critic = TwinQ(obs_shape, n_actions, args.hidden_sizes)
        self.critic_target = TwinQ(obs_shape, n_actions, args.hidden_sizes)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(args.alpha)), requires_grad=bool(args.autotune))


# ----------------------------------------------------------------------------------------------------------------------
# Replay buffers: preallocated tensors on the training device, sampled with torch.randint / torch.multinomial
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

    def add(self, obs, actions, rewards, next_obs, terminated, done=None) -> None:
        """Add one transition per environment (`done` is for the frame buffer: each row here holds its own s')."""
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


class FrameReplayBuffer:
    """Replay of stacked uint8 frames that stores each frame once (docs/pitfalls.md#frame-once-replay).

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
        self.filled = 0  # slots ever written, in the stream that has written most: what a checkpoint must hold
        # Offsets back from the newest frame, oldest first: s_t = frames[t-3], ..., frames[t].
        self.offsets = torch.arange(self.stack - 1, -1, -1, device=device)

    def add(self, obs, actions, rewards, next_obs, terminated, done) -> None:
        """Add one transition per environment; `done` (terminated or truncated) ends the stream's episode."""
        envs = torch.arange(self.num_envs, device=self.device)
        t = torch.as_tensor(self.position, device=self.device)
        next_t = (t + 1) % self.slots
        # Slots t-1 .. t+stack read frames t or t+1, about to be overwritten: only t-1 and t stay consistent.
        stale = (t.unsqueeze(1) + torch.arange(1, self.stack + 1, device=self.device)) % self.slots
        self.valid[envs.unsqueeze(1), stale] = 0.0
        cap = self.stack - 1
        self.frames[envs, t] = torch.as_tensor(obs[:, -1], device=self.device)
        self.steps_into_episode[envs, t] = torch.as_tensor(np.minimum(self.episode_step, cap), dtype=torch.uint8,
                                                           device=self.device)
        self.actions[envs, t] = torch.as_tensor(actions, dtype=torch.long, device=self.device)
        self.rewards[envs, t] = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        self.terminated[envs, t] = torch.as_tensor(terminated, dtype=torch.float32, device=self.device)
        self.valid[envs, t] = 1.0
        # s_{t+1} goes in the next slot now; unless the episode ended, the next add() rewrites it unchanged.
        self.frames[envs, next_t] = torch.as_tensor(next_obs[:, -1], device=self.device)
        self.steps_into_episode[envs, next_t] = torch.as_tensor(np.minimum(self.episode_step + 1, cap),
                                                                dtype=torch.uint8, device=self.device)
        done = np.asarray(done, dtype=bool)
        self.filled = min(self.slots, max(self.filled, int(self.position.max()) + 2))
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

    def stores(self) -> dict[str, torch.Tensor]:
        names = ("frames", "actions", "rewards", "terminated", "steps_into_episode", "valid")
        return {name: getattr(self, name) for name in names}

    def state_dict(self) -> dict:
        """The slots written so far only."""
        return {**{name: store[:, : self.filled].clone().cpu() for name, store in self.stores().items()},
                "filled": self.filled, "position": torch.from_numpy(self.position.copy()),
                "episode_step": torch.from_numpy(self.episode_step.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.filled = state["filled"]
        for name, store in self.stores().items():
            store[:, : self.filled].copy_(state[name])
        self.position, self.episode_step = state["position"].numpy().copy(), state["episode_step"].numpy().copy()

    def start_new_episodes(self) -> None:
        """After --resume the environments restart: close every stream's episode at its pending last frame."""
        self.position = (self.position + 1) % self.slots
        self.episode_step[:] = 0


def make_buffer(args: Args, obs_shape: tuple[int, ...], device: torch.device) -> ReplayBuffer | FrameReplayBuffer:
    """The frame buffer for image observations, the plain one otherwise."""
    if not is_image(obs_shape):
        return ReplayBuffer(args.buffer_size, obs_shape, (), torch.long, device)
    if args.buffer_size // args.num_envs < 2 * args.frame_stack + 2:
        raise UsageError(f"--buffer-size {args.buffer_size} is too small for image observations: use at least "
                         f"{(2 * args.frame_stack + 2) * args.num_envs}")
    if args.buffer_size > 2**24:
        raise UsageError(f"--buffer-size {args.buffer_size}: the frame buffer samples with torch.multinomial, "
                         "limited to 2**24 slots")
    return FrameReplayBuffer(args.buffer_size, args.num_envs, obs_shape, device)


# ----------------------------------------------------------------------------------------------------------------------
# One gradient step
# ----------------------------------------------------------------------------------------------------------------------
class Learner:
    """The gradient steps, called every --update-frequency environment steps; nothing here synchronises with the host.
    The losses are pure tensor functions; the optimizer steps follow."""

    def __init__(self, agent: Agent, args: Args, target_entropy: float):
        self.agent, self.args = agent, args
        self.target_entropy = target_entropy
        # One kernel per optimizer step, in place of torch's loop over the tensors: 6-9% of a SAC step (ablation.md).
        adam = {"eps": args.adam_eps, "fused": True}
        self.q_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=args.q_lr, **adam)
        self.actor_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.policy_lr, **adam)
        self.alpha_optimizer = torch.optim.Adam([agent.log_alpha], lr=args.q_lr, **adam)
        # The optimizers of the policy step, and the parameters its one backward pass computes gradients for.
        self.policy_optimizers = [self.actor_optimizer] + ([self.alpha_optimizer] if args.autotune else [])
        self.policy_params = [p for optimizer in self.policy_optimizers for group in optimizer.param_groups
                              for p in group["params"]]
        self.gradient_steps = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        names = ["q_optimizer", "actor_optimizer", "alpha_optimizer"]
        return {name: getattr(self, name) for name in names}

    def critic_losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """J_Q (DSAC-5) towards y (DSAC-4), with the exact soft value of s' under the target critics (DSAC-3)."""
        agent, args = self.agent, self.args
        alpha = agent.log_alpha.detach().exp()
        with torch.no_grad():
            next_probs, next_log_probs = policy_probabilities(agent.actor(batch.next_obs))
            next_q = twin_q_estimate(agent.critic_target(batch.next_obs), args.twin_q)
            next_value = soft_state_value(next_probs, next_log_probs, next_q, alpha)
            target = soft_q_target(batch.rewards, batch.terminated, next_value, args.gamma)
        q_all = agent.critic(batch.obs)
        q = q_all.gather(2, batch.actions.view(1, -1, 1).expand(2, -1, 1)).squeeze(2)
        loss = critic_loss(q, target)
        return loss, {"losses/qf_loss": loss.detach(), "losses/q_mean": q.detach().mean(),
                      "losses/q_max": q_all.detach().max(), "losses/target_mean": target.mean()}

    def policy_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor loss (DSAC-6) on Q from the just-updated critics (docs/pitfalls.md#fresh-q-for-actor), plus the
        temperature loss (DSAC-8) with --autotune."""
        agent, args = self.agent, self.args
        alpha = agent.log_alpha.detach().exp()
        with torch.no_grad():
            q = twin_q_estimate(agent.critic(obs), args.twin_q)
        probs, log_probs = policy_probabilities(agent.actor(obs))
        loss = actor_loss(probs, log_probs, q, alpha)
        entropy = policy_entropy(probs, log_probs)
        metrics = {"losses/actor_loss": loss.detach(), "losses/entropy": entropy.detach().mean(), "losses/alpha": alpha,
                   "losses/target_entropy": torch.tensor(self.target_entropy)}
        if args.autotune:
            a_loss = temperature_loss(agent.log_alpha, -entropy, self.target_entropy)
            loss = loss + a_loss
            metrics["losses/alpha_loss"] = a_loss.detach()
        return loss, metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step in the order of Christodoulou 2019, Alg. 1: the critics (DSAC-3)-(DSAC-5), then the actor
        (DSAC-6) and α (DSAC-8), then the targets (DSAC-10) every --target-network-frequency gradient steps."""
        self.gradient_steps += 1
        loss, metrics = self.critic_losses(batch)
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()

        loss, policy_metrics = self.policy_losses(batch.obs)
        for optimizer in self.policy_optimizers:
            optimizer.zero_grad(set_to_none=True)
        # One backward pass for the sum of the actor and alpha losses, in place of one per loss (5-7% of a SAC step,
        # benchmarks/ablation.md): each detaches the other's inputs, so each gets its own gradient; the critic none.
        loss.backward(inputs=self.policy_params)
        for optimizer in self.policy_optimizers:
            optimizer.step()
        metrics.update(policy_metrics)

        if self.gradient_steps % self.args.target_network_frequency == 0:
            polyak_update(self.agent.critic_target, self.agent.critic, self.args.tau)
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
    """Args with its None fields filled from PRESETS, by the kind of observation: vectors, or pixels (2-D frames)."""
    env = make_env(args)
    kind = "pixels" if is_image(env.observation_space.shape) else "vector"
    env.close()
    return replace(args, **{key: value for key, value in PRESETS[kind].items() if getattr(args, key) is None})


def train(args: Args) -> dict:
    """Discrete SAC's loop (Christodoulou 2019, Alg. 1): act, step the environments, store, and one gradient step every
    --update-frequency environment steps. Logging, evaluation and checkpoints are one call each on `run` (the plumbing
    below)."""
    args, checkpoint = start(args, with_defaults)  # --resume: the checkpoint's settings; then the defaults, the checks
    seed_everything(args)
    device = resolve_device(args.device)
    envs = make_vector_env(args)
    obs_shape, n_actions = envs.single_observation_space.shape, int(envs.single_action_space.n)
    agent = Agent(args, obs_shape, n_actions).to(device)
    learner = Learner(agent, args, target_entropy_for(n_actions, args.target_entropy_scale))
    buffer = make_buffer(args, obs_shape, device)
    pending_updates = restore(checkpoint, agent, learner, buffer) if checkpoint is not None else 0
    # A resumed run starts new episodes (the environments' state is not saved), seeded from its step.
    first_step = checkpoint["global_step"] if checkpoint else 0
    envs.action_space.seed(args.seed + first_step)
    obs, _ = envs.reset(seed=args.seed + first_step)
    clip_rewards = is_atari(args.env_id) and args.clip_rewards
    metrics: dict[str, torch.Tensor] = {}

    with Run(args, checkpoint, lambda: checkpoint_state(agent, learner, buffer, pending_updates, args)) as run:
        while run.global_step < args.total_timesteps and not run.stop_requested:
            if run.global_step < args.learning_starts:
                actions = envs.action_space.sample()
            else:
                try:
                    with torch.no_grad():
                        actions = agent.actor.explore(torch.as_tensor(obs, device=device)).cpu().numpy()
                except RuntimeError:  # torch.multinomial refuses a NaN π(·|s): something diverged since the last log
                    run.log_losses(metrics)  # raises RunFailed naming the loss, if one is not finite
                    raise RunFailed(f"π(·|s) is not finite at step {run.global_step}; {run.kept_checkpoint()}"
                                    ) from None
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            # Only `terminated` stops bootstrapping (DSAC-4); the end of any episode closes the frame buffer's stream.
            stored_rewards = np.sign(rewards) if clip_rewards else rewards  # Atari: clipped for learning only
            done = terminations | truncations
            terminal = terminal_for_update(terminations, infos, args.terminal_on_life_loss)
            buffer.add(obs, actions, stored_rewards, true_next_obs(next_obs, infos), terminal, done)
            obs = next_obs
            run.advance(args.num_envs, infos)

            if run.global_step > args.learning_starts:
                pending_updates += run.global_step - max(run.previous_step, args.learning_starts)
                while pending_updates >= args.update_frequency:  # one gradient step per --update-frequency env steps
                    metrics = learner.update(buffer.sample(args.batch_size))
                    pending_updates -= args.update_frequency

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
def play(actor: Actor, env: gym.Env, episodes: int, seed: int, greedy: bool, device: torch.device) -> list[float]:
    """Returns of `episodes` full episodes: a = argmax_a π(a|s) if greedy (DSAC-11), else a ~ π(·|s). Sampling uses
    its own generator, so evaluating never changes the training random stream."""
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


def evaluate(agent: Agent, args: Args, device: torch.device, episodes: int, video_dir: str | None = None) -> dict:
    """Greedy (DSAC-11) and stochastic returns from the same start states, on a separate environment that plays full
    games with unclipped scores (docs/pitfalls.md#deterministic-evaluation); eval/return_mean is the greedy one.
    With `video_dir`, the first greedy episode is recorded there."""
    seed = args.seed + 100_000
    env = make_env(args, render_mode="rgb_array" if video_dir else None)
    if video_dir:
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: episode == 0,
                                       disable_logger=True)
    greedy = play(agent.actor, env, episodes, seed, greedy=True, device=device)
    stochastic = play(agent.actor, env, episodes, seed, greedy=False, device=device)
    env.close()
    return {
        "eval/return_mean": float(np.mean(greedy)),
        "eval/return_std": float(np.std(greedy)),
        "eval/stochastic_return_mean": float(np.mean(stochastic)),
        "eval/stochastic_return_std": float(np.std(stochastic)),
    }



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
        (args.update_frequency >= 1, f"--update-frequency must be >= 1, got {args.update_frequency}"),
        (0.0 <= args.target_entropy_scale < 1.0, f"--target-entropy-scale must be in [0, 1), got "
         f"{args.target_entropy_scale}: the uniform policy's entropy log|A| is the maximum"),
        (args.frame_stack >= 1, f"--frame-stack must be >= 1, got {args.frame_stack}"),
        (args.adam_eps > 0.0, f"--adam-eps must be > 0, got {args.adam_eps}"),
    ]


def checkpoint_state(agent: Agent, learner: Learner, buffer: ReplayBuffer | FrameReplayBuffer, pending_updates: int,
                     args: Args) -> dict:
    """What a resume needs beyond the shared fields: networks, optimizers, the update schedule, the replay buffer."""
    return {"agent": agent.state_dict(), "gradient_steps": learner.gradient_steps, "pending_updates": pending_updates,
            "optimizers": {name: optimizer.state_dict() for name, optimizer in learner.optimizers().items()},
            "buffer": buffer.state_dict() if args.save_buffer else None}


def restore(checkpoint: dict, agent: Agent, learner: Learner, buffer: ReplayBuffer | FrameReplayBuffer) -> int:
    """Load a checkpoint_state into the run; returns the environment steps not yet spent on a gradient step. The
    environments are not in it: the resumed run starts new episodes."""
    load_weights(agent, checkpoint["agent"], "--resume")
    for name, optimizer in learner.optimizers().items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    learner.gradient_steps = checkpoint["gradient_steps"]
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if checkpoint["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    if checkpoint["buffer"] is not None:
        buffer.load_state_dict(checkpoint["buffer"])
        if isinstance(buffer, FrameReplayBuffer):
            buffer.start_new_episodes()
    else:
        print("note: the checkpoint holds no replay buffer (--save-buffer); learning resumes from an empty one",
              file=sys.stderr)
    return checkpoint["pending_updates"]


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-only: the checkpoint's policy, evaluated as in training, greedy and stochastic (with --capture-video, a
    greedy episode recorded next to it)."""
    args, checkpoint = start(args, with_defaults)
    device = resolve_device(args.device)
    env = make_vector_env(args)
    agent = Agent(args, env.single_observation_space.shape, int(env.single_action_space.n)).to(device)
    env.close()
    load_weights(agent, checkpoint["agent"], "--eval-only")
    result = evaluate(agent, args, device, args.eval_episodes)
    if args.capture_video:
        evaluate(agent, args, device, 1, video_dir=str(Path(args.eval_only).resolve().parent / "videos"))
    summary = {"env_id": args.env_id, **{key.replace("/", "_"): value for key, value in result.items()},
               "global_step": checkpoint["global_step"], "checkpoint": args.eval_only}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
