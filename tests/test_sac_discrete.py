"""Tests of sac_discrete.py: the discrete SAC equations against hand computations, the frame replay buffer
against ground truth, and the script as a user runs it."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import sac_discrete as sd

SCRIPT = Path(sd.__file__).resolve()


# ----------------------------------------------------------------------------------------------------------
# The math on a 2-state, 3-action batch, computed by hand with explicit sums
# ----------------------------------------------------------------------------------------------------------

LOGITS = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
Q1 = [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]
Q2 = [[1.5, 1.0, 3.5], [-0.5, 0.0, 3.0]]
ALPHA, GAMMA = 0.5, 0.9


def hand_policy(logits):
    z = sum(math.exp(x) for x in logits)
    probs = [math.exp(x) / z for x in logits]
    return probs, [math.log(p) for p in probs]


def tensors():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    q = torch.tensor([Q1, Q2], dtype=torch.float64)
    return logits, q


def test_soft_state_value_is_the_exact_expectation_over_actions():
    logits, q = tensors()
    probs, log_probs = sd.policy_probabilities(logits)
    value = sd.soft_state_value(probs, log_probs, q.min(dim=0).values, torch.tensor(ALPHA, dtype=torch.float64))
    for s in range(2):
        p, logp = hand_policy(LOGITS[s])
        expected = sum(p[a] * (min(Q1[s][a], Q2[s][a]) - ALPHA * logp[a]) for a in range(3))
        assert value[s].item() == pytest.approx(expected, abs=1e-12)


def test_soft_q_target_bootstraps_only_through_non_terminated_steps():
    reward = torch.tensor([1.0, 2.0], dtype=torch.float64)
    next_value = torch.tensor([10.0, 20.0], dtype=torch.float64)
    terminated = torch.tensor([0.0, 1.0], dtype=torch.float64)  # state 0 was truncated or ongoing: it bootstraps
    target = sd.soft_q_target(reward, terminated, next_value, GAMMA)
    assert target.tolist() == pytest.approx([1.0 + GAMMA * 10.0, 2.0])


def test_critic_loss_is_the_sum_of_the_two_half_squared_errors():
    q_taken = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([0.5, 1.0], dtype=torch.float64)
    expected = sum(0.5 * (q_taken[i, b].item() - target[b].item()) ** 2 for i in range(2) for b in range(2)) / 2
    assert sd.critic_loss(q_taken, target).item() == pytest.approx(expected, abs=1e-12)


def test_actor_loss_sums_over_actions_and_averages_over_states():
    logits, q = tensors()
    probs, log_probs = sd.policy_probabilities(logits)
    loss = sd.actor_loss(probs, log_probs, q.min(dim=0).values, torch.tensor(ALPHA, dtype=torch.float64))
    per_state = []
    for s in range(2):
        p, logp = hand_policy(LOGITS[s])
        per_state.append(sum(p[a] * (ALPHA * logp[a] - min(Q1[s][a], Q2[s][a])) for a in range(3)))
    assert loss.item() == pytest.approx(sum(per_state) / 2, abs=1e-12)


def test_temperature_loss_matches_hand_computation():
    logits, _ = tensors()
    probs, log_probs = sd.policy_probabilities(logits)
    target_entropy = sd.target_entropy_for(3, 0.5)
    assert target_entropy == pytest.approx(0.5 * math.log(3))
    log_alpha = torch.tensor(math.log(ALPHA), dtype=torch.float64, requires_grad=True)
    loss = sd.temperature_loss(log_alpha, -sd.policy_entropy(probs, log_probs), target_entropy)
    per_state = []
    for s in range(2):
        p, logp = hand_policy(LOGITS[s])
        per_state.append(sum(p[a] * (-math.log(ALPHA) * (logp[a] + target_entropy)) for a in range(3)))
    assert loss.item() == pytest.approx(sum(per_state) / 2, abs=1e-12)
    # Its gradient in log α is that of (DSAC-7) in α times 1/α: the same sign, so the same direction for α.
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(sum(per_state) / 2 / math.log(ALPHA), abs=1e-12)


@pytest.mark.parametrize("how, hand", [("min", min), ("mean", lambda q1, q2: (q1 + q2) / 2)])
def test_the_twin_estimate_is_the_minimum_or_the_average_action_by_action(how, hand):
    _, q = tensors()
    expected = [[hand(Q1[s][a], Q2[s][a]) for a in range(3)] for s in range(2)]
    assert sd.twin_q_estimate(q, how).tolist() == [pytest.approx(row, abs=1e-12) for row in expected]


def test_actor_loss_gradient_matches_finite_differences():
    logits, q = tensors()
    q = q.min(dim=0).values
    alpha = torch.tensor(ALPHA, dtype=torch.float64)

    def loss_of(x):
        return sd.actor_loss(*sd.policy_probabilities(x), q, alpha)

    x = logits.clone().requires_grad_(True)
    loss_of(x).backward()
    eps = 1e-6
    numeric = torch.zeros_like(logits)
    for s in range(2):
        for a in range(3):
            plus, minus = logits.clone(), logits.clone()
            plus[s, a] += eps
            minus[s, a] -= eps
            numeric[s, a] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
    torch.testing.assert_close(x.grad, numeric, atol=1e-8, rtol=1e-6)


def test_actor_loss_minimiser_is_the_boltzmann_policy_of_min_q():
    """π* ∝ exp(min_i Q_i/α) (DSAC-7): the actor gradient vanishes there and nowhere nearby."""
    _, q = tensors()
    q, alpha = q.min(dim=0).values, torch.tensor(ALPHA, dtype=torch.float64)
    boltzmann_logits = (q / alpha).requires_grad_(True)
    sd.actor_loss(*sd.policy_probabilities(boltzmann_logits), q, alpha).backward()
    assert boltzmann_logits.grad.abs().max().item() < 1e-12
    assert sd.actor_loss(*sd.policy_probabilities(torch.tensor(LOGITS, dtype=torch.float64)), q, alpha) > sd.actor_loss(
        *sd.policy_probabilities(boltzmann_logits.detach()), q, alpha
    )


@pytest.mark.parametrize("entropy_below_target", [True, False])
def test_temperature_grows_when_entropy_is_below_target_and_shrinks_above(entropy_below_target):
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 5.0, 0.0]]) if entropy_below_target else torch.zeros(2, 3)
    probs, log_probs = sd.policy_probabilities(logits)
    target_entropy = sd.target_entropy_for(3, 0.5)
    assert (sd.policy_entropy(probs, log_probs).mean() < target_entropy) == entropy_below_target
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.Adam([log_alpha], lr=0.1)
    sd.temperature_loss(log_alpha, -sd.policy_entropy(probs, log_probs), target_entropy).backward()
    optimizer.step()
    assert (log_alpha.item() > 0) == entropy_below_target


def test_the_temperature_loss_is_a_function_of_alpha_alone():
    # (DSAC-8) in the log α form: π and log π enter as constants, so no gradient reaches the logits; the gradient in
    # log α is H − H̄, whatever α.
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.tensor(math.log(ALPHA), dtype=torch.float64, requires_grad=True)
    target_entropy = sd.target_entropy_for(3, 0.5)
    sd.temperature_loss(log_alpha, -sd.policy_entropy(*sd.policy_probabilities(logits)), target_entropy).backward()
    assert logits.grad is None
    entropy = sum(-sum(p * logp for p, logp in zip(*hand_policy(row))) for row in LOGITS) / 2
    assert log_alpha.grad.item() == pytest.approx(entropy - target_entropy, abs=1e-12)


def small_agent(**changes):
    """An MLP agent on 4-dimensional observations and 3 actions whose target critics differ from the online ones, and
    its learner."""
    torch.manual_seed(0)
    args = sd.with_defaults(sd.Args(hidden_sizes=(16,), **changes))
    agent = sd.Agent(args, (4,), 3)
    with torch.no_grad():
        for parameter in agent.critic_target.parameters():
            parameter.add_(torch.randn_like(parameter))
    return agent, sd.Learner(agent, args, sd.target_entropy_for(3, args.target_entropy_scale))


def random_batch(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return sd.Batch(torch.randn(size, 4, generator=g), torch.randint(0, 3, (size,), generator=g),
                    torch.randn(size, generator=g), torch.randn(size, 4, generator=g),
                    (torch.rand(size, generator=g) < 0.3).float())


@pytest.mark.parametrize("twin_q", ["min", "mean"])
def test_critic_target_reads_the_target_critics_and_the_current_policy(twin_q):
    (agent, learner), batch = small_agent(twin_q=twin_q), random_batch()
    loss = learner.critic_losses(batch)[0]
    with torch.no_grad():
        alpha = math.exp(agent.log_alpha.item())
        log_pi = torch.log_softmax(agent.actor(batch.next_obs), -1)
        q1_bar, q2_bar = agent.critic_target(batch.next_obs)  # (DSAC-3) reads Q̄, never Q
        q_bar = torch.minimum(q1_bar, q2_bar) if twin_q == "min" else (q1_bar + q2_bar) / 2
        y = batch.rewards + learner.args.gamma * (1 - batch.terminated) * (log_pi.exp() * (q_bar - alpha * log_pi)).sum(-1)
        q1, q2 = (q.gather(1, batch.actions[:, None]).squeeze(1) for q in agent.critic(batch.obs))
        expected = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("twin_q", ["min", "mean"])
def test_each_loss_of_the_policy_step_moves_only_its_own_parameters(twin_q):
    # One backward pass for the sum: the actor must get the gradient of (DSAC-6) alone, on Q of the online critics, and
    # log α that of (DSAC-8) alone, H − H̄. A missing detach would leak one loss into the other's parameters.
    (agent, learner), obs = small_agent(twin_q=twin_q), random_batch().obs
    learner.policy_losses(obs)[0].backward(inputs=learner.policy_params)
    alpha = math.exp(agent.log_alpha.item())
    log_pi = torch.log_softmax(agent.actor(obs), -1)
    with torch.no_grad():
        q1, q2 = agent.critic(obs)
        q = torch.minimum(q1, q2) if twin_q == "min" else (q1 + q2) / 2
    actor_loss = (log_pi.exp() * (alpha * log_pi - q)).sum(-1).mean()
    for parameter, expected in zip(agent.actor.parameters(), torch.autograd.grad(actor_loss, list(agent.actor.parameters()))):
        torch.testing.assert_close(parameter.grad, expected)
    entropy = -(log_pi.exp() * log_pi).sum(-1).mean().item()
    assert agent.log_alpha.grad.item() == pytest.approx(entropy - learner.target_entropy, rel=1e-5)


def test_target_update_is_a_convex_combination():
    agent, _ = small_agent()
    before = [p.clone() for p in agent.critic_target.parameters()]
    sd.polyak_update(agent.critic_target, agent.critic, 0.3)  # (DSAC-10)
    for new, old, online in zip(agent.critic_target.parameters(), before, agent.critic.parameters()):
        torch.testing.assert_close(new, 0.3 * online + 0.7 * old)


def test_exploring_samples_actions_with_the_policy_probabilities():
    agent, _ = small_agent()
    with torch.no_grad():
        agent.actor.net[-1].weight.zero_()
        agent.actor.net[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        torch.manual_seed(1)
        actions = agent.actor.explore(torch.zeros(20_000, 4)).numpy()  # (DSAC-1): a ~ π(·|s), not the argmax
    frequencies = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(frequencies, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy(), atol=0.01)


def test_twin_critic_members_are_independent_networks():
    torch.manual_seed(0)
    for obs_shape in [(5,), (4, 36, 36)]:
        critic = sd.TwinQ(obs_shape, 3, (16, 16))
        obs = torch.rand(7, *obs_shape) if len(obs_shape) == 1 else torch.randint(0, 256, (7, *obs_shape), dtype=torch.uint8)
        q = critic(obs)
        assert q.shape == (2, 7, 3)
        q[0].sum().backward()  # Q_1 must not depend on any weight of Q_2
        for layer in [*critic.hidden, critic.out]:
            assert layer.weight.grad[1].abs().max() == 0 and layer.weight.grad[0].abs().max() > 0
        if critic.is_image:
            second_conv = critic.encoder[2].weight.grad  # grouped conv: the second half of the filters is Q_2's
            assert second_conv[64:].abs().max() == 0 and second_conv[:64].abs().max() > 0


def test_image_networks_use_he_initialisation_and_keep_the_feature_scale():
    """Every weight of the image actor and critics is N(0, 2/fan_in), every bias 0 (docs/pitfalls.md#adam-eps-and-init).
    With PyTorch's default the actor's last hidden features of random frames had an RMS of about 0.01, which left its
    gradients far below Adam's eps; the ReLU gain keeps them of order 1."""
    torch.manual_seed(0)
    actor, critic = sd.Actor((4, 84, 84), 9, (128, 128)), sd.TwinQ((4, 84, 84), 9, (128, 128))
    kinds = (torch.nn.Conv2d, torch.nn.Linear, sd.EnsembleLinear)
    layers = [m for m in [*actor.modules(), *critic.modules()] if isinstance(m, kinds)]
    assert len(layers) == 5 + 5
    for layer in layers:
        weight = layer.weight
        if isinstance(layer, sd.EnsembleLinear):  # (members, in, out)
            fan_in = weight.shape[1]
        else:  # (out, in / groups, ...): a grouped convolution's fan-in counts one group's inputs
            fan_in = weight[0].numel()
        assert abs(weight.std().item() / math.sqrt(2.0 / fan_in) - 1) < 0.1, layer
        assert layer.bias.abs().max() == 0
    frames = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8)
    hidden = actor.net[:-1](sd.scaled_frames(frames))
    assert hidden.pow(2).mean().sqrt() > 0.2


