"""The straightforward SAC v2, as most PyTorch implementations write it: the in-run speed baseline of benchmarks/speed.py.

Same algorithm and hyperparameters as `sac_continuous.py --variant v2`, written the common way:
- two separate Q networks (and two target networks), each called on its own;
- a numpy replay buffer, sampled with numpy and copied into torch tensors at every update;
- alpha read back to Python with `.item()` at every step, per-parameter Polyak loops, Adam without fused kernels;
- one backward pass per loss.
It is not part of the project's scripts: it exists so speed ratios are measured against a baseline in the same run.

    python benchmarks/sac_straightforward.py --env-id Pendulum-v1 --total-timesteps 6000 --output-dir /tmp/baseline
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    env_id: str = "Pendulum-v1"
    """gymnasium environment with a Box action space"""
    seed: int = 1
    """seed of python, numpy, torch and the environment"""
    total_timesteps: int = 15_000
    """environment steps"""
    learning_starts: int = 1_000
    """random actions before learning"""
    batch_size: int = 256
    """minibatch size"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak rate"""
    policy_lr: float = 3e-4
    """actor learning rate"""
    q_lr: float = 1e-3
    """critic and temperature learning rate"""
    eval_episodes: int = 10
    """deterministic evaluation episodes at the end"""
    output_dir: str = "runs"
    """summary.json and metrics.jsonl go to {output_dir}/{env_id}__sac_straightforward__{seed}__{time}/"""


class QNetwork(nn.Module):
    def __init__(self, obs_size, action_size):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_size + action_size, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))

    def forward(self, obs, action):
        return self.net(torch.cat([obs, action], 1))


class Actor(nn.Module):
    def __init__(self, obs_size, action_size, low, high):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_size, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mean = nn.Linear(256, action_size)
        self.log_std = nn.Linear(256, action_size)
        self.register_buffer("scale", torch.tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs):
        h = self.net(obs)
        return self.mean(h), torch.clamp(self.log_std(h), -5, 2)

    def get_action(self, obs):
        mean, log_std = self(obs)
        normal = torch.distributions.Normal(mean, log_std.exp())
        u = normal.rsample()
        y = torch.tanh(u)
        log_prob = normal.log_prob(u) - 2.0 * (np.log(2.0) - u - F.softplus(-2.0 * u))
        return y * self.scale + self.bias, log_prob.sum(1, keepdim=True), torch.tanh(mean) * self.scale + self.bias


def main(args: Args) -> None:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    run_dir = Path(args.output_dir) / f"{args.env_id}__sac_straightforward__{args.seed}__{int(time.time())}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
    metrics = open(run_dir / "metrics.jsonl", "w")
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(args.env_id))
    obs_size, action_size = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high

    actor = Actor(obs_size, action_size, low, high)
    qf1, qf2 = QNetwork(obs_size, action_size), QNetwork(obs_size, action_size)
    qf1_target, qf2_target = QNetwork(obs_size, action_size), QNetwork(obs_size, action_size)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    target_entropy = -float(action_size)
    log_alpha = torch.full((1,), float(np.log(0.2)), requires_grad=True)  # alpha starts at 0.2, as in sac_continuous.py
    alpha = log_alpha.exp().item()
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr)

    size = args.total_timesteps
    buffer_obs = np.zeros((size, obs_size), np.float32)
    buffer_next_obs = np.zeros((size, obs_size), np.float32)
    buffer_actions = np.zeros((size, action_size), np.float32)
    buffer_rewards = np.zeros((size, 1), np.float32)
    buffer_terminated = np.zeros((size, 1), np.float32)

    env.action_space.seed(args.seed)
    obs, _ = env.reset(seed=args.seed)
    episodes, start, learning_start = 0, time.time(), None
    for global_step in range(args.total_timesteps):
        if global_step < args.learning_starts:
            action = env.action_space.sample()
        else:
            action, _, _ = actor.get_action(torch.Tensor(obs).unsqueeze(0))
            action = action.detach().numpy()[0]
        next_obs, reward, terminated, truncated, info = env.step(action)
        buffer_obs[global_step], buffer_next_obs[global_step], buffer_actions[global_step] = obs, next_obs, action
        buffer_rewards[global_step], buffer_terminated[global_step] = reward, terminated
        obs = next_obs
        if terminated or truncated:
            episodes += 1
            metrics.write(json.dumps({"global_step": global_step + 1, "charts/episodic_return": float(info["episode"]["r"])}) + "\n")
            obs, _ = env.reset()

        if global_step >= args.learning_starts:
            if learning_start is None:
                learning_start = time.time()
            index = np.random.randint(0, global_step + 1, size=args.batch_size)
            b_obs, b_next_obs = torch.Tensor(buffer_obs[index]), torch.Tensor(buffer_next_obs[index])
            b_actions, b_rewards, b_terminated = torch.Tensor(buffer_actions[index]), torch.Tensor(buffer_rewards[index]), torch.Tensor(buffer_terminated[index])
            with torch.no_grad():
                next_actions, next_log_prob, _ = actor.get_action(b_next_obs)
                min_next_q = torch.min(qf1_target(b_next_obs, next_actions), qf2_target(b_next_obs, next_actions)) - alpha * next_log_prob
                target = b_rewards.flatten() + (1 - b_terminated.flatten()) * args.gamma * min_next_q.view(-1)
            qf1_loss = 0.5 * F.mse_loss(qf1(b_obs, b_actions).view(-1), target)
            qf2_loss = 0.5 * F.mse_loss(qf2(b_obs, b_actions).view(-1), target)
            q_optimizer.zero_grad()
            (qf1_loss + qf2_loss).backward()
            q_optimizer.step()

            actions, log_prob, _ = actor.get_action(b_obs)
            min_q = torch.min(qf1(b_obs, actions), qf2(b_obs, actions))
            actor_loss = ((alpha * log_prob) - min_q).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()

            with torch.no_grad():
                _, log_prob, _ = actor.get_action(b_obs)
            alpha_loss = (-log_alpha.exp() * (log_prob + target_entropy)).mean()
            alpha_optimizer.zero_grad()
            alpha_loss.backward()
            alpha_optimizer.step()
            alpha = log_alpha.exp().item()

            for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                target_param.data.copy_(args.tau * param.data + (1 - args.tau) * target_param.data)
            for param, target_param in zip(qf2.parameters(), qf2_target.parameters()):
                target_param.data.copy_(args.tau * param.data + (1 - args.tau) * target_param.data)
            if global_step % 100 == 0:
                metrics.write(json.dumps({"global_step": global_step + 1, "losses/qf_loss": qf1_loss.item() + qf2_loss.item(), "losses/alpha": alpha}) + "\n")
    train_sps = (args.total_timesteps - args.learning_starts) / (time.time() - learning_start) if learning_start else 0.0

    eval_env = gym.make(args.env_id)
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = eval_env.reset(seed=args.seed + 100_000 + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                _, _, action = actor.get_action(torch.Tensor(obs).unsqueeze(0))
            obs, reward, terminated, truncated, _ = eval_env.step(action.numpy()[0])
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    metrics.write(json.dumps({"global_step": args.total_timesteps, "eval/return_mean": float(np.mean(returns)), "eval/return_std": float(np.std(returns))}) + "\n")
    metrics.close()
    summary = {"global_step": args.total_timesteps, "train_sps": round(train_sps, 1), "eval_return_mean": float(np.mean(returns)),
               "eval_return_std": float(np.std(returns)), "episodes": episodes, "wall_time_s": round(time.time() - start, 2), "run_dir": str(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main(tyro.cli(Args))
