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

Run:  python sac_discrete.py                         # CartPole-v1 (README: measured results)
      python sac_discrete.py --env-id ALE/Pong-v5 --total-timesteps 5000000 --learning-starts 20000 \
          --update-frequency 4 --tau 1.0 --target-network-frequency 2000 --q-lr 3e-4 --target-entropy-scale 0.89
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
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
    env_id: str = "CartPole-v1"
    """gymnasium id with a Discrete action space (CartPole-v1, Acrobot-v1, LunarLander-v3, ALE/Pong-v5, ...)"""
    total_timesteps: int = 30_000
    """environment steps in total (all vector envs together); 30k solves CartPole-v1 (README)"""
    num_envs: int = 1
    """parallel environments (gymnasium SyncVectorEnv)"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions (CleanRL sac_atari); frames are stored once, so 1M Atari frames is ~6.6 GiB"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.01
    """Polyak rate of the target critics (tuned here; Atari: 1.0, a hard copy)"""
    batch_size: int = 64
    """minibatch size (64: Christodoulou 2019 and CleanRL sac_atari)"""
    learning_starts: int = 1_000
    """uniformly random actions for this many environment steps before learning (tuned for CartPole; Atari: 20000)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy and of log alpha (Christodoulou 2019)"""
    q_lr: float = 1e-3
    """Adam learning rate of the twin critics (tuned here for CartPole, README; Christodoulou 2019: 3e-4)"""
    adam_eps: float = 1e-4
    """Adam epsilon (CleanRL and the discrete SAC author: 1e-4); for pixels pass 1e-8: 1e-4 stalled our image actor"""
    update_frequency: int = 1
    """one gradient step every this many environment steps (Atari: 4)"""
    target_network_frequency: int = 1
    """gradient steps between target updates (1: Polyak every step; Atari: 8000 env steps / 4 = 2000, --tau 1)"""
    alpha: float = 0.2
    """temperature: the fixed value, or the initial one with --autotune"""
    autotune: bool = True
    """learn alpha by minimising the temperature loss (DSAC-8) towards the target entropy"""
    target_entropy_scale: float = 0.5
    """target entropy H-bar = scale * log|A| (paper 0.98, CleanRL 0.89; 0.5 measured best on CartPole, README)"""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """hidden layer widths of the MLPs used for vector observations"""
    q_loss: Literal["mse", "huber"] = "mse"
    """critic loss: 1/2 (Q - y)^2 (DSAC-5), or Huber (smooth L1), which bounds the gradient of large errors"""
    frame_stack: int = 4
    """frames stacked for image observations (Mnih et al. 2015)"""
    terminal_on_life_loss: bool = True
    """Atari only: a lost life ends the episode for the update (DQN, CleanRL, SB3); scores count whole games"""
    clip_rewards: bool = True
    """Atari only: store sign(reward) in the replay buffer; logged and evaluated scores stay unclipped"""
    eval_every: int = 10_000
    """evaluation every this many environment steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, on a separate environment, played once greedily (argmax pi) and once sampling from pi"""
    output_dir: str = "runs"
    """runs are written to {output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}/"""
    checkpoint_every: int = 100_000
    """write checkpoint.pt every this many environment steps (0: only at the end)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints, so that --resume continues learning from it (large)"""
    resume: str | None = None
    """continue the run of this checkpoint.pt, in its run directory, up to --total-timesteps"""
    eval_only: str | None = None
    """load this checkpoint.pt and only evaluate it (with --capture-video to watch)"""
    log_every: int = 1_000
    """write losses and the progress line every this many environment steps"""
    compile: bool = False
    """torch.compile the losses (off: on 2 CPU cores no faster for CartPole, 1.06x for Atari; benchmarks/speed.py)"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "maxent-rl"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (team or user)"""
    capture_video: bool = False
    """record a greedy episode of the final policy to {run_dir}/videos (needs moviepy)"""


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


def make_registered(env_id: str, **kwargs) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise UsageError(f"--env-id {env_id} needs an extra package: {error}") from None
    except gym.error.Error as error:
        raise UsageError(f"--env-id {env_id} is not a registered gymnasium environment ({error})") from None


def make_env(args: Args, seed: int, video_dir: str | None = None):
    """A function building one environment with the standard preprocessing; evaluation environments play full games.
    Atari: no-op starts, frame skip 4 with max-pooling, 84x84 grayscale (Mnih et al. 2015); frames are then stacked."""

    def thunk() -> gym.Env:
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
                raise UsageError(f"--env-id {args.env_id} needs OpenCV for the preprocessing: "
                                 "pip install opencv-python") from None
            # Its own terminal_on_life_loss would end the game (the vector env then resets it): AtariLives instead.
            env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                                                  scale_obs=False, terminal_on_life_loss=False)
            env = AtariLives(env)  # docs/pitfalls.md#atari-life-loss
        else:
            env = make_registered(args.env_id, **render)
        space = env.observation_space
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 2 and space.dtype == np.uint8:
            env = gym.wrappers.FrameStackObservation(env, args.frame_stack)
        if video_dir is not None:
            env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: episode == 0,
                                           disable_logger=True)
        env.action_space.seed(seed)
        return env

    return thunk