def test_channels_last_frames_change_the_memory_layout_not_the_networks():
    """scaled_frames lays the frames out NHWC for speed; the actor and critics must compute what they would on the
    plain NCHW tensor obs.float() / 255 (up to the rounding of a different convolution algorithm)."""
    torch.manual_seed(0)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    frames = sd.scaled_frames(obs)
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(frames, obs.float() / 255.0)
    actor, critic = sd.Actor((4, 84, 84), 6, (16,)), sd.TwinQ((4, 84, 84), 6, (16,))
    with torch.no_grad():
        assert torch.allclose(actor(obs), actor.net(obs.float() / 255.0), rtol=1e-4, atol=1e-5)
        plain = critic.encoder(obs.float() / 255.0).view(5, 2, critic.features).transpose(0, 1)
        for layer in critic.hidden:
            plain = torch.relu(layer(plain))
        assert torch.allclose(critic(obs), critic.out(plain), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Synthetic environments (no ROMs): every observation encodes (episode, step) so the buffers can be checked
# ----------------------------------------------------------------------------------------------------------


class CountingEnv(gym.Env):
    """obs = [episode id, step]; terminates when action 1 is taken at step >= 3, truncated by TimeLimit."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return np.array([self.episode, self.t], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = bool(action == 1 and self.t >= 3)
        return np.array([self.episode, self.t], np.float32), 1.0, terminated, False, {}


class FramesEnv(gym.Env):
    """36x36 grayscale frames (the smallest the Nature CNN accepts); pixel [0,0] = episode id, [0,1] = step. Reward 1 when the action names the
    bright half of the frame (a 1-step memoryless task a CNN learns); ends after 6 or 9 steps (terminated)
    or at the TimeLimit (truncated)."""

    observation_space = gym.spaces.Box(0, 255, (36, 36), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode, self.t, self.side = -1, 0, 0

    def _frame(self):
        frame = np.zeros((36, 36), np.uint8)
        frame[4:, :18] = 200 if self.side == 0 else 0
        frame[4:, 18:] = 200 if self.side == 1 else 0
        frame[0, 0], frame[0, 1] = self.episode % 256, self.t
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t, self.side = 0, int(self.np_random.integers(2))
        return self._frame(), {}

    def step(self, action):
        reward = float(action == self.side)
        self.t += 1
        self.side = int(self.np_random.integers(2))
        terminated = self.t >= (6 if self.episode % 2 else 9)
        return self._frame(), reward, terminated, False, {}


gym.register("CountingEnv-v0", entry_point=CountingEnv, max_episode_steps=7)
gym.register("FramesEnv-v0", entry_point=FramesEnv, max_episode_steps=8)
gym.register("ShortCountingEnv-v0", entry_point=CountingEnv, max_episode_steps=4)


def test_stored_transitions_never_cross_episodes_and_truncation_is_not_termination():
    args = sd.Args(env_id="CountingEnv-v0", num_envs=3)
    envs = sd.make_vector_env(args)
    buffer = sd.ReplayBuffer(1000, (2,), (), torch.long, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    truncations = 0
    for _ in range(200):
        actions = rng.integers(0, 2, size=3)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        done = terminated | truncated
        truncations += int(truncated.sum())
        buffer.add(obs, actions, rewards, sd.true_next_obs(next_obs, infos), terminated, done)
        obs = next_obs
    assert truncations > 0
    n = buffer.size
    data = buffer.data
    s, s_next, a, d = data.obs[:n], data.next_obs[:n], data.actions[:n], data.terminated[:n]
    assert torch.equal(s_next[:, 0], s[:, 0]), "a transition crosses an episode boundary"
    assert torch.equal(s_next[:, 1], s[:, 1] + 1)
    assert torch.equal(d, ((a == 1) & (s_next[:, 1] >= 3)).float()), "terminated must be the env's rule only"
    assert ((s_next[:, 1] == 7) & (d == 0)).any(), "time-limit steps must be stored as not terminated"


def test_the_training_loop_stores_termination_not_truncation_and_the_true_next_observation(tmp_path):
    # The same rules through sd.train's own choice of flags (DSAC-4); a time limit of 4 makes truncations frequent.
    args = sd.Args(env_id="ShortCountingEnv-v0", num_envs=2, total_timesteps=120, learning_starts=40, batch_size=8,
                   hidden_sizes=(8,), eval_every=0, eval_episodes=1, save_buffer=True, output_dir=str(tmp_path))
    summary = sd.train(args)
    buffer = torch.load(Path(summary["run_dir"]) / "checkpoint.pt", weights_only=True)["buffer"]
    s, s_next, a, d = buffer["obs"], buffer["next_obs"], buffer["actions"], buffer["terminated"]
    assert len(s) == 120
    assert torch.equal(s_next[:, 0], s[:, 0]) and torch.equal(s_next[:, 1], s[:, 1] + 1)
    assert torch.equal(d, ((a == 1) & (s_next[:, 1] >= 3)).float())
    assert ((s_next[:, 1] == 4) & (a == 0) & (d == 0)).sum() >= 5  # truncated at the time limit: not terminal


class OneGoodActionEnv(gym.Env):
    """Reward 1 for action 1, 0 otherwise; 10 steps per episode (TimeLimit)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), float(action == 1), False, False, {}


