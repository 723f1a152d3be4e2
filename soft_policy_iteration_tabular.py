"""Tabular soft policy iteration, with its theorems checked numerically.

Soft policy iteration (Haarnoja et al. 2018a, Lemmas 1-2 and Theorem 1) alternates
    soft policy evaluation:   Q <- T_pi Q  until convergence, where
                              (T_pi Q)(s,a) = r(s,a) + gamma E_{s'} E_{a'~pi}[Q(s',a') - alpha log pi(a'|s')]
    soft policy improvement:  pi_new(.|s) proportional to exp(Q^{pi_old}(s,.) / alpha)
and converges to the optimal maximum-entropy policy pi*(a|s) = exp((Q*(s,a) - V*(s)) / alpha).

On a finite MDP every quantity can be computed exactly, so this script checks the theory as it runs:
- Lemma 1 (soft policy evaluation): T_pi is a gamma-contraction in the sup norm, ||T Q1 - T Q2|| <= gamma ||Q1 - Q2||
  (SPI-5); its fixed point equals the solution of the linear system (I - gamma P_pi) Q = r_pi (SPI-6).
- Lemma 2 (soft policy improvement): Q^{pi_new} >= Q^{pi_old} everywhere (SPI-8).
- Theorem (soft policy iteration): the iteration converges to Q*, the fixed point of soft value iteration
  Q(s,a) = r(s,a) + gamma E_{s'}[alpha log sum_a' exp(Q(s',a')/alpha)]  (SPI-10, SPI-11).
With --alpha 0 everything reduces to ordinary policy iteration and value iteration.

Papers
- Haarnoja, Zhou, Abbeel, Levine 2018a, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL with a Stochastic
  Actor", arXiv:1801.01290 (Lemma 1, Lemma 2, Theorem 1; proofs in App. B).
- Haarnoja, Zhou, Hartikainen, et al. 2018b, "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905
  (Eq. 2-4, with the temperature written out).
- Haarnoja, Tang, Abbeel, Levine 2017, "Reinforcement Learning with Deep Energy-Based Policies", arXiv:1702.08165
  (Theorems 1-3: soft value, soft Bellman equation, soft value iteration).
Theory: docs/soft_policy_iteration.md (equations SPI-1 ... SPI-13).

Run:  python soft_policy_iteration_tabular.py --env FrozenLake-v1 --alpha 0.05
Exit status: 0 when every check holds, 1 when one is violated or the iteration did not converge, 2 for bad input.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import tyro


@dataclass
class Args:
    env: Literal["random", "FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v1", "Taxi-v4"] = "FrozenLake-v1"
    """the finite MDP: a seeded random MDP, or a gymnasium toy-text environment built from its transition table"""
    slippery: bool = True
    """FrozenLake only: the ice is slippery (the intended move succeeds with probability 1/3)"""
    num_states: int = 20
    """random MDP: number of states"""
    num_actions: int = 4
    """random MDP: number of actions"""
    alpha: float = 0.05
    """temperature (0: hard-max policy iteration); small, as FrozenLake's one reward of 1 drowns in alpha=1's bonus"""
    gamma: float = 0.95
    """discount factor, in [0, 1)"""
    tol: float = 1e-10
    """stop policy evaluation when ||Q_{k+1} - Q_k||_inf < tol, and policy iteration when the policy moves less"""
    max_iterations: int = 100
    """at most this many rounds of evaluation + improvement"""
    max_evaluation_sweeps: int = 100_000
    """at most this many applications of T_pi in one policy evaluation"""
    random_pairs: int = 32
    """random pairs (Q1, Q2) on which the contraction ratio is measured at each iteration"""
    seed: int = 1
    """seed of the random MDP and of the random Q pairs"""
    output_json: str | None = None
    """write every figure and the final tables (Q, V, policy, Q*) to this JSON file"""
    quiet: bool = False
    """print only the verdicts"""


# ----------------------------------------------------------------------------------------------------------------
# Finite MDPs
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class FiniteMDP:
    """P[s, a, s'] is the probability of continuing to s' (it sums to less than 1 where the episode can terminate:
    the missing mass is termination, after which nothing more is earned); R[s, a] is the expected reward."""

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray  # bool per state: reached only through termination, so its value is zero
    name: str
    grid_shape: tuple[int, int] | None = None
    cell_labels: list[str] = field(default_factory=list)  # one letter per state for the printed grid
    action_arrows: str = ""  # one arrow per action, in the environment's action order


def random_mdp(num_states: int, num_actions: int, seed: int) -> FiniteMDP:
    """Dense random MDP: Dirichlet(1) next-state distributions, rewards uniform in [-1, 1]. No termination."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
    R = rng.uniform(-1.0, 1.0, size=(num_states, num_actions))
    return FiniteMDP(P, R, np.zeros(num_states, dtype=bool), f"random MDP ({num_states} states, {num_actions} actions)")


def toy_text_mdp(env_id: str, slippery: bool) -> FiniteMDP:
    """Build (P, R) from a gymnasium toy-text environment's table env.unwrapped.P[s][a] = [(prob, s', r, terminated)].

    Terminal states are worth exactly zero: a transition that terminates earns its reward and then nothing more, so
    its probability is left out of P. Modelling the terminal state as a plain absorbing state instead would be wrong
    in the soft setting: it would go on collecting the entropy bonus alpha * H(pi) at every step, forever, and a
    hole in FrozenLake would be worth alpha log|A| / (1 - gamma) instead of 0.
    """
    import gymnasium as gym

    kwargs = {"is_slippery": slippery} if env_id.startswith("FrozenLake") else {}
    env = gym.make(env_id, **kwargs).unwrapped
    num_states, num_actions = env.observation_space.n, env.action_space.n
    P = np.zeros((num_states, num_actions, num_states))
    R = np.zeros((num_states, num_actions))
    terminal = np.zeros(num_states, dtype=bool)
    for s in range(num_states):
        for a in range(num_actions):
            for prob, next_state, reward, terminated in env.P[s][a]:
                R[s, a] += prob * reward
                if terminated:
                    terminal[next_state] = True
                else:
                    P[s, a, next_state] += prob
    # Rows of terminal states are never reached through P; zero them so their Q is exactly 0.
    P[terminal] = 0.0
    R[terminal] = 0.0

    grid_shape, labels, arrows = None, [], ""
    if env_id.startswith("FrozenLake"):
        grid_shape = env.desc.shape
        labels = [c.decode() for c in env.desc.flatten()]
        arrows = "←↓→↑"  # FrozenLake: 0 left, 1 down, 2 right, 3 up
    elif env_id.startswith("CliffWalking"):
        grid_shape = tuple(env.shape)
        labels = ["F"] * num_states
        for s in range(num_states):
            row, col = divmod(s, grid_shape[1])
            if row == grid_shape[0] - 1 and 0 < col < grid_shape[1] - 1:
                labels[s] = "C"
        labels[(grid_shape[0] - 1) * grid_shape[1]] = "S"
        labels[num_states - 1] = "G"
        arrows = "↑→↓←"  # CliffWalking: 0 up, 1 right, 2 down, 3 left
    name = f"{env_id}" + ("" if not env_id.startswith("FrozenLake") else f" (slippery={slippery})")
    return FiniteMDP(P, R, terminal, name, grid_shape, labels, arrows)


# ----------------------------------------------------------------------------------------------------------------
# The math: soft values, operators, improvement
# ----------------------------------------------------------------------------------------------------------------
def entropy(policy: np.ndarray) -> np.ndarray:
    """H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s), an expectation, with 0 log 0 = 0  — (SPI-2)."""
    safe = np.where(policy > 0.0, policy, 1.0)
    return -np.sum(policy * np.log(safe), axis=-1)


def soft_state_value(Q: np.ndarray, policy: np.ndarray, alpha: float) -> np.ndarray:
    """V(s) = E_{a~pi}[Q(s,a) - alpha log pi(a|s)] = pi(.|s)^T Q(s,.) + alpha H(pi(.|s))  — (SPI-3); 2018b, Eq. 3."""
    return np.sum(policy * Q, axis=-1) + alpha * entropy(policy)


def soft_bellman_operator(Q: np.ndarray, mdp: FiniteMDP, policy: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """(T_pi Q)(s,a) = r(s,a) + gamma E_{s'~p}[V(s')], V from soft_state_value  — (SPI-4); 2018b, Eq. 2."""
    return mdp.R + gamma * mdp.P @ soft_state_value(Q, policy, alpha)


def soft_policy_evaluation_exact(mdp: FiniteMDP, policy: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """The fixed point of T_pi by one linear solve: (I - gamma P_pi) q = r + gamma alpha P H(pi), over (s, a) pairs,
    where P_pi[(s,a), (s',a')] = P[s,a,s'] pi(a'|s')  — (SPI-6)."""
    num_states, num_actions = mdp.R.shape
    P_pi = (mdp.P[:, :, :, None] * policy[None, None, :, :]).reshape(num_states * num_actions, -1)
    r_pi = (mdp.R + gamma * alpha * mdp.P @ entropy(policy)).reshape(-1)
    q = np.linalg.solve(np.eye(num_states * num_actions) - gamma * P_pi, r_pi)
    return q.reshape(num_states, num_actions)


def soft_greedy_policy(Q: np.ndarray, alpha: float) -> np.ndarray:
    """pi_new(a|s) = exp((Q(s,a) - V(s)) / alpha), V(s) = alpha logsumexp(Q(s,.)/alpha)  — (SPI-7); 2018b, Eq. 4.

    Subtracting max_a Q before exponentiating is the stable softmax. With alpha = 0 this is the greedy argmax
    (ties go to the lowest action index, so the policy cannot flip between equal actions)."""
    if alpha == 0.0:
        return np.eye(Q.shape[1])[np.argmax(Q, axis=1)]
    logits = (Q - Q.max(axis=1, keepdims=True)) / alpha
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def soft_max_value(Q: np.ndarray, alpha: float) -> np.ndarray:
    """V*(s) = alpha log sum_a exp(Q(s,a)/alpha), computed stably; max_a Q(s,a) when alpha = 0  — (SPI-9);
    2017, Thm. 1."""
    q_max = Q.max(axis=1)
    if alpha == 0.0:
        return q_max
    return q_max + alpha * np.log(np.sum(np.exp((Q - q_max[:, None]) / alpha), axis=1))


def soft_value_iteration(mdp: FiniteMDP, alpha: float, gamma: float, tol: float,
                         max_sweeps: int) -> tuple[np.ndarray, int]:
    """Q <- r + gamma P V*(Q) until ||Q_{k+1} - Q_k||_inf < tol; the reference Q* the iteration must reach  —
    (SPI-10); 2017, Thm. 3."""
    Q = np.zeros_like(mdp.R)
    for sweep in range(1, max_sweeps + 1):
        Q_next = mdp.R + gamma * mdp.P @ soft_max_value(Q, alpha)
        if np.max(np.abs(Q_next - Q)) < tol:
            return Q_next, sweep
        Q = Q_next
    return Q, max_sweeps


def sup_norm(x: np.ndarray) -> float:
    """||x||_inf = max |x|, with the absolute value (some write-ups drop it), the norm of Lemma 1  — (SPI-5)."""
    return float(np.max(np.abs(x)))


# ----------------------------------------------------------------------------------------------------------------
# Soft policy iteration with the checks
# ----------------------------------------------------------------------------------------------------------------
def soft_policy_evaluation(Q, mdp, policy, alpha, gamma, tol, max_sweeps):
    """Apply T_pi until ||Q_{k+1} - Q_k||_inf < tol. Returns (Q, sweeps, largest contraction ratio along the way).

    Along the iteration, ||Q_{k+2} - Q_{k+1}|| / ||Q_{k+1} - Q_k|| is a contraction ratio on the pair (Q_{k+1}, Q_k);
    it is measured only while the difference is far above rounding error (eps * ||Q||), so it is exact to ~1e-11."""
    largest_ratio, previous_step = 0.0, None
    for sweep in range(1, max_sweeps + 1):
        Q_next = soft_bellman_operator(Q, mdp, policy, alpha, gamma)
        step = sup_norm(Q_next - Q)
        if previous_step is not None and previous_step > 1e-5 * max(1.0, sup_norm(Q)):
            largest_ratio = max(largest_ratio, step / previous_step)
        Q, previous_step = Q_next, step
        if step < tol:
            return Q, sweep, largest_ratio
    return Q, max_sweeps, largest_ratio


def contraction_ratio_on_random_pairs(mdp, policy, alpha, gamma, num_pairs, rng) -> float:
    """max over random (Q1, Q2) of ||T_pi Q1 - T_pi Q2||_inf / ||Q1 - Q2||_inf, which Lemma 1 bounds by gamma
    — (SPI-5); 2018a, Lemma 1."""
    scale = 1.0 + sup_norm(mdp.R) / (1.0 - min(gamma, 0.99))
    largest = 0.0
    for _ in range(num_pairs):
        Q1 = rng.normal(scale=scale, size=mdp.R.shape)
        Q2 = Q1 + rng.normal(scale=scale * rng.uniform(0.01, 1.0), size=mdp.R.shape)
        difference = sup_norm(soft_bellman_operator(Q1, mdp, policy, alpha, gamma)
                              - soft_bellman_operator(Q2, mdp, policy, alpha, gamma))
        largest = max(largest, difference / sup_norm(Q1 - Q2))
    return largest


def soft_policy_iteration(mdp: FiniteMDP, args: Args, log=print) -> dict:
    """Evaluate, improve, repeat until the policy stops moving; check Lemma 1, Lemma 2 and the theorem on the way  —
    (SPI-8), (SPI-11); 2018a, Theorem 1."""
    alpha, gamma, tol = args.alpha, args.gamma, args.tol
    rng = np.random.default_rng(args.seed)
    nonterminal = ~mdp.terminal
    num_actions = mdp.R.shape[1]
    # Start from the uniform policy, the maximum-entropy one.
    policy = np.full(mdp.R.shape, 1.0 / num_actions)
    Q_star, value_iteration_sweeps = soft_value_iteration(mdp, alpha, gamma, tol, args.max_evaluation_sweeps)

    # Floating-point slack of the checks: evaluation stopped at ||Q_{k+1} - Q_k|| < tol is within gamma tol/(1 - gamma)
    # of the fixed point, so two evaluated Q tables (or Q and Q*) can differ by twice that without any theorem failing.
    evaluation_error = gamma * tol / (1.0 - gamma) if gamma < 1.0 else float("inf")
    slack = 2.0 * evaluation_error + 1e-9 * (1.0 + sup_norm(Q_star))

    Q, _, _ = soft_policy_evaluation(np.zeros_like(mdp.R), mdp, policy, alpha, gamma, tol, args.max_evaluation_sweeps)
    history = []
    largest_ratio, smallest_margin, largest_linear_gap = 0.0, float("inf"), 0.0
    converged = False
    log(f"{'iter':>4} {'sweeps':>7} {'max ratio':>10} {'min margin':>12} {'|Q-Q_lin|':>10} {'|Q-Q*|':>10} "
        f"{'entropy':>8}")
    for iteration in range(1, args.max_iterations + 1):
        new_policy = soft_greedy_policy(Q, alpha)
        new_Q, sweeps, ratio_along_iteration = soft_policy_evaluation(Q, mdp, new_policy, alpha, gamma, tol,
                                                                      args.max_evaluation_sweeps)
        ratio_on_pairs = contraction_ratio_on_random_pairs(mdp, new_policy, alpha, gamma, args.random_pairs, rng)
        linear_gap = sup_norm(new_Q - soft_policy_evaluation_exact(mdp, new_policy, alpha, gamma))
        # Lemma 2: Q^{pi_new} - Q^{pi_old} >= 0 everywhere (terminal states are 0 in both, so they are left out).
        margin = float(np.min((new_Q - Q)[nonterminal]))
        policy_change = sup_norm(new_policy - policy)
        row = {
            "iteration": iteration,
            "evaluation_sweeps": sweeps,
            "contraction_ratio": max(ratio_along_iteration, ratio_on_pairs),
            "improvement_margin": margin,
            "linear_solve_gap": linear_gap,
            "distance_to_q_star": sup_norm(new_Q - Q_star),
            "mean_policy_entropy": float(np.mean(entropy(new_policy)[nonterminal])),
            "policy_change": policy_change,
        }
        history.append(row)
        log(
            f"{iteration:>4} {sweeps:>7} {row['contraction_ratio']:>10.6f} {margin:>12.3e} {linear_gap:>10.2e} "
            f"{row['distance_to_q_star']:>10.2e} {row['mean_policy_entropy']:>8.4f}"
        )
        largest_ratio = max(largest_ratio, row["contraction_ratio"])
        smallest_margin = min(smallest_margin, margin)
        largest_linear_gap = max(largest_linear_gap, linear_gap)
        Q, policy = new_Q, new_policy
        if policy_change < tol:
            converged = True
            break

    distance_to_q_star = sup_norm(Q - Q_star)
    verdicts = {
        # A contraction needs both: the ratio bounded by gamma, and below 1 (gamma >= 1 bounds it, does not contract).
        "lemma1_contraction": largest_ratio <= gamma * (1.0 + 1e-9) + 1e-12 and largest_ratio < 1.0,
        "lemma1_fixed_point_equals_linear_solve": largest_linear_gap <= slack,
        "lemma2_monotone_improvement": smallest_margin >= -slack,
        "theorem_converges_to_soft_value_iteration": converged and distance_to_q_star <= slack,
    }
    return {
        "mdp": mdp.name,
        "alpha": alpha,
        "gamma": gamma,
        "tol": tol,
        "iterations": len(history),
        "converged": converged,
        "value_iteration_sweeps": value_iteration_sweeps,
        "largest_contraction_ratio": largest_ratio,
        "smallest_improvement_margin": smallest_margin,
        "largest_linear_solve_gap": largest_linear_gap,
        "distance_to_q_star": distance_to_q_star,
        "check_slack": slack,
        "verdicts": verdicts,
        "history": history,
        "Q": Q.tolist(),
        # A terminal state is worth 0: no action is taken there, so it has no entropy bonus either.
        "V": np.where(mdp.terminal, 0.0, soft_state_value(Q, policy, alpha)).tolist(),
        "policy": policy.tolist(),
        "Q_star": Q_star.tolist(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------
def policy_grid(mdp: FiniteMDP, policy: np.ndarray) -> str:
    """The most probable action of each cell as an arrow with its probability; terminal cells show their letter."""
    rows, cols = mdp.grid_shape
    lines = []
    for row in range(rows):
        cells = []
        for col in range(cols):
            s = row * cols + col
            if mdp.terminal[s]:
                cells.append(f"  {mdp.cell_labels[s]}   ")
            else:
                best = int(np.argmax(policy[s]))
                cells.append(f"{mdp.action_arrows[best]} {policy[s, best]:.2f}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def build_mdp(args: Args) -> FiniteMDP:
    if args.env == "random":
        return random_mdp(args.num_states, args.num_actions, args.seed)
    return toy_text_mdp(args.env, args.slippery)


def validate(args: Args) -> None:
    """Refuse impossible settings with one line naming the flag."""
    if not 0.0 <= args.gamma < 1.0:
        raise ValueError(f"--gamma must be in [0, 1) for the contraction to hold, got {args.gamma}")
    if args.alpha < 0.0:
        raise ValueError(f"--alpha must be >= 0 (0 is ordinary policy iteration), got {args.alpha}")
    if args.tol <= 0.0:
        raise ValueError(f"--tol must be > 0, got {args.tol}")
    if args.num_states < 1 or args.num_actions < 1:
        raise ValueError("--num-states and --num-actions must be at least 1")
    if args.env == "random" and hasattr(os, "sysconf"):
        # The largest arrays: P (S·A·S) and the matrix of the exact solve of (SPI-6), (S·A)², in float64.
        pairs = args.num_states * args.num_actions
        needed = 8 * (pairs * args.num_states + pairs**2)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > total:
            raise ValueError(f"--num-states {args.num_states} and --num-actions {args.num_actions} need "
                             f"{needed / 2**30:.0f} GiB, more than the {total / 2**30:.0f} GiB of memory; lower them")
    if args.max_iterations < 1 or args.max_evaluation_sweeps < 1:
        raise ValueError("--max-iterations and --max-evaluation-sweeps must be at least 1")
    if args.output_json:
        # Fail now, not after the computation, when the file cannot be written.
        folder = os.path.dirname(os.path.abspath(args.output_json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ValueError(f"--output-json {args.output_json}: the folder {folder} does not exist or is not writable")


def main(args: Args) -> int:
    try:
        validate(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mdp = build_mdp(args)
    log = (lambda *a, **k: None) if args.quiet else print
    log(f"Soft policy iteration on {mdp.name}: alpha={args.alpha}, gamma={args.gamma}, tol={args.tol}")
    result = soft_policy_iteration(mdp, args, log)
    if mdp.grid_shape is not None:
        log("\nFinal policy (most probable action and its probability):")
        log(policy_grid(mdp, np.array(result["policy"])))
    print(
        f"\nlargest contraction ratio {result['largest_contraction_ratio']:.6f} (gamma {args.gamma}), "
        f"smallest improvement margin {result['smallest_improvement_margin']:.3e}, "
        f"|Q - Q*| {result['distance_to_q_star']:.3e} after {result['iterations']} iterations"
    )
    for name, holds in result["verdicts"].items():
        if name == "theorem_converges_to_soft_value_iteration" and not result["converged"]:
            # Stopping early is not a counterexample: the theorem speaks of the limit.
            print(f"{name}: not converged within {args.max_iterations} iterations (raise --max-iterations)")
        else:
            print(f"{name}: {'holds' if holds else 'VIOLATED'}")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"args": asdict(args), **result}, f, indent=1)
    return 0 if all(result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
