"""Environments for the resume tests, importable as `--env-id fixed_start:FixedStartBox-v0` (the module:id form a
user's own environment takes): every episode starts from the same state and lasts 100 steps, so a run split at an
episode boundary and resumed (a resumed run starts new episodes) must continue exactly as if it had never stopped."""

import gymnasium as gym
import numpy as np


class FixedStart(gym.Env):
    """x ← 0.9 x + 0.1 push, reward −x², the observation (x, sin t/10, cos t/10); push in [−1, 1] or {−1, 0, 1}."""

    def __init__(self, discrete: bool = False):
        self.discrete = discrete
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, 1.0
        return self.observation(), {}

    def step(self, action):
        push = int(action) - 1 if self.discrete else float(np.asarray(action).reshape(-1)[0])
        self.t, self.x = self.t + 1, 0.9 * self.x + 0.1 * push
        return self.observation(), -self.x**2, False, False, {}

    def observation(self):
        return np.array([self.x, np.sin(self.t / 10), np.cos(self.t / 10)], np.float32)


gym.register("FixedStartBox-v0", entry_point=FixedStart, max_episode_steps=100)
gym.register("FixedStartDiscrete-v0", entry_point=FixedStart, kwargs={"discrete": True}, max_episode_steps=100)