def check_spaces(env_id: str, observation_space, action_space) -> None:
    if isinstance(action_space, gym.spaces.Box):
        raise UsageError(f"--env-id {env_id} has a continuous (Box) action space; discrete SAC needs Discrete actions: "
                         "use sac_continuous.py")
    if not isinstance(action_space, gym.spaces.Discrete):
        raise UsageError(f"--env-id {env_id} has action space {action_space}; sac_discrete.py needs Discrete")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) not in (1, 3):
        raise UsageError(f"--env-id {env_id} has observation space {observation_space}; "
                         "sac_discrete.py needs a flat Box vector or 2-D uint8 frames")
    if len(observation_space.shape) == 3 and observation_space.dtype != np.uint8:
        raise UsageError(f"--env-id {env_id}: image observations must be uint8 frames, got {observation_space}")


def is_image(obs_shape: tuple[int, ...]) -> bool:
    return len(obs_shape) == 3


def make_vector_env(args: Args) -> gym.vector.VectorEnv:
    """SAME_STEP autoreset: a finished episode's true last observation is in info["final_obs"] on the step it ends,
    and the observation returned is already the next episode's first, so no stored transition crosses an episode
    boundary (gymnasium >= 1.0's default NEXT_STEP mode would hand back one bogus reset transition instead;
    docs/pitfalls.md#vector-autoreset)."""
    envs = gym.vector.SyncVectorEnv(
        [make_env(args, args.seed + i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    check_spaces(args.env_id, envs.single_observation_space, envs.single_action_space)
    if is_image(envs.single_observation_space.shape) and args.adam_eps > 1e-6:
        print(f"note: with image observations, --adam-eps {args.adam_eps:g} stalled the actor in our Atari runs; "
              "pass --adam-eps 1e-8 (docs/pitfalls.md#adam-eps-and-init)", file=sys.stderr)
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


def soft_state_value(next_probs: torch.Tensor, next_log_probs: torch.Tensor, next_target_q: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """V(s') = π(·|s')ᵀ[min_i Q̄_i(s',·) − α log π(·|s')], an exact sum (DSAC-3); Christodoulou 2019, Eq. 10.
    next_target_q: (2, B, |A|); the minimum is taken action by action, then the expectation."""
    return (next_probs * (next_target_q.min(dim=0).values - alpha * next_log_probs)).sum(-1)


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor,
                  gamma: float) -> torch.Tensor:
    """y = r + γ(1 − d) V(s') (DSAC-4); 2018b, Eq. 5 plus the done mask it omits. d is `terminated` only: a
    time-limit truncation is not part of the MDP, so it bootstraps (docs/pitfalls.md#truncation-vs-termination)."""
    return reward + gamma * (1.0 - terminated) * next_value


def critic_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """J_Q = Σ_i E[½(Q_i(s,a) − y)²] over the twin critics (DSAC-5); 2018b, Eq. 5. q_taken: (2, B), target: (B,).
    kind="huber" replaces ½e² by Huber(e) (quadratic for |e| ≤ 1, linear beyond), an option against Q blow-ups."""
    target = target.unsqueeze(0).expand_as(q_taken)
    if kind == "huber":
        return 2.0 * F.smooth_l1_loss(q_taken, target)
    return 2.0 * 0.5 * F.mse_loss(q_taken, target)  # the mean over both critics, times 2: the sum of the two losses


def actor_loss(probs: torch.Tensor, log_probs: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """J_π = E_s[π(·|s)ᵀ(α log π(·|s) − min_i Q_i(s,·))] (DSAC-6); Christodoulou 2019, Eq. 12.
    q: (2, B, |A|), a constant."""
    return (probs * (alpha * log_probs - q.min(dim=0).values.detach())).sum(-1).mean()


def temperature_loss(probs: torch.Tensor, log_probs: torch.Tensor, log_alpha: torch.Tensor,
                     target_entropy: float) -> torch.Tensor:
    """J(α) = E_s[π(·|s)ᵀ(−α(log π(·|s) + H̄))] (DSAC-8); Christodoulou 2019, Eq. 11; 2018b, Eq. 18.
    A function of α alone: its gradient in log α is −α(H̄ − H(π)), so α grows while the entropy is below the
    target and shrinks above. log α is optimised so that α stays positive (docs/pitfalls.md#temperature-log-alpha)."""
    return (probs.detach() * (-log_alpha.exp() * (log_probs.detach() + target_entropy))).sum(-1).mean()


def target_entropy_for(n_actions: int, scale: float) -> float:
    """H̄ = c · log|A|, a fraction of the uniform policy's entropy (DSAC-9): the paper's c = 0.98 keeps π near
    uniform (with 2 actions the better one gets at most 58.3%), so α grows until π is nearly uniform; 0.5 here on
    CartPole, 0.89 in CleanRL on Atari (docs/pitfalls.md#discrete-target-entropy)."""
    return scale * math.log(n_actions)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← τθ + (1 − τ)θ̄, all tensors in one fused call (DSAC-10); 2018b, Alg. 1. τ = 1 is a hard copy."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


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
    Each member is initialised exactly like nn.Linear, so the ensemble is ordinary Q networks, only faster."""

    def __init__(self, members: int, in_size: int, out_size: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_size)  # nn.Linear's default, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in))
        self.weight = nn.Parameter(torch.empty(members, in_size, out_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_size).uniform_(-bound, bound))

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


class TwinCritic(nn.Module):
    """Q_1(s,·) and Q_2(s,·) ∈ R^|A|, all actions in one pass, both critics in the same matmuls: (2, B, |A|)
    (DSAC-3); Christodoulou 2019, §3."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.is_image = is_image(obs_shape)
        if self.is_image:
            self.features = nature_cnn_output_size(*obs_shape)
            self.encoder = nature_cnn(obs_shape[0], members=2)
            sizes = [self.features, 512, n_actions]
        else:
            sizes = [obs_shape[0], *hidden_sizes, n_actions]
        self.layers = nn.ModuleList(EnsembleLinear(2, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        if self.is_image:
            he_init_(self)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.is_image:
            # Grouped-conv output keeps each member's channels contiguous: (B, 2·C·h·w) -> (2, B, C·h·w).
            x = self.encoder(scaled_frames(obs)).view(obs.shape[0], 2, self.features).transpose(0, 1)
        else:
            x = obs.unsqueeze(0).expand(2, *obs.shape)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


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
    """Circular buffer of (s, a, r, s', terminated) for vector observations; `terminated` (never `truncated`) is stored
    for the mask of (DSAC-4)."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], device: torch.device):
        # Bytes per row: s and s' (float32), a (int64), r and terminated (float32).
        check_memory(capacity * (8 * math.prod(obs_shape) + 16), device, f"--buffer-size {capacity}")
        self.capacity, self.device = capacity, device
        self.obs = torch.zeros((capacity, *obs_shape), dtype=torch.float32, device=device)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.position, self.size = 0, 0

    def add(self, obs, actions, rewards, next_obs, terminated, done=None) -> None:
        """Add one transition per environment; `done` is for the frame buffer (each row here holds its own s')."""
        n = len(actions)
        rows = torch.arange(self.position, self.position + n, device=self.device) % self.capacity
        for store, value in zip(self.stores().values(), (obs, actions, rewards, next_obs, terminated)):
            store[rows] = torch.as_tensor(value, dtype=store.dtype, device=self.device)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def stores(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in Batch._fields}

    def sample(self, batch_size: int) -> Batch:
        rows = torch.randint(0, self.size, (batch_size,), device=self.device)
        return Batch(**{name: store[rows] for name, store in self.stores().items()})

    def state_dict(self) -> dict:
        """The filled rows only."""
        return {"position": self.position, "size": self.size,
                **{name: store[: self.size].cpu() for name, store in self.stores().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.size = state["position"], state["size"]
        for name, store in self.stores().items():
            store[: self.size] = state[name].to(self.device)


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
        check_memory(num_envs * self.slots * (height * width + 21), device, f"--buffer-size {capacity}")
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
        return {**{name: store[:, : self.filled].cpu() for name, store in self.stores().items()},
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

    def nbytes(self) -> int:
        return sum(store.numel() * store.element_size() for store in self.stores().values())


def make_buffer(args: Args, obs_shape: tuple[int, ...], device: torch.device) -> ReplayBuffer | FrameReplayBuffer:
    """The frame buffer for image observations, the plain one otherwise."""
    if not is_image(obs_shape):
        return ReplayBuffer(args.buffer_size, obs_shape, device)
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
class Agent:
    """Actor, twin critics and their targets, log α, their optimizers, and `update`, one gradient step. The losses are
    pure tensor functions (what --compile compiles, forward and backward); the optimizer steps follow, eager."""

    def __init__(self, args: Args, obs_shape: tuple[int, ...], n_actions: int, device: torch.device):
        self.args, self.device = args, device
        self.actor = Actor(obs_shape, n_actions, args.hidden_sizes).to(device)
        self.critic = TwinCritic(obs_shape, n_actions, args.hidden_sizes).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(args.alpha), device=device, requires_grad=args.autotune)
        self.target_entropy = target_entropy_for(n_actions, args.target_entropy_scale)
        adam = functools.partial(torch.optim.Adam, eps=args.adam_eps, fused=True)  # fused: one kernel per step
        self.q_optimizer = adam(self.critic.parameters(), lr=args.q_lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=args.policy_lr)
        self.alpha_optimizer = adam([self.log_alpha], lr=args.policy_lr)
        # The optimizers of the policy step, and the parameters its one backward pass computes gradients for.
        self.policy_optimizers = [self.actor_optimizer] + ([self.alpha_optimizer] if args.autotune else [])
        self.policy_params = [p for optimizer in self.policy_optimizers for group in optimizer.param_groups
                              for p in group["params"]]
        self.gradient_steps = 0
        if args.compile:  # the same two functions, traced and fused by torch.compile; the optimizer steps stay eager
            self.critic_losses = torch.compile(self.critic_losses)
            self.policy_losses = torch.compile(self.policy_losses)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """a ~ π(·|s) for a batch of observations, to explore (DSAC-1)."""
        with torch.no_grad():
            logits = self.actor(torch.as_tensor(obs, device=self.device))
            return torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1).cpu().numpy()

    def critic_losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """J_Q (DSAC-5) towards y (DSAC-4), with the exact soft value of s' under the target critics (DSAC-3)."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_probs, next_log_probs = policy_probabilities(self.actor(batch.next_obs))
            next_value = soft_state_value(next_probs, next_log_probs, self.critic_target(batch.next_obs), alpha)
            target = soft_q_target(batch.rewards, batch.terminated, next_value, self.args.gamma)
        q_all = self.critic(batch.obs)
        q_taken = q_all.gather(2, batch.actions.view(1, -1, 1).expand(2, -1, 1)).squeeze(2)
        loss = critic_loss(q_taken, target, self.args.q_loss)
        return loss, {"losses/qf_loss": loss.detach(), "losses/alpha": alpha, "losses/q_mean": q_taken.detach().mean(),
                      "losses/q_max": q_all.detach().max(), "losses/target_mean": target.mean()}

    def policy_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor loss (DSAC-6) on Q from the just-updated critics (docs/pitfalls.md#fresh-q-for-actor), plus the
        temperature loss (DSAC-8) with --autotune. They share no parameters, so their sum has one backward pass."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            q = self.critic(obs)
        probs, log_probs = policy_probabilities(self.actor(obs))
        loss = actor_loss(probs, log_probs, q, alpha)
        metrics = {"losses/actor_loss": loss.detach(),
                   "losses/entropy": policy_entropy(probs, log_probs).detach().mean()}
        if self.args.autotune:
            a_loss = temperature_loss(probs, log_probs, self.log_alpha, self.target_entropy)
            loss = loss + a_loss
            metrics["losses/alpha_loss"] = a_loss.detach()
        return loss, metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step in the order of Christodoulou 2019, Alg. 1: the critics (DSAC-3)-(DSAC-5), then the actor
        (DSAC-6) and α (DSAC-8), then the targets (DSAC-10) every --target-network-frequency gradient steps.
        Returns detached tensors: nothing here synchronises with the host."""
        self.gradient_steps += 1
        loss, metrics = self.critic_losses(batch)
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()

        loss, policy_metrics = self.policy_losses(batch.obs)
        for optimizer in self.policy_optimizers:
            optimizer.zero_grad(set_to_none=True)
        # One backward pass for the sum of the actor and α losses, in place of one per loss: they share no parameters
        # (each detaches the other's inputs), so each gets its own gradient; the critic gets none.
        loss.backward(inputs=self.policy_params)
        for optimizer in self.policy_optimizers:
            optimizer.step()

        if self.gradient_steps % self.args.target_network_frequency == 0:
            polyak_update(self.critic_target, self.critic, self.args.tau)
        return {**metrics, **policy_metrics}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.q_optimizer, "actor": self.actor_optimizer, "alpha": self.alpha_optimizer}

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers().items()},
            "gradient_steps": self.gradient_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.gradient_steps = state["gradient_steps"]


# ----------------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Discrete SAC's loop (Christodoulou 2019, Alg. 1): act, step the environments, store, and one gradient step every
    --update-frequency environment steps. Logging, evaluation and checkpoints are one call each on `run` (the plumbing
    below)."""
    checkpoint = prepare(args)
    device = resolve_device(args.device)
    envs = make_vector_env(args)
    obs_shape, n_actions = envs.single_observation_space.shape, int(envs.single_action_space.n)
    buffer = make_buffer(args, obs_shape, device)
    agent = Agent(args, obs_shape, n_actions, device)
    pending_updates = restore(checkpoint, agent, buffer, args) if checkpoint is not None else 0
    # A resumed run cannot restore the simulators' state: it starts new episodes, seeded from its step.
    start = checkpoint["global_step"] if checkpoint is not None else 0
    obs, _ = envs.reset(seed=args.seed + start)
    envs.action_space.seed(args.seed + start)
    clip_rewards = is_atari(args.env_id) and args.clip_rewards
    metrics: dict[str, torch.Tensor] = {}

    with Run(args, checkpoint, lambda: checkpoint_state(agent, buffer, pending_updates, args)) as run:
        while run.global_step < args.total_timesteps and not run.stop_requested:
            if run.global_step < args.learning_starts:
                actions = envs.action_space.sample()
            else:
                try:
                    actions = agent.act(obs)
                except RuntimeError:  # torch.multinomial refuses a NaN π(·|s): something diverged since the last log
                    run.log_losses(metrics)  # raises NonFiniteLoss naming the loss, if one is not finite
                    raise NonFiniteLoss(f"π(·|s) is not finite at step {run.global_step}; "
                                        f"{run.kept_checkpoint()}") from None
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            # Only `terminated` stops bootstrapping (DSAC-4); the end of any episode closes the frame buffer's stream.
            stored_rewards = np.sign(rewards) if clip_rewards else rewards  # Atari: clipped for learning only
            done = terminations | truncations
            terminal = terminal_for_update(terminations, infos, args.terminal_on_life_loss)
            buffer.add(obs, actions, stored_rewards, true_next_obs(next_obs, infos), terminal, done)
            obs = next_obs
            run.advance(args.num_envs)
            for i in np.flatnonzero(infos.get("_episode", [])):
                run.log_episode(infos["episode"]["r"][i], infos["episode"]["l"][i])

            if run.global_step > args.learning_starts:
                run.start_learning_clock()
                pending_updates += run.global_step - max(run.previous_step, args.learning_starts)
                while pending_updates >= args.update_frequency:  # one gradient step per --update-frequency env steps
                    metrics = agent.update(buffer.sample(args.batch_size))
                    pending_updates -= args.update_frequency

            if run.due(args.log_every):
                run.log_losses(metrics)
            if run.due(args.eval_every):
                run.log_evaluation(lambda: evaluate(agent.actor, args, device, args.eval_episodes))
            if run.due(args.checkpoint_every):
                run.save()

        if not run.stop_requested and run.last_eval_step != run.global_step:
            run.log_evaluation(lambda: evaluate(agent.actor, args, device, args.eval_episodes))
        if args.capture_video and not run.stop_requested:
            evaluate(agent.actor, args, device, 1, video_dir=str(run.dir / "videos"))
    final = run.last_eval or {}
    return run.finish(eval_stochastic_return_mean=final.get("eval/stochastic_return_mean"),
                      eval_stochastic_return_std=final.get("eval/stochastic_return_std"))


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


def evaluate(actor: Actor, args: Args, device: torch.device, episodes: int, video_dir: str | None = None) -> dict:
    """Greedy (DSAC-11) and stochastic returns from the same start states, on a separate environment that plays full
    games with unclipped scores (docs/pitfalls.md#deterministic-evaluation); eval/return_mean is the greedy one.
    With `video_dir`, the first greedy episode is recorded there."""
    seed = args.seed + 100_000
    env = make_env(args, seed, video_dir=video_dir)()
    greedy = play(actor, env, episodes, seed, greedy=True, device=device)
    stochastic = play(actor, env, episodes, seed, greedy=False, device=device)
    env.close()
    return {
        "eval/return_mean": float(np.mean(greedy)),
        "eval/return_std": float(np.std(greedy)),
        "eval/stochastic_return_mean": float(np.mean(stochastic)),
        "eval/stochastic_return_std": float(np.std(stochastic)),
    }



# ======================================================================================================================
# ---- Plumbing: run directory, logging, checkpoints, resume, errors. Safe to skip on a first read. ----
# Nothing below changes what is learned. From here to "end of the shared plumbing" the text is the same in
# sac_continuous.py, sac_discrete.py and soft_q_learning.py (tests/test_shared_plumbing.py compares it); what a
# script does differently (the state its checkpoint holds, its own checks) is passed in or written after that line.
# ======================================================================================================================
class UsageError(Exception):
    """Bad input: reported as one line naming the flag or file, exit status 2."""


class NonFiniteLoss(Exception):
    """A loss or a parameter became NaN or infinite: reported as one line, exit status 1; the last good checkpoint is
    kept."""


EXIT_OK, EXIT_NON_FINITE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]: with N environments the step counter jumps by N."""
    return every > 0 and after // every > before // every


def resolve_device(name: str) -> torch.device:
    """--device auto is cuda when a GPU is available, else cpu."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; with `deterministic`, make torch's kernels repeatable (bit-exact on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS (CUDA >= 10.2) refuses deterministic mode unless this is set before its first call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        # Deterministic mode also fills every new tensor with NaN, a guard against reading memory never written: about
        # 8% of an update on CPU (benchmarks/speed.py). No code here reads such memory, so the results are the same.
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def check_common_args(args) -> None:
    """The checks every training script shares; each script adds its own in `validate`."""
    checks = [
        (0.0 <= args.gamma <= 1.0, f"--gamma must be in [0, 1], got {args.gamma}"),
        (0.0 < args.tau <= 1.0, f"--tau must be in (0, 1], got {args.tau}"),
        (args.total_timesteps >= 1, f"--total-timesteps must be >= 1, got {args.total_timesteps}"),
        (args.num_envs >= 1, f"--num-envs must be >= 1, got {args.num_envs}"),
        (args.buffer_size >= 1, f"--buffer-size must be >= 1, got {args.buffer_size}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.batch_size <= args.buffer_size,
         f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}; lower one"),
        (args.learning_starts >= 0, f"--learning-starts must be >= 0, got {args.learning_starts}"),
        (args.learning_starts < args.total_timesteps, f"--learning-starts {args.learning_starts} is not below "
         f"--total-timesteps {args.total_timesteps}: the run would never learn"),
        (args.target_network_frequency >= 1,
         f"--target-network-frequency must be >= 1, got {args.target_network_frequency}"),
        (args.alpha > 0.0, f"--alpha must be > 0, got {args.alpha}"),
        (min(args.policy_lr, args.q_lr) > 0.0, f"--policy-lr and --q-lr must be > 0, got {args.policy_lr} {args.q_lr}"),
        (len(args.hidden_sizes) >= 1 and min(args.hidden_sizes) >= 1,
         f"--hidden-sizes needs at least one positive width, got {args.hidden_sizes}"),
        (args.eval_episodes >= 1, f"--eval-episodes must be >= 1, got {args.eval_episodes}"),
        (min(args.eval_every, args.checkpoint_every) >= 0, "--eval-every and --checkpoint-every must be >= 0"),
        (args.log_every >= 1, f"--log-every must be >= 1, got {args.log_every}"),
        (args.threads >= 0, f"--threads must be >= 0 (0: torch's default), got {args.threads}"),
        (not (args.resume and args.eval_only), "--resume and --eval-only exclude each other; pass one"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    resolve_device(args.device)
    if not args.eval_only:
        check_writable(Path(args.resume).resolve().parent if args.resume else Path(args.output_dir),
                       "--resume" if args.resume else "--output-dir")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401  (gymnasium's RecordVideo needs it)
        except ImportError:
            raise UsageError("--capture-video needs moviepy: pip install moviepy") from None
    if args.track:
        check_wandb_credentials()


def check_writable(directory: Path, flag: str) -> None:
    """Fail before any work, not after the first evaluation, when the run directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"{flag}: cannot write to {directory} ({error.strerror or error})") from None


def check_memory(nbytes: int, device: torch.device, what: str) -> None:
    """Refuse, before allocating it, a replay buffer larger than the free memory of its device."""
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            with open("/proc/meminfo") as meminfo:  # Linux; elsewhere the allocation itself is the check
                available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return
    if nbytes > available:
        raise UsageError(f"{what} needs {nbytes / 2**30:.1f} GiB, but {available / 2**30:.1f} GiB of {device.type} "
                         "memory are free; lower --buffer-size")


# A resumed run keeps every setting of its checkpoint but these: its length, its cadences and where its outputs go.
RESUME_MAY_CHANGE = {"total_timesteps", "checkpoint_every", "eval_every", "eval_episodes", "log_every", "save_buffer",
                     "resume", "output_dir", "device", "threads", "compile", "track", "wandb_project_name",
                     "wandb_entity", "capture_video"}


def resume_settings(args, checkpoint: dict, path: str) -> None:
    """Take the settings of the checkpoint's run into `args`; a flag given on the command line that would change what
    is learned (another environment, batch size, learning rate, ...) is refused, naming it."""
    saved, defaults = checkpoint["args"], type(args)()
    for field in fields(args):
        if field.name not in saved:
            continue
        given, stored = getattr(args, field.name), saved[field.name]
        stored = tuple(stored) if isinstance(stored, list) else stored
        if given == getattr(defaults, field.name):  # not on the command line: as the run was
            setattr(args, field.name, stored)
        elif given != stored and field.name not in RESUME_MAY_CHANGE:
            raise UsageError(f"--resume {path}: --{field.name.replace('_', '-')} {given} differs from the checkpoint's "
                             f"{stored}; a resumed run keeps its settings: only length, cadences and outputs change")


def check_wandb_credentials() -> None:
    """Tracking never prompts: without a key and without WANDB_MODE, say how to proceed."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UsageError("--track needs wandb: pip install wandb") from None
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text():
        return
    raise UsageError("--track needs W&B credentials: run `wandb login`, or set WANDB_MODE=offline to log locally")


def rng_state() -> dict:
    """Every random generator a run draws from, as tensors and plain values (loadable with weights_only=True)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str, flag: str) -> dict:
    """A checkpoint written by this script; anything else is a UsageError naming the flag and the file.
    weights_only=True: loading a checkpoint never runs code from it."""
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: no such file; pass the checkpoint.pt of a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupted, or not a torch file
        raise UsageError(f"{flag} {path}: not a readable checkpoint ({type(error).__name__}); is the file complete?"
                         ) from None
    if not isinstance(state, dict) or state.get("script") != SCRIPT or "args" not in state:
        found = state.get("script") if isinstance(state, dict) else None
        other = f"{found}.py" if found else "another program"
        raise UsageError(f"{flag} {path}: this checkpoint was written by {other}, not {SCRIPT}.py")
    return state


def non_finite_entry(state, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in a (nested) checkpoint dict that holds a NaN or an inf."""
    if torch.is_tensor(state):
        return prefix if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        found = non_finite_entry(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


class Run:
    """One training run beside the learning: its directory, metrics.jsonl, progress line, Weights & Biases, the
    step counter and its cadences, Ctrl-C, checkpoints and summary.json.

    A new run writes to {output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}/ (with a suffix when two runs start
    in the same second); --resume continues in the checkpoint's own directory, its metrics.jsonl cut back to the
    checkpoint's step. `checkpoint_state()` returns what this script must save beyond the shared fields."""

    def __init__(self, args, checkpoint: dict | None, checkpoint_state):
        self.args, self.checkpoint_state = args, checkpoint_state
        self.global_step = self.previous_step = checkpoint["global_step"] if checkpoint else 0
        self.episodes = checkpoint["episodes"] if checkpoint else 0
        self.last_return, self.last_eval, self.last_eval_step = None, None, None
        self.start_time, self.learning_clock, self.eval_seconds = time.time(), None, 0.0
        self.stop_signal = None
        self.dir = Path(args.resume).resolve().parent if checkpoint else self.new_directory(args)
        self.checkpoint_path = self.dir / "checkpoint.pt"
        for stale in self.dir.glob("*.tmp"):  # left by a run killed mid-write; the real files are intact
            stale.unlink()
        (self.dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
        metrics_path = self.dir / "metrics.jsonl"
        if checkpoint and metrics_path.exists():
            # Drop events written after the checkpoint (a crash after it), so the file reads as one run.
            lines = metrics_path.read_text().splitlines()
            kept = [line + "\n" for line in lines if json.loads(line)["global_step"] <= self.global_step]
            metrics_path.write_text("".join(kept))
        self.metrics_file = open(metrics_path, "a")
        self.wandb = None
        if args.track:
            import wandb

            try:  # a key but no network would otherwise hang for minutes
                self.wandb = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args),
                                        name=self.dir.name, id=self.dir.name, resume="allow", dir=str(self.dir),
                                        settings=wandb.Settings(init_timeout=30))
            except Exception as error:
                raise UsageError(f"--track: W&B did not start ({type(error).__name__}); check the network, or set "
                                 "WANDB_MODE=offline to log locally") from None
        self.progress_bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.progress_bar = tqdm(total=args.total_timesteps, initial=self.global_step, unit="step",
                                         dynamic_ncols=True)
            except ImportError:  # a copied script without tqdm falls back to plain progress lines
                pass
        self.previous_handlers = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def new_directory(args) -> Path:
        name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        for suffix in ["", *(f"-{i}" for i in range(1, 1000))]:
            try:
                path = Path(args.output_dir) / (name + suffix)
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                continue
            except OSError as error:
                raise UsageError(f"--output-dir {args.output_dir}: cannot create a run directory ({error.strerror})"
                                 ) from None
        raise UsageError(f"--output-dir {args.output_dir}: too many runs named {name}")

    def request_stop(self, signum, frame) -> None:
        self.stop_signal = signum

    @property
    def stop_requested(self) -> bool:
        return self.stop_signal is not None

    # ---- the step counter and its cadences ----
    def advance(self, steps: int) -> None:
        self.previous_step, self.global_step = self.global_step, self.global_step + steps
        if self.progress_bar is not None:
            self.progress_bar.update(steps)

    def due(self, every: int) -> bool:
        """True on the step that crosses a multiple of `every` (0: never)."""
        return crossed(self.previous_step, self.global_step, every)

    def start_learning_clock(self) -> None:
        """Speed is measured over the learning phase only: from the first gradient step on."""
        if self.learning_clock is None:
            self.learning_clock = (time.time(), self.previous_step)

    def sps(self) -> float:
        if self.learning_clock is None:
            return 0.0
        seconds = time.time() - self.learning_clock[0] - self.eval_seconds
        return (self.global_step - self.learning_clock[1]) / seconds if seconds > 0 else 0.0

    # ---- metrics ----
    def log(self, metrics: dict) -> None:
        """One event of metrics.jsonl (and of W&B with --track)."""
        record = {"global_step": self.global_step, "wall_time": round(time.time() - self.start_time, 3), **metrics}
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=self.global_step)

    def log_episode(self, episode_return: float, length: int) -> None:
        self.episodes += 1
        self.last_return = float(episode_return)
        self.log({"charts/episodic_return": self.last_return, "charts/episodic_length": int(length)})

    def log_losses(self, metrics: dict[str, torch.Tensor]) -> None:
        """Read the latest losses (the only host synchronisation of the learning phase), stop on a non-finite one,
        and write them with the speed and the progress line."""
        values = {name: float(value) for name, value in metrics.items()}
        bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise NonFiniteLoss(f"{bad} is {values[bad]} at step {self.global_step}; {self.kept_checkpoint()}")
        sps = self.sps()
        self.log({**values, "charts/SPS": round(sps, 1)})
        text = f"SPS {sps:.0f}" if self.learning_clock is not None else "random actions, learning not started"
        text += f", return {self.last_return:.1f}" if self.last_return is not None else ""
        if self.progress_bar is not None:
            self.progress_bar.set_postfix_str(text)
        else:
            print(f"step {self.global_step}/{self.args.total_timesteps}: {text}", file=sys.stderr, flush=True)

    def log_evaluation(self, evaluate) -> dict:
        """Run `evaluate()` (a dict of eval/... metrics), log it, and keep its time out of the speed."""
        started = time.time()
        self.last_eval, self.last_eval_step = evaluate(), self.global_step
        self.eval_seconds += time.time() - started if self.learning_clock is not None else 0.0
        self.log(self.last_eval)
        return self.last_eval

    # ---- checkpoints ----
    def kept_checkpoint(self) -> str:
        if self.checkpoint_path.exists():
            return f"the last good checkpoint is {self.checkpoint_path}"
        return "no checkpoint was written"

    def save(self) -> None:
        """Write checkpoint.pt atomically (a temporary file, then os.replace), so a crash mid-write keeps the previous
        one; never over a good checkpoint with NaN or inf weights."""
        state = {"script": SCRIPT, "args": asdict(self.args), "global_step": self.global_step,
                 "episodes": self.episodes, "rng": rng_state(), **self.checkpoint_state()}
        bad = non_finite_entry({key: value for key, value in state.items() if key != "buffer"})
        if bad is not None:
            raise NonFiniteLoss(f"{bad} is not finite at step {self.global_step}; {self.kept_checkpoint()}")
        temporary = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.checkpoint_path)

    # ---- the end ----
    def __enter__(self) -> "Run":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """On any way out, Ctrl-C and crashes included, save what was learned (unless it is no longer finite)."""
        try:
            if error_type is not NonFiniteLoss:
                self.save()
        finally:
            for s, handler in self.previous_handlers.items():
                signal.signal(s, handler)
            self.metrics_file.close()
            if self.progress_bar is not None:
                self.progress_bar.close()
            if self.wandb is not None:
                self.wandb.finish()

    def finish(self, **extra) -> dict:
        """Write summary.json and print the closing line; the returned dict carries the exit status."""
        summary = {
            "global_step": self.global_step,
            "train_sps": round(self.sps(), 1),
            "eval_return_mean": self.last_eval["eval/return_mean"] if self.last_eval else None,
            "eval_return_std": self.last_eval["eval/return_std"] if self.last_eval else None,
            "episodes": self.episodes,
            "wall_time_s": round(time.time() - self.start_time, 2),
            "run_dir": str(self.dir.resolve()),
            "interrupted": self.stop_requested,
            **extra,
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"{self.dir}: step {self.global_step}, eval return {summary['eval_return_mean']}, "
              f"train SPS {summary['train_sps']}" + (" (interrupted)" if self.stop_requested else ""), file=sys.stderr)
        return {**summary, "exit_code": EXIT_INTERRUPTED if self.stop_requested else EXIT_OK}


def main(args) -> int:
    """Train (or, with --eval-only, evaluate a checkpoint); bad input exits 2, a non-finite loss 1, Ctrl-C 130."""
    try:
        return (evaluate_checkpoint(args) if args.eval_only else train(args))["exit_code"]
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLoss as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NON_FINITE


# ---- end of the shared plumbing ----


# ---- What only this script saves, restores and checks ----
def validate(args: Args) -> None:
    checks = [
        (args.update_frequency >= 1, f"--update-frequency must be >= 1, got {args.update_frequency}"),
        (0.0 <= args.target_entropy_scale < 1.0, f"--target-entropy-scale must be in [0, 1), got "
         f"{args.target_entropy_scale}: the uniform policy's entropy log|A| is the maximum"),
        (args.frame_stack >= 1, f"--frame-stack must be >= 1, got {args.frame_stack}"),
        (args.adam_eps > 0.0, f"--adam-eps must be > 0, got {args.adam_eps}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    check_common_args(args)


def prepare(args: Args) -> dict | None:
    """Check the flags, seed every generator, and read --resume's checkpoint (None for a new run), whose settings the
    run keeps."""
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume, "--resume")
        resume_settings(args, checkpoint, args.resume)
    validate(args)
    seed_everything(args.seed, args.torch_deterministic)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return checkpoint


def checkpoint_state(agent: Agent, buffer: ReplayBuffer | FrameReplayBuffer, pending_updates: int, args: Args) -> dict:
    """What a resume needs beyond the shared fields: networks, optimizers, the update schedule, the replay buffer."""
    return {"agent": agent.state_dict(), "pending_updates": pending_updates,
            "buffer": buffer.state_dict() if args.save_buffer else None}


def restore(checkpoint: dict, agent: Agent, buffer: ReplayBuffer | FrameReplayBuffer, args: Args) -> int:
    """Load a checkpoint_state into the run; returns the environment steps not yet spent on a gradient step."""
    agent.load_state_dict(checkpoint["agent"])
    set_rng_state(checkpoint["rng"])
    if checkpoint["buffer"] is not None:
        buffer.load_state_dict(checkpoint["buffer"])
        if isinstance(buffer, FrameReplayBuffer):
            buffer.start_new_episodes()
    else:
        print(f"note: {args.resume} holds no replay buffer (--save-buffer); learning resumes from an empty one",
              file=sys.stderr)
    return checkpoint["pending_updates"]


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-only: rebuild the policy of a checkpoint and evaluate it, greedy and stochastic (with --capture-video,
    also record a greedy episode next to the checkpoint). Prints one JSON line; writes no run directory."""
    validate(args)
    state = load_checkpoint(args.eval_only, "--eval-only")
    saved = Args(**{**state["args"], "hidden_sizes": tuple(state["args"]["hidden_sizes"])})
    saved.eval_episodes, saved.seed, saved.capture_video = args.eval_episodes, args.seed, args.capture_video
    device = resolve_device(args.device)
    env = make_env(saved, saved.seed)()
    check_spaces(saved.env_id, env.observation_space, env.action_space)
    actor = Actor(env.observation_space.shape, int(env.action_space.n), saved.hidden_sizes).to(device)
    env.close()
    actor.load_state_dict(state["agent"]["actor"])
    result = evaluate(actor, saved, device, args.eval_episodes)
    if args.capture_video:
        evaluate(actor, saved, device, 1, video_dir=str(Path(args.eval_only).resolve().parent / "videos"))
    summary = {"eval_return_mean": result["eval/return_mean"], "eval_return_std": result["eval/return_std"],
               "eval_stochastic_return_mean": result["eval/stochastic_return_mean"],
               "eval_stochastic_return_std": result["eval/stochastic_return_std"],
               "global_step": state["global_step"], "checkpoint": args.eval_only}
    print(json.dumps(summary))
    return {**summary, "exit_code": EXIT_OK}


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