gym.register("OneGoodActionEnv-v0", entry_point=OneGoodActionEnv, max_episode_steps=10)


def test_greedy_evaluation_plays_the_most_probable_action():
    # π(1|s) = 0.58: the greedy policy (DSAC-11) scores 10 in every episode, the sampled one less.
    args = sd.Args(env_id="OneGoodActionEnv-v0", hidden_sizes=(8,))
    agent = sd.Agent(args, (4,), 3)
    with torch.no_grad():
        agent.actor.net[-1].weight.zero_()
        agent.actor.net[-1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    metrics = sd.evaluate(agent, args, torch.device("cpu"), episodes=5)
    assert metrics["eval/return_mean"] == 10.0 and metrics["eval/return_std"] == 0.0
    assert metrics["eval/stochastic_return_mean"] < 9.0


@pytest.mark.parametrize("num_envs", [1, 2])
def test_frame_buffer_rebuilds_the_true_stacks_and_stores_each_frame_once(num_envs):
    args = sd.Args(env_id="FramesEnv-v0", num_envs=num_envs)
    envs = sd.make_vector_env(args)
    assert envs.single_observation_space.shape == (4, 36, 36)
    capacity = 40 * num_envs  # small, so the buffer wraps around many times
    buffer = sd.FrameReplayBuffer(capacity, num_envs, (4, 36, 36), torch.device("cpu"))
    assert buffer.frames.shape == (num_envs, 40, 36, 36) and buffer.frames.dtype == torch.uint8
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for step in range(300):
        actions = rng.integers(0, 2, size=num_envs)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        done = terminated | truncated
        buffer.add(obs, actions, rewards, sd.true_next_obs(next_obs, infos), terminated, done)
        obs = next_obs
        if step >= 10 and step % 7 == 0:
            batch = buffer.sample(64)
            episode, t = batch.obs[:, :, 0, 0].long(), batch.obs[:, :, 0, 1].long()
            next_episode, next_t = batch.next_obs[:, :, 0, 0].long(), batch.next_obs[:, :, 0, 1].long()
            newest = t[:, -1:]
            # FrameStackObservation pads with the reset frame: stack = frames max(t-3, 0) .. t of one episode.
            assert torch.equal(t, (newest + torch.arange(-3, 1)).clamp(min=0))
            assert torch.equal(next_t, (newest + 1 + torch.arange(-3, 1)).clamp(min=0))
            assert (episode == episode[:, -1:]).all() and (next_episode == episode[:, -1:]).all()
            # FramesEnv terminates at step 6 (odd episodes) or 9 (even), never past the time limit of 8.
            limit = torch.where(episode[:, -1] % 2 == 1, 6, 9)
            assert torch.equal(batch.terminated, (next_t[:, -1] == limit).float())



@pytest.mark.slow
def test_pixels_get_the_tested_atari_settings_without_flags_and_a_given_flag_wins(tmp_path):
    # The pixel preset is exactly what the atari100k benchmark suite ran (benchmarks/run.py), so a user who passes
    # nothing but an Atari id gets the settings the README's Atari rows measured.
    spec = importlib.util.spec_from_file_location("runner", SCRIPT.parent / "benchmarks" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    suite = runner.SUITES["atari100k"][0]
    flags = suite["extra"]
    tested = {flags[i][2:].replace("-", "_"): flags[i + 1] for i in range(0, len(flags), 2)}
    tested["total_timesteps"] = suite["total_timesteps"]
    tested["twin_q"] = "min"  # the suite names no --twin-q: its rows ran with the paper's minimum, then the only one
    for name, value in sd.PRESETS["pixels"].items():
        assert type(value)(tested[name]) == value, name
    summary = sd.train(sd.Args(env_id="FramesEnv-v0", total_timesteps=300, learning_starts=100, buffer_size=1000,
                               eval_every=0, eval_episodes=1, adam_eps=1e-6, output_dir=str(tmp_path)))
    resolved = json.loads((Path(summary["run_dir"]) / "args.json").read_text())
    assert resolved["adam_eps"] == 1e-6 and resolved["learning_starts"] == 100  # given on the command line: kept
    for name in ("update_frequency", "tau", "target_network_frequency", "q_lr", "target_entropy_scale", "twin_q"):
        assert resolved[name] == sd.PRESETS["pixels"][name], name
    assert sd.with_defaults(sd.Args(env_id="CartPole-v1")) == sd.Args(env_id="CartPole-v1", **sd.PRESETS["vector"])



@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")
def test_image_observations_drive_the_cnn_and_uint8_buffer_end_to_end(tmp_path):
    args = sd.Args(
        env_id="FramesEnv-v0", adam_eps=1e-4, tau=0.01, total_timesteps=3000, learning_starts=500, buffer_size=5000,
        batch_size=32,
        target_network_frequency=100, eval_every=0, eval_episodes=5, output_dir=str(tmp_path), save_buffer=True,
        update_frequency=2, policy_lr=1e-3, q_lr=1e-3, target_entropy_scale=0.3,
    )
    summary = sd.train(args)
    checkpoint = torch.load(Path(summary["run_dir"]) / "checkpoint.pt", weights_only=True)  # tensors and plain values
    frames = checkpoint["buffer"]["frames"]
    # One 36x36 frame per slot, not two stacks of 4; only the slots written (3000 steps, one more per episode end).
    assert frames.dtype == torch.uint8 and frames.shape[0] == 1 and frames.shape[2:] == (36, 36)
    assert 3000 < frames.shape[1] < 5000
    assert checkpoint["agent"]["critic.encoder.0.weight"].shape[0] == 64  # grouped twin Nature CNN
    # An episode has 8 steps and a random policy scores 4; the CNN must have learned to read the frame.
    assert summary["eval_return_mean"] >= 7.0


def test_atari_preprocessing_gives_four_stacked_84x84_uint8_frames():
    pytest.importorskip("ale_py", reason="ale-py not installed (pip install ale-py)")
    pytest.importorskip("cv2", reason="OpenCV not installed (pip install opencv-python), AtariPreprocessing needs it")
    env = sd.make_env(sd.Args(env_id="ALE/Pong-v5"))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (4, 84, 84) and obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    obs, *_ = env.step(0)
    assert obs.shape == (4, 84, 84)
    env.close()


def test_atari_frame_buffer_memory_at_default_buffer_size_fits_24_gib():
    per_slot = 84 * 84 + 8 + 4 + 4 + 1 + 4  # frame, action, reward, terminated, steps into episode, valid
    small = sd.FrameReplayBuffer(1000, 1, (4, 84, 84), torch.device("cpu"))
    assert sum(store.numel() * store.element_size() for store in small.stores().values()) == 1000 * per_slot
    assert sd.PRESETS["pixels"]["buffer_size"] * per_slot / 2**30 < 0.7
    assert 1_000_000 * per_slot / 2**30 < 7.0  # vs ~53 GiB storing obs and next_obs stacks (docs/pitfalls.md#frame-once-replay)


# ----------------------------------------------------------------------------------------------------------
# The script as a user runs it
# ----------------------------------------------------------------------------------------------------------

TINY = ["--total-timesteps", "400", "--learning-starts", "100", "--batch-size", "16", "--eval-episodes", "1",
        "--eval-every", "0", "--hidden-sizes", "16", "16"]


def run_script(args, cwd, script=SCRIPT, env=None, timeout=120):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)


def read_summary(output_dir: Path) -> dict:
    (summary,) = list(output_dir.glob("*/summary.json"))
    return json.loads(summary.read_text())


@pytest.mark.slow
def test_cli_tiny_run_writes_summary_metrics_args_and_checkpoint(tmp_path):
    result = run_script([*TINY, "--output-dir", str(tmp_path / "runs"), "--log-every", "100", "--save-buffer"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "step 400/400" in result.stderr  # progress and the closing line go to stderr
    summary = read_summary(tmp_path / "runs")
    assert summary["global_step"] == 400 and summary["episodes"] > 0
    assert summary["eval_return_mean"] is not None and summary["eval_stochastic_return_mean"] is not None
    assert summary["train_sps"] > 0
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "args.json").read_text())["env_id"] == "CartPole-v1"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    names = set().union(*records)
    for name in ["charts/episodic_return", "losses/qf_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss",
                 "losses/entropy", "losses/q_mean", "eval/return_mean", "eval/return_std", "eval/stochastic_return_mean"]:
        assert name in names
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "checkpoint.pt.tmp").exists()
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # tensors and plain values only
    assert checkpoint["global_step"] == 400 and checkpoint["gradient_steps"] == 300
    assert checkpoint["buffer"]["size"] == 400 and checkpoint["buffer"]["obs"].shape == (400, 4)  # filled rows only

    # --resume continues in the checkpoint's own run directory, from the saved step.
    result = run_script([*TINY, "--total-timesteps", "600", "--resume", str(run_dir / "checkpoint.pt")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert [path.name for path in (tmp_path / "runs").iterdir()] == [run_dir.name]
    assert read_summary(tmp_path / "runs")["global_step"] == 600
    steps = [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 600
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["gradient_steps"] == 500

    # --eval-only prints one JSON line, greedy and stochastic, and writes no run directory.
    result = run_script(["--eval-only", str(run_dir / "checkpoint.pt"), "--eval-episodes", "1",
                         "--output-dir", str(tmp_path / "evaluated")], tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    evaluated = json.loads(line)
    assert evaluated["global_step"] == 600 and evaluated["checkpoint"] == str(run_dir / "checkpoint.pt")
    assert evaluated["eval_return_mean"] == read_summary(tmp_path / "runs")["eval_return_mean"]
    assert {"eval_return_std", "eval_stochastic_return_mean", "eval_stochastic_return_std"} <= set(evaluated)
    assert not (tmp_path / "evaluated").exists()


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow
def test_continuous_action_space_is_refused_with_exit_2_pointing_to_sac_continuous(tmp_path):
    line = one_error_line(run_script(["--env-id", "Pendulum-v1", *TINY[:4]], tmp_path))
    assert "sac_continuous.py" in line and "--env-id" in line


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--gamma", "-0.5"], "--gamma"),
        (["--batch-size", "512", "--buffer-size", "100"], "--batch-size"),
        (["--env-id", "NoSuchEnv-v9"], "--env-id"),
        (["--target-entropy-scale", "1.5"], "--target-entropy-scale"),
        (["--total-timesteps", "0"], "--total-timesteps"),
    ],
)
@pytest.mark.slow
def test_bad_flags_exit_2_with_one_line(tmp_path, flags, words):
    assert words in one_error_line(run_script([*TINY, *flags], tmp_path))


def test_non_finite_loss_stops_with_exit_1_naming_the_loss(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sd, "critic_loss", lambda q, y: (q - y).mean() * float("nan"))
    args = sd.Args(total_timesteps=400, learning_starts=100, batch_size=16, eval_every=0, log_every=100,
                   checkpoint_every=100, hidden_sizes=(16, 16), output_dir=str(tmp_path))
    assert sd.main(args) == 1
    # The NaN critic makes π(·|s) NaN at the next step: torch.multinomial fails there, and the loss to blame is named.
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("error: losses/qf_loss is nan at step 101") and "last good checkpoint" in line
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    state = torch.load(checkpoint, weights_only=True)
    assert state["global_step"] == 100  # the last good one, not overwritten with NaN weights
    assert all(torch.isfinite(v).all() for v in state["agent"].values())


def test_non_finite_policy_at_acting_time_stops_with_exit_1_naming_the_step(tmp_path, monkeypatch, capsys):
    def update_that_breaks_the_actor(self, batch):  # finite losses, NaN actor weights
        with torch.no_grad():
            for parameter in self.agent.actor.parameters():
                parameter.fill_(float("nan"))
        return {"losses/qf_loss": torch.tensor(1.0)}

    monkeypatch.setattr(sd.Learner, "update", update_that_breaks_the_actor)
    args = sd.Args(total_timesteps=400, learning_starts=100, batch_size=16, eval_every=0, log_every=100,
                   hidden_sizes=(16, 16), output_dir=str(tmp_path))
    assert sd.main(args) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: π(·|s) is not finite at step 101") and "no checkpoint was written" in line
    assert not list(tmp_path.glob("*/checkpoint.pt"))  # NaN weights are never saved


def test_target_network_frequency_counts_gradient_steps(tmp_path, monkeypatch):
    # 3 environments and one gradient step per environment step: 3 gradient steps per vector step. Counted in gradient
    # steps, --target-network-frequency 2 updates the targets after every second one, 120 times in 240 steps (counted
    # in vector steps it would be 80, in environment steps it would fire once per vector step that crosses an even step).
    calls = []
    original = sd.polyak_update
    monkeypatch.setattr(sd, "polyak_update", lambda *a: calls.append(1) or original(*a))
    args = sd.Args(num_envs=3, total_timesteps=300, learning_starts=60, batch_size=16, target_network_frequency=2,
                   eval_every=0, eval_episodes=1, hidden_sizes=(16, 16), output_dir=str(tmp_path))
    summary = sd.train(args)
    checkpoint = torch.load(Path(summary["run_dir"]) / "checkpoint.pt", weights_only=True)
    assert checkpoint["gradient_steps"] == 240
    assert len(calls) == 120


def test_buffers_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    plain, frames = sd.ReplayBuffer(50, (3,), (), torch.long, torch.device("cpu")), sd.FrameReplayBuffer(60, 2, (4, 36, 36), torch.device("cpu"))
    for step in range(40):
        done = rng.random(2) < 0.2
        plain.add(rng.random((2, 3)), rng.integers(0, 2, 2), rng.random(2), rng.random((2, 3)), done)
        frame_obs = rng.integers(0, 256, (2, 4, 36, 36), dtype=np.uint8)
        frames.add(frame_obs, rng.integers(0, 2, 2), rng.random(2), frame_obs, done, done)
    for buffer, fresh in [(plain, sd.ReplayBuffer(50, (3,), (), torch.long, torch.device("cpu"))),
                          (frames, sd.FrameReplayBuffer(60, 2, (4, 36, 36), torch.device("cpu")))]:
        torch.save(buffer.state_dict(), tmp_path / "buffer.pt")
        fresh.load_state_dict(torch.load(tmp_path / "buffer.pt", weights_only=True))
        torch.manual_seed(1)
        expected = buffer.sample(32)
        torch.manual_seed(1)
        for ours, theirs in zip(expected, fresh.sample(32)):
            assert torch.equal(ours, theirs)
    assert np.array_equal(fresh.position, frames.position) and np.array_equal(fresh.episode_step, frames.episode_step)


def test_a_saved_frame_buffer_holds_only_the_slots_written_so_far(tmp_path):
    rng = np.random.default_rng(0)
    buffer, fresh = (sd.FrameReplayBuffer(2000, 2, (4, 36, 36), torch.device("cpu")) for _ in range(2))
    for step in range(10):
        done = np.array([step == 4, False])  # the first stream skips a slot when its episode ends
        frame_obs = rng.integers(0, 256, (2, 4, 36, 36), dtype=np.uint8)
        buffer.add(frame_obs, rng.integers(0, 2, 2), rng.random(2), frame_obs, done, done)
    state = buffer.state_dict()
    assert state["frames"].shape[1] == 12  # 10 transitions, one skipped slot, one pending next frame
    torch.save(state, tmp_path / "buffer.pt")
    fresh.load_state_dict(torch.load(tmp_path / "buffer.pt", weights_only=True))
    for name, store in buffer.stores().items():
        assert torch.equal(store, getattr(fresh, name)), name


@pytest.mark.slow
def test_learns_cartpole_well_beyond_random(tmp_path):
    """A random policy scores about 22 on CartPole-v1; 5k steps (4k updates) with seed 1 must reach 150."""
    args = sd.Args(seed=1, total_timesteps=5_000, eval_every=0, eval_episodes=5, output_dir=str(tmp_path))
    summary = sd.train(args)
    assert summary["eval_return_mean"] >= 150.0, summary


class LivesEnv(gym.Env):
    """A stand-in for an Atari game: 3 lives, one lost every 4 steps; FIRE (action 1) is recorded; the game ends with
    the last life."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def reset(self, *, seed=None, options=None):
        self.t, self.lives, self.actions = 0, 3, []
        return np.zeros((84, 84), np.uint8), {"lives": self.lives}

    def step(self, action):
        self.t += 1
        self.actions.append(int(action))
        if self.t % 4 == 0:
            self.lives -= 1
        return np.full((84, 84), self.t, np.uint8), 1.0, self.lives == 0, False, {"lives": self.lives}


def test_a_lost_life_is_terminal_for_the_update_but_the_game_goes_on():
    env = sd.AtariLives(LivesEnv())
    env.reset()
    assert env.unwrapped.actions == [1]  # FIRE launches the game
    flags = []
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(0)
        flags.append((info["life_lost"], terminated))
        if terminated:
            break
    # Lives are lost at t = 4 and 8 (FIRE is pressed after each, one more step), the game ends at t = 12.
    assert flags.count((True, False)) == 2 and flags[-1] == (False, True)
    assert env.unwrapped.actions.count(1) == 3
    terminations = np.array([False, False])
    infos = {"life_lost": np.array([True, False])}
    np.testing.assert_array_equal(sd.terminal_for_update(terminations, infos, life_loss=True), [True, False])
    np.testing.assert_array_equal(sd.terminal_for_update(terminations, infos, life_loss=False), [False, False])


def test_both_atari_id_families_are_recognised():
    assert sd.is_atari("ALE/Pong-v5") and sd.is_atari("BreakoutNoFrameskip-v4") and not sd.is_atari("CartPole-v1")
