"""The theorems of soft policy iteration, checked on finite MDPs (docs/soft_policy_iteration.md, SPI-1 ... SPI-13)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import soft_policy_iteration_tabular as spi

SCRIPT = Path(spi.__file__)
QUIET = lambda *args, **kwargs: None  # noqa: E731


def random_policy(rng, num_states, num_actions):
    return rng.dirichlet(np.ones(num_actions), size=num_states)


def run(args: spi.Args) -> dict:
    return spi.soft_policy_iteration(spi.build_mdp(args), args, log=QUIET)


@settings(max_examples=60, deadline=None)
@given(
    num_states=st.integers(1, 12),
    num_actions=st.integers(1, 5),
    gamma=st.floats(0.0, 0.999),
    alpha=st.floats(0.0, 5.0),
    seed=st.integers(0, 10_000),
)
def test_soft_bellman_operator_is_a_gamma_contraction(num_states, num_actions, gamma, alpha, seed):
    rng = np.random.default_rng(seed)
    mdp = spi.random_mdp(num_states, num_actions, seed)
    policy = random_policy(rng, num_states, num_actions)
    for _ in range(10):
        Q1 = rng.normal(scale=10.0, size=(num_states, num_actions))
        Q2 = rng.normal(scale=10.0, size=(num_states, num_actions))
        T = lambda Q: spi.soft_bellman_operator(Q, mdp, policy, alpha, gamma)  # noqa: E731
        assert spi.sup_norm(T(Q1) - T(Q2)) <= gamma * spi.sup_norm(Q1 - Q2) + 1e-10


def test_contraction_bound_is_tight_for_a_constant_shift():
    # Without termination, T(Q + c) = T(Q) + gamma c exactly: gamma is the best possible constant.
    mdp = spi.random_mdp(6, 3, seed=0)
    policy = random_policy(np.random.default_rng(0), 6, 3)
    Q = np.random.default_rng(1).normal(size=(6, 3))
    shifted = spi.soft_bellman_operator(Q + 2.0, mdp, policy, 0.7, 0.9)
    np.testing.assert_allclose(shifted, spi.soft_bellman_operator(Q, mdp, policy, 0.7, 0.9) + 0.9 * 2.0, atol=1e-12)


def test_soft_bellman_operator_by_hand():
    # One state, two actions, self-loop: (T Q)(s,a) = r(a) + gamma [pi^T Q + alpha H(pi)].
    mdp = spi.FiniteMDP(P=np.ones((1, 2, 1)), R=np.array([[1.0, -1.0]]), terminal=np.zeros(1, bool), name="hand")
    policy = np.array([[0.25, 0.75]])
    Q = np.array([[2.0, 4.0]])
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    v = 0.25 * 2.0 + 0.75 * 4.0 + 0.5 * entropy
    np.testing.assert_allclose(spi.soft_bellman_operator(Q, mdp, policy, 0.5, 0.9), [[1.0 + 0.9 * v, -1.0 + 0.9 * v]])


@pytest.mark.parametrize("seed", range(5))
def test_soft_policy_improvement_is_monotone_from_any_policy(seed):
    # Lemma 2 from a random (not only uniform) starting policy, with exact evaluation on both sides.
    rng = np.random.default_rng(seed)
    mdp = spi.random_mdp(15, 4, seed)
    alpha, gamma = rng.uniform(0.05, 2.0), 0.9
    old_policy = random_policy(rng, 15, 4)
    Q_old = spi.soft_policy_evaluation_exact(mdp, old_policy, alpha, gamma)
    Q_new = spi.soft_policy_evaluation_exact(mdp, spi.soft_greedy_policy(Q_old, alpha), alpha, gamma)
    assert np.min(Q_new - Q_old) >= -1e-10
    assert np.max(Q_new - Q_old) > 1e-6  # a random policy is not already optimal


def test_the_reported_improvement_margin_is_the_smallest_entry_of_the_improvement():
    # Lemma 2's check (SPI-8) must look at the worst (s, a), min(Q^new - Q^old), recomputed here by exact evaluation.
    args = spi.Args(env="random", alpha=0.5, gamma=0.9)
    mdp = spi.build_mdp(args)
    Q_old = spi.soft_policy_evaluation_exact(mdp, np.full(mdp.R.shape, 1 / mdp.R.shape[1]), 0.5, 0.9)
    Q_new = spi.soft_policy_evaluation_exact(mdp, spi.soft_greedy_policy(Q_old, 0.5), 0.5, 0.9)
    first = run(args)["history"][0]
    assert first["improvement_margin"] == pytest.approx(np.min(Q_new - Q_old), abs=1e-8)
    assert np.max(Q_new - Q_old) - np.min(Q_new - Q_old) > 0.1  # the worst entry is not the best one


def test_iterative_evaluation_equals_linear_solve():
    mdp = spi.random_mdp(10, 3, seed=4)
    policy = random_policy(np.random.default_rng(4), 10, 3)
    Q, sweeps, ratio = spi.soft_policy_evaluation(np.zeros((10, 3)), mdp, policy, 0.3, 0.9, 1e-12, 100_000)
    np.testing.assert_allclose(Q, spi.soft_policy_evaluation_exact(mdp, policy, 0.3, 0.9), atol=1e-10)
    assert ratio <= 0.9 + 1e-9 and sweeps > 10


@pytest.mark.parametrize("env", ["random", "FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1"])
@pytest.mark.parametrize("alpha", [0.0, 0.05, 1.0])
def test_soft_policy_iteration_reaches_soft_value_iteration(env, alpha):
    result = run(spi.Args(env=env, alpha=alpha, gamma=0.95))
    assert all(result["verdicts"].values()), result["verdicts"]
    assert result["distance_to_q_star"] < 1e-8
    assert result["largest_contraction_ratio"] <= 0.95 + 1e-9


def test_soft_optimal_policy_is_a_fixed_point():
    # pi* = exp((Q* - V*)/alpha) evaluates back to Q*, and V* = alpha logsumexp(Q*/alpha) = E_pi*[Q* - alpha log pi*].
    mdp = spi.random_mdp(8, 3, seed=7)
    Q_star, _ = spi.soft_value_iteration(mdp, 0.5, 0.9, 1e-13, 100_000)
    pi_star = spi.soft_greedy_policy(Q_star, 0.5)
    np.testing.assert_allclose(spi.soft_policy_evaluation_exact(mdp, pi_star, 0.5, 0.9), Q_star, atol=1e-9)
    np.testing.assert_allclose(spi.soft_state_value(Q_star, pi_star, 0.5), spi.soft_max_value(Q_star, 0.5), atol=1e-12)


def ordinary_policy_iteration(mdp, gamma):
    """Textbook policy iteration written independently: exact evaluation of a deterministic policy, argmax improvement."""
    num_states, num_actions = mdp.R.shape
    actions = np.zeros(num_states, dtype=int)
    while True:
        P_pi = mdp.P[np.arange(num_states), actions]
        V = np.linalg.solve(np.eye(num_states) - gamma * P_pi, mdp.R[np.arange(num_states), actions])
        Q = mdp.R + gamma * mdp.P @ V
        new_actions = np.argmax(Q, axis=1)
        if np.all(Q[np.arange(num_states), new_actions] <= Q[np.arange(num_states), actions] + 1e-12):
            return Q
        actions = new_actions


@pytest.mark.parametrize("slippery", [True, False])
def test_alpha_to_zero_is_ordinary_policy_iteration_on_frozenlake(slippery):
    mdp = spi.toy_text_mdp("FrozenLake-v1", slippery)
    gamma = 0.95
    Q_hard = ordinary_policy_iteration(mdp, gamma)
    hard = run(spi.Args(env="FrozenLake-v1", slippery=slippery, alpha=0.0, gamma=gamma))
    np.testing.assert_allclose(hard["Q"], Q_hard, atol=1e-8)
    # 0 <= Q*_alpha - Q*_0 <= alpha log|A| / (1 - gamma): the entropy bonus is at most alpha log|A| per step.
    gaps = []
    for alpha in [0.1, 0.01, 0.001]:
        soft = np.array(run(spi.Args(env="FrozenLake-v1", slippery=slippery, alpha=alpha, gamma=gamma))["Q"])
        assert np.all(soft - Q_hard >= -1e-8)
        assert np.max(soft - Q_hard) <= alpha * np.log(4) / (1 - gamma) + 1e-8
        gaps.append(np.max(soft - Q_hard))
    assert gaps[0] > gaps[1] > gaps[2]


def test_frozenlake_table_matches_a_hand_checked_state():
    mdp = spi.toy_text_mdp("FrozenLake-v1", slippery=True)
    # State 14 (row 3, col 2), action 2 (right): slips to 10 (up), 14 (down, wall), or reaches the goal 15 (+1, ends).
    np.testing.assert_allclose(mdp.R[14, 2], 1 / 3)
    expected = np.zeros(16)
    expected[[10, 14]] = 1 / 3
    np.testing.assert_allclose(mdp.P[14, 2], expected)
    assert set(np.flatnonzero(mdp.terminal)) == {5, 7, 11, 12, 15}  # the four holes and the goal
    assert np.all(mdp.P[5] == 0) and np.all(mdp.R[5] == 0)


def test_terminal_states_collect_no_entropy_bonus():
    # An absorbing self-loop would be worth alpha log|A| / (1 - gamma) = 27.7 here; termination must be worth 0.
    result = run(spi.Args(env="FrozenLake-v1", alpha=1.0, gamma=0.95))
    Q, V = np.array(result["Q"]), np.array(result["V"])
    for hole in [5, 7, 11, 12, 15]:
        assert np.all(Q[hole] == 0.0) and abs(V[hole]) < 1e-12
    assert np.all(Q[~spi.toy_text_mdp("FrozenLake-v1", True).terminal] < 1.0 + np.log(4) / 0.05)


def wrong_operator_with_plus_log_pi(Q, mdp, policy, alpha, gamma):
    """The sign error: +alpha log pi penalises entropy instead of rewarding it."""
    log_pi = np.log(np.where(policy > 0, policy, 1.0))
    return mdp.R + gamma * mdp.P @ np.sum(policy * (Q + alpha * log_pi), axis=-1)


@pytest.mark.parametrize("env", ["random", "FrozenLake-v1"])
def test_checks_catch_a_wrong_entropy_sign(env, monkeypatch):
    monkeypatch.setattr(spi, "soft_bellman_operator", wrong_operator_with_plus_log_pi)
    verdicts = run(spi.Args(env=env, alpha=1.0 if env == "random" else 0.05))["verdicts"]
    assert not verdicts["lemma2_monotone_improvement"]
    assert not verdicts["lemma1_fixed_point_equals_linear_solve"]


def test_checks_catch_gamma_above_one():
    args = spi.Args(env="random", gamma=1.05, max_iterations=2, max_evaluation_sweeps=50)
    with np.errstate(all="ignore"):
        result = spi.soft_policy_iteration(spi.build_mdp(args), args, log=QUIET)
    assert not result["verdicts"]["lemma1_contraction"]
    assert result["largest_contraction_ratio"] > 1.0


def run_cli(*flags, cwd=None, script=SCRIPT):
    return subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_writes_json_and_all_verdicts_hold(tmp_path):
    out = tmp_path / "result.json"
    completed = run_cli("--env", "FrozenLake8x8-v1", "--alpha", "0.1", "--output-json", str(out))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count(": holds") == 4
    result = json.loads(out.read_text())
    assert all(result["verdicts"].values())
    assert np.array(result["Q"]).shape == (64, 4) and np.array(result["Q_star"]).shape == (64, 4)
    np.testing.assert_allclose(np.array(result["policy"]).sum(axis=1), 1.0)
    assert result["history"][0]["iteration"] == 1 and result["args"]["alpha"] == 0.1


@pytest.mark.parametrize("flags", [["--gamma", "1.0"], ["--alpha", "-1"], ["--env", "NoSuchEnv-v0"], ["--tol", "0"],
                                   ["--output-json", "/no/such/folder/result.json"],
                                   ["--num-states", "200000", "--env", "random"]])  # 6,000 GiB: refused before numpy tries
def test_cli_refuses_bad_input_with_exit_2(flags):
    completed = run_cli(*flags)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr and flags[0] in completed.stderr


def test_stopping_before_convergence_is_not_called_a_violation():
    completed = run_cli("--quiet", "--max-iterations", "2")
    assert completed.returncode == 1
    assert "not converged within 2 iterations" in completed.stdout and "VIOLATED" not in completed.stdout


def test_script_runs_alone_in_an_empty_folder(tmp_path):
    shutil.copy(SCRIPT, tmp_path / SCRIPT.name)
    completed = run_cli("--env", "random", "--quiet", cwd=tmp_path, script=tmp_path / SCRIPT.name)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count(": holds") == 4
