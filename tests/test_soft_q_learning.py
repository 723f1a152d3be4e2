"""Tests of soft_q_learning.py: the soft values, the kernel and SVGD against closed forms, the multi-goal
environment against its definition, and the command line as a user runs it."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import soft_q_learning as sql

SCRIPT = Path(sql.__file__).resolve()
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}


# ---------------------------------------------------------------------------------------------------- soft values
def test_discrete_soft_value_is_alpha_logsumexp_and_tends_to_max():
    q = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    alpha = 0.5
    by_hand = torch.tensor([alpha * math.log(sum(math.exp(v / alpha) for v in row)) for row in q.tolist()])
    torch.testing.assert_close(sql.discrete_soft_value(q, alpha), by_hand)
    # max Q <= V <= max Q + α log|A|, so V → max Q as α → 0
    for alpha in (1.0, 0.1, 1e-3):
        value = sql.discrete_soft_value(q, alpha)
        assert torch.all(value >= q.max(-1).values - 1e-6)
        assert torch.all(value <= q.max(-1).values + alpha * math.log(3) + 1e-6)
    torch.testing.assert_close(sql.discrete_soft_value(q, 1e-4), q.max(-1).values, atol=1e-3, rtol=0)


def test_boltzmann_policy_is_exp_of_q_minus_v_over_alpha():
    q, alpha = torch.randn(5, 4), 0.3
    policy = torch.softmax(sql.boltzmann_logits(q, alpha), -1)
    torch.testing.assert_close(policy, torch.exp((q - sql.discrete_soft_value(q, alpha).unsqueeze(-1)) / alpha))


def test_importance_sampled_soft_value_converges_to_quadrature():
    alpha = 0.5

    def q_function(a):
        return torch.sin(3 * a) + a**2

    grid = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    exact = alpha * math.log(torch.trapezoid(torch.exp(q_function(grid) / alpha), grid).item())
    log_q = sql.uniform_log_density(1)
    assert log_q == pytest.approx(-math.log(2))
    generator = torch.Generator().manual_seed(0)
    errors = []
    for num_samples in (4, 64, 4096):
        actions = torch.rand(200, num_samples, generator=generator, dtype=torch.float64) * 2 - 1
        estimates = sql.importance_sampled_soft_value(q_function(actions), alpha, log_q)
        errors.append((estimates - exact).abs().mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01


def test_soft_q_target_masks_only_termination():
    reward, next_value = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0])
    target = sql.soft_q_target(reward, torch.tensor([0.0, 1.0]), next_value, gamma=0.9)
    torch.testing.assert_close(target, torch.tensor([10.0, 1.0]))
    with pytest.raises(AssertionError):  # (B,) against (B, 1) would silently broadcast to (B, B)
        sql.soft_bellman_loss(torch.zeros(4), torch.zeros(4, 1))


@pytest.mark.parametrize("discrete", [True, False])
def test_soft_bellman_loss_reads_the_target_network_and_scales_the_reward(discrete):
    # (SQL-5), (SQL-6) with V̄ of (SQL-2) or (SQL-4) from Q̄, which here differs from Q, and a reward scale of 3 (SQL-12).
    alpha, scale, gamma, samples = 0.5, 3.0, 0.9, 8
    args = sql.Args(alpha=alpha, reward_scale=scale, gamma=gamma, q_lr=1e-3, hidden_sizes=(16,), value_samples=samples)
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,))
    torch.manual_seed(0)
    agent = sql.Agent(args, 4, space)
    learner = sql.Learner(agent, args)
    with torch.no_grad():
        for parameter in agent.q_target.parameters():
            parameter.add_(torch.randn_like(parameter))
    g = torch.Generator().manual_seed(1)
    actions = torch.randint(0, 3, (16,), generator=g) if discrete else torch.rand(16, 2, generator=g) * 2 - 1
    batch = sql.Batch(torch.randn(16, 4, generator=g), actions, torch.randn(16, generator=g),
                      torch.randn(16, 4, generator=g), (torch.rand(16, generator=g) < 0.3).float())
    torch.manual_seed(2)
    loss = learner.q_loss(batch)[0]
    torch.manual_seed(2)
    with torch.no_grad():
        if discrete:
            next_value = alpha * torch.log(torch.exp(agent.q_target(batch.next_obs) / alpha).sum(-1))
            q = agent.q(batch.obs)[torch.arange(16), batch.actions]
        else:  # α log of the mean of exp(Q̄/α) / q(a) over uniform a in [−1, 1]², q(a) = 1/4
            proposal = torch.rand(16, samples, 2) * 2 - 1
            next_value = alpha * torch.log((torch.exp(agent.q_target(batch.next_obs, proposal) / alpha) * 4).mean(-1))
            q = agent.q(batch.obs, batch.actions)
        y = scale * batch.rewards + gamma * (1 - batch.terminated) * next_value
        torch.testing.assert_close(loss, 0.5 * ((q - y) ** 2).mean())


def test_acting_samples_actions_with_the_boltzmann_probabilities():
    # (SQL-1) by Gumbel-max: over many draws the frequencies are softmax(Q/α).
    agent = sql.Agent(sql.Args(alpha=0.5, hidden_sizes=(8,)), 4, gym.spaces.Discrete(3))
    with torch.no_grad():
        agent.q.net[-1].weight.zero_()
        agent.q.net[-1].bias.copy_(torch.tensor([0.0, 0.5, 1.0]))
    actions, _ = agent.act(np.zeros((20_000, 4), np.float32), generator=torch.Generator().manual_seed(0))
    frequencies = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(frequencies, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0).numpy(), atol=0.01)


def test_target_update_is_a_hard_copy_at_tau_one_and_a_convex_combination_below():
    torch.manual_seed(0)
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in target.parameters()]
    sql.polyak_update(target, online, 0.25)  # (SQL-7)
    for new, old, theta in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, 0.25 * theta + 0.75 * old)
    sql.polyak_update(target, online, 1.0)
    for new, theta in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(new, theta)


# ---------------------------------------------------------------------------------------------------- kernel and SVGD
def test_rbf_kernel_value_and_gradient_match_hand_and_autograd():
    generator = torch.Generator().manual_seed(0)
    xs = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    kappa, kappa_grad = sql.rbf_kernel(xs, ys)
    squared = ((xs[0, :, None] - ys[0, None]) ** 2).sum(-1).detach()
    # the 11th largest of 20 values, as top_k(n // 2 + 1) in softqlearning
    median = torch.sort(squared.flatten()).values[9]
    torch.testing.assert_close(kappa[0], torch.exp(-squared / (median / math.log(5))))
    weights = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)
    autograd = torch.autograd.grad((kappa * weights).sum(), xs)[0]
    torch.testing.assert_close((kappa_grad * weights.unsqueeze(-1)).sum(-2), autograd)
    # the bandwidth floor: identical particles give h = 1e-3, not 0
    same = torch.zeros(1, 3, 2)
    assert torch.all(sql.rbf_kernel(same, same)[0] == 1.0)


def mixture_log_density(points):
    """log of ½ N((−2, 0), 0.5² I) + ½ N((2, 0), 0.5² I), up to a constant."""
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    squared = ((points.unsqueeze(-2) - centers) ** 2).sum(-1)
    return torch.logsumexp(-squared / (2 * 0.25), dim=-1)


def test_svgd_moves_particles_from_one_gaussian_to_both_modes_of_a_mixture():
    particles = torch.randn(1, 100, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + torch.tensor([0.0, 1.0])
    for _ in range(500):
        points = particles.detach().requires_grad_(True)
        grad_log_p = torch.autograd.grad(mixture_log_density(points).sum(), points)[0]
        particles = particles + 0.05 * sql.svgd_direction(particles, grad_log_p, particles)
    x = particles[0, :, 0]
    left, right = x[x < 0], x[x > 0]
    assert 30 <= len(left) <= 70  # both modes hold a fair share
    assert abs(left.mean() + 2) < 0.3 and abs(right.mean() - 2) < 0.3
    assert 0.25 < left.std() < 0.75 and 0.25 < right.std() < 0.75  # spread like the modes, not collapsed


class KnownQ(torch.nn.Module):
    """Q(s, a) = −8 (a² − 0.25)², bimodal with modes at a = ±0.5, independent of s."""

    def forward(self, obs, actions):
        return -8.0 * (actions[..., 0] ** 2 - 0.25) ** 2


def sampler_trained_on_known_q(squash_correction: bool) -> np.ndarray:
    """20,000 actions of a sampler trained by amortized SVGD (SQL-9, SQL-10) on KnownQ at α = 0.5, from one seed."""
    torch.manual_seed(0)
    args = sql.with_defaults(sql.Args(alpha=0.5, svgd_particles=32, squash_correction=squash_correction,
                                      policy_lr=1e-3, hidden_sizes=(32, 32)))
    agent = sql.Agent(args, 1, gym.spaces.Box(-1, 1, (1,)))
    learner = sql.Learner(agent, args)
    agent.q = KnownQ()
    obs = torch.zeros(16, 1)
    for _ in range(1500):
        sql.optimizer_step(learner.policy_optimizer, learner.svgd_loss(obs))
    with torch.no_grad():
        return agent.sampler.sample(torch.zeros(1), 20_000)[:, 0].numpy()


EDGES = np.linspace(-1, 1, 21)
FINE = np.linspace(-1, 1, 20_001)
BOLTZMANN = np.exp(KnownQ()(None, torch.tensor(FINE)[:, None]).numpy() / 0.5)  # exp(Q/α), (SQL-1), at α = 0.5


def total_variation(samples: np.ndarray, density: np.ndarray) -> float:
    """Between the histogram of the samples and the density, both on 20 bins of [−1, 1]."""
    expected = np.array([density[(FINE >= lo) & (FINE < hi)].sum() for lo, hi in zip(EDGES[:-1], EDGES[1:])])
    observed = np.histogram(samples, EDGES)[0] / len(samples)
    return 0.5 * np.abs(observed - expected / expected.sum()).sum()


def test_amortized_sampler_trained_on_known_q_matches_boltzmann_density():
    samples = sampler_trained_on_known_q(squash_correction=False)
    observed = np.histogram(samples, EDGES)[0] / len(samples)
    assert total_variation(samples, BOLTZMANN) < 0.08, observed.round(3)
    assert total_variation(samples, BOLTZMANN) < total_variation(samples, BOLTZMANN * (1 - FINE**2)) - 0.02
    assert 0.4 < (samples < 0).mean() < 0.6  # both modes
    assert observed[[4, 15]].min() > 1.5 * observed[[9, 10]].max()  # bins at ±0.5 hold more than the bins at 0


def test_with_the_squash_correction_the_sampler_matches_exp_q_over_alpha_times_one_minus_a_squared():
    # (SQL-11) adds ∇_a Σ log(1 − a²) to ∇_a log p while SVGD moves particles in a: the sampler's target becomes
    # exp(Q/α) ∏(1 − a²), not (SQL-1) (measured: total variation 0.05 to the product against 0.10 to exp(Q/α)).
    samples = sampler_trained_on_known_q(squash_correction=True)
    product = BOLTZMANN * (1 - FINE**2)
    assert total_variation(samples, product) < 0.08
    assert total_variation(samples, product) < total_variation(samples, BOLTZMANN) - 0.02


# ---------------------------------------------------------------------------------------------------- MultiGoal
def test_multigoal_dynamics_rewards_and_termination():
    env = sql.MultiGoalEnv()
    starts = np.array([env.reset(seed=i)[0] for i in range(2000)])
    assert np.abs(starts.mean(0)).max() < 0.01 and np.allclose(starts.std(0), 0.1, atol=0.01)
    env.position = np.array([1.0, 2.0], dtype=np.float32)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.25]))
    np.testing.assert_allclose(obs, [1.5, 1.75])
    nearest = min((1.5 - gx) ** 2 + (1.75 - gy) ** 2 for gx, gy in [(5, 0), (-5, 0), (0, 5), (0, -5)])
    assert reward == pytest.approx(-(30 * (0.25 + 0.0625) + nearest))
    assert not terminated and not truncated and info["goal"] == -1
    # actions are clipped to [−1, 1]², positions to [−7, 7]²
    env.position = np.array([6.5, 0.0], dtype=np.float32)
    obs, reward, terminated, *_ = env.step(np.array([3.0, 0.0]))
    np.testing.assert_allclose(obs, [7.0, 0.0])
    assert reward == pytest.approx(-(30 * 1.0 + 4.0)) and not terminated
    # within distance 1 of a goal: +10 and the episode ends; goals are numbered (5,0), (−5,0), (0,5), (0,−5)
    env.position = np.array([0.0, -3.5], dtype=np.float32)
    obs, reward, terminated, _, info = env.step(np.array([0.2, -1.0]))
    assert terminated and info["goal"] == 3
    assert reward == pytest.approx(-(30 * (0.04 + 1.0) + (0.04 + 0.25)) + 10)
    wrapped = sql.make_env("MultiGoal")
    wrapped.reset(seed=0)
    for step in range(30):
        *_, terminated, truncated, _ = wrapped.step(np.zeros(2))
    assert truncated and not terminated and step == 29


# ---------------------------------------------------------------------------------------------------- training loop
class CountingEnv(gym.Env):
    """obs = (episode id, t); terminates when action 1 is taken at t >= 3; registered with a time limit of 4."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.episode, self.t], np.float32), 1.0, bool(action == 1 and self.t >= 3), False, {}


gym.register("SQLCountingEnv-v0", entry_point=CountingEnv, max_episode_steps=4)


def test_the_training_loop_stores_termination_not_truncation_and_the_true_next_observation(tmp_path):
    # Through sql.train's own choice of flags: d is `terminated` only (SQL-5), s' the episode's own last observation.
    args = sql.Args(env_id="SQLCountingEnv-v0", num_envs=2, total_timesteps=120, learning_starts=40, batch_size=8,
                    hidden_sizes=(8,), eval_every=0, eval_episodes=1, save_buffer=True, output_dir=str(tmp_path))
    summary = sql.train(args)
    buffer = torch.load(Path(summary["run_dir"]) / "checkpoint.pt", weights_only=True)["buffer"]
    s, s_next, a, d = buffer["obs"], buffer["next_obs"], buffer["actions"], buffer["terminated"]
    assert len(s) == 120
    assert torch.equal(s_next[:, 0], s[:, 0]) and torch.equal(s_next[:, 1], s[:, 1] + 1)
    assert torch.equal(d, ((a == 1) & (s_next[:, 1] >= 3)).float())
    assert ((s_next[:, 1] == 4) & (a == 0) & (d == 0)).sum() >= 5  # truncated at the time limit: not terminal


# ---------------------------------------------------------------------------------------------------- command line
def run_script(args, tmp_path, script=SCRIPT, cwd=None, timeout=120):
    command = [sys.executable, str(script), "--output-dir", str(tmp_path / "runs"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=cwd or tmp_path, timeout=timeout)


def read_run(tmp_path):
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return run_dir, json.loads((run_dir / "summary.json").read_text()), metrics


TINY_MULTIGOAL = ["--total-timesteps", 300, "--learning-starts", 100, "--eval-every", 200, "--eval-episodes", 2,
                  "--goal-episodes", 6, "--log-every", 100, "--value-samples", 4, "--svgd-particles", 8]


@pytest.mark.slow
def test_cli_multigoal_tiny_run_writes_summary_goal_counts_and_plot(tmp_path):
    done = run_script([*TINY_MULTIGOAL, "--plot", tmp_path / "goals.png"], tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir, summary, metrics = read_run(tmp_path)
    for key in ("global_step", "train_sps", "eval_return_mean", "eval_return_std", "episodes", "wall_time_s",
                "run_dir"):
        assert key in summary
    assert summary["global_step"] == 300 and summary["eval_stochastic"] is True
    assert len(summary["goal_reach_counts"]) == 4 and sum(summary["goal_reach_counts"]) <= 6
    evaluations = [m for m in metrics if "eval/return_mean" in m]
    assert len(evaluations) == 2 and all("eval/return_std" in m for m in evaluations)
    assert any("losses/actor_loss" in m for m in metrics) and all("wall_time" in m for m in metrics)
    assert json.loads((run_dir / "args.json").read_text())["reward_scale"] == 0.1  # the paper's MultiGoal preset
    assert (run_dir / "checkpoint.pt").exists() and (tmp_path / "goals.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cli_discrete_cartpole_tiny_run(tmp_path):
    done = run_script(["--env-id", "CartPole-v1", "--total-timesteps", 600, "--learning-starts", 200, "--eval-every", 0,
                       "--eval-episodes", 2, "--log-every", 200], tmp_path)
    assert done.returncode == 0, done.stderr
    _, summary, metrics = read_run(tmp_path)
    assert summary["global_step"] == 600 and summary["eval_stochastic"] is False and "goal_reach_counts" not in summary
    assert any("losses/entropy" in m for m in metrics)


@pytest.mark.parametrize("changes, named", [
    (dict(env_id="FrozenLake-v1"), "--env-id"),
    (dict(env_id="NoSuchEnv-v0"), "--env-id"),
    (dict(gamma=1.5), "--gamma"),
    (dict(alpha=0.0), "--alpha"),
    (dict(svgd_update_ratio=1.0), "--svgd-update-ratio"),
    (dict(total_timesteps=0), "--total-timesteps"),
    (dict(env_id="CartPole-v1", plot="x.png"), "--plot"),
    (dict(device="cuda"), "--device"),
])
def test_bad_configurations_raise_a_usage_error_naming_the_flag(tmp_path, changes, named):
    if changes.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(sql.UsageError, match=named):
        settings = {"total_timesteps": 100, "learning_starts": 0, **changes}
        sql.train(sql.Args(output_dir=str(tmp_path / "runs"), **settings))
    assert not (tmp_path / "runs").exists()  # bad input leaves no run directory behind


@pytest.mark.slow
def test_no_stored_transition_crosses_an_episode_boundary_and_resume_continues(tmp_path):
    # MultiGoal with two vector envs: every stored transition must satisfy next_obs = clip(obs + action).
    done = run_script(["--total-timesteps", 400, "--num-envs", 2, "--learning-starts", 200, "--eval-every", 0,
                       "--goal-episodes", 2, "--save-buffer", "--value-samples", 4, "--svgd-particles", 8], tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir, summary, _ = read_run(tmp_path)
    buffer = torch.load(run_dir / "checkpoint.pt", weights_only=True)["buffer"]
    assert buffer["size"] == 400 and summary["episodes"] >= 10  # 30-step episodes: many boundaries in 400 steps
    expected = torch.clamp(buffer["obs"] + buffer["actions"].clamp(-1, 1), -7, 7)
    torch.testing.assert_close(buffer["next_obs"], expected, atol=1e-5, rtol=0)
    # a checkpoint whose networks do not fit this run: exit 2, naming the flag and the checkpoint's value
    done = run_script(["--resume", run_dir / "checkpoint.pt", "--hidden-sizes", 64, 64], tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--hidden-sizes (64, 64) differs from the checkpoint's (128, 128)" in done.stderr
    # resume from that checkpoint continues the count in the same run directory
    done = run_script(["--resume", run_dir / "checkpoint.pt", "--total-timesteps", 500, "--num-envs", 2,
                       "--eval-every", 0, "--goal-episodes", 2, "--value-samples", 4, "--svgd-particles", 8], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 500
    assert len(list((tmp_path / "runs").iterdir())) == 1
    # --eval-only on the same checkpoint: one JSON line with the goal counts and the plot; no new run directory
    done = run_script(["--eval-only", run_dir / "checkpoint.pt", "--goal-episodes", 4, "--plot", tmp_path / "e.png"],
                      tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["global_step"] == 500 and result["checkpoint"] == str(run_dir / "checkpoint.pt")
    assert len(result["goal_reach_counts"]) == 4 and sum(result["goal_reach_counts"]) <= 4
    assert {"eval_return_mean", "eval_return_std"} <= result.keys() and result["eval_stochastic"] is True
    assert (tmp_path / "e.png").stat().st_size > 10_000 and len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.slow
def test_sigint_saves_checkpoint_and_summary_and_exits_130(tmp_path):
    command = [sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "runs"), "--env-id", "CartPole-v1",
               "--total-timesteps", "1000000", "--log-every", "100", "--eval-every", "0", "--eval-episodes", "1"]
    process = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 60
    while not list((tmp_path / "runs").glob("*/metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    run_dir, summary, metrics = read_run(tmp_path)
    assert summary["interrupted"] is True and 0 < summary["global_step"] < 1_000_000
    assert (run_dir / "checkpoint.pt").exists()
    assert not any("eval/return_mean" in m for m in metrics)  # an interrupted run skips the final evaluation
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"] == summary["global_step"]


@pytest.mark.slow
def test_discrete_soft_q_learning_beats_random_on_cartpole(tmp_path):
    # A uniformly random policy lasts about 22 steps on CartPole-v1.
    done = run_script(["--env-id", "CartPole-v1", "--total-timesteps", 5000, "--eval-every", 0, "--eval-episodes", 5,
                       "--log-every", 2000], tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_run(tmp_path)[1]["eval_return_mean"] > 100


def test_squash_correction_gradient_is_exact_and_pushes_saturated_particles_inward():
    u = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    a = torch.tanh(u).requires_grad_(True)
    torch.log1p(-a**2).sum().backward()  # the gradient through log(1 - a²), exact in float64 away from saturation
    torch.testing.assert_close(sql.squash_correction_gradient(u), a.grad)
    # Saturated particles, where 1 - a² is 0 in float32: the push back into the box is finite and points inward.
    saturated = torch.tensor([-12.0, -8.0, 8.0, 12.0])
    push = sql.squash_correction_gradient(saturated)
    assert torch.isfinite(push).all() and (push * saturated < 0).all() and push.abs().min() > 1e6
