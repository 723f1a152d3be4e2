"""Mutation check: does a wrong equation make a unit test fail?

Each entry of MUTATIONS is one plausible mistake in one script, written as an exact text replacement (script,
docs labels, description, old text, new text). The check copies the scripts, the tests and pytest.ini into a temporary
directory, applies one mutation at a time, and runs that script's fast tests there:

    python -m pytest -x -q -m "not slow" tests/test_<script>.py

A mutation *survives* when every test still passes. Mutations that cannot change what the script computes are marked
equivalent, with the reason; they are run too, and are expected to survive. Before anything runs, the check fails
loudly (exit status 2) if an old text does not occur exactly once in its script, or if an equation label that a
function's docstring cites in a script has no mutation.

Run:  python benchmarks/mutations.py                    # all; writes benchmarks/mutations.md (15-40 min on one core)
      python benchmarks/mutations.py --script sac_discrete --match detach   # a subset; prints, writes no report
      python benchmarks/mutations.py --list               # the mutations, without running anything
Exit status: 0 when no mutation survives but the equivalent ones (and every equivalent one survives), 1 otherwise.
It is a benchmark, not a test: the default `pytest` does not run it.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["soft_policy_iteration_tabular", "soft_q_learning", "sac_continuous", "sac_discrete"]
TESTS = {script: f"tests/test_{script}.py" for script in SCRIPTS}
LABEL = re.compile(r"\b(SPI|SQL|SAC|DSAC)-(\d+)\b")
REPORT = ROOT / "benchmarks" / "mutations.md"
TIMEOUT = 900  # seconds for one mutation's tests; a mutation that hangs them counts as caught (by the timeout)


class Mutation(NamedTuple):
    script: str
    labels: str  # the docs equations it breaks, space-separated; "" for the training loop's plumbing of them
    description: str
    old: str
    new: str
    equivalent: str = ""  # why it cannot change behaviour; empty for a real mistake


M = Mutation
MUTATIONS = [
    # ---------------------------------------------------------------- soft_policy_iteration_tabular.py
    M("soft_policy_iteration_tabular", "SPI-2", "entropy without the expectation: -Σ log π instead of -Σ π log π",
      "-np.sum(policy * np.log(safe), axis=-1)", "-np.sum(np.log(safe), axis=-1)"),
    M("soft_policy_iteration_tabular", "SPI-3", "entropy bonus with the wrong sign in V",
      "np.sum(policy * Q, axis=-1) + alpha * entropy(policy)", "np.sum(policy * Q, axis=-1) - alpha * entropy(policy)"),
    M("soft_policy_iteration_tabular", "SPI-4", "discount dropped from the soft Bellman operator",
      "return mdp.R + gamma * mdp.P @ soft_state_value(Q, policy, alpha)",
      "return mdp.R + mdp.P @ soft_state_value(Q, policy, alpha)"),
    M("soft_policy_iteration_tabular", "SPI-4 SPI-3", "γ where α is meant: the entropy weighted by the discount",
      "return mdp.R + gamma * mdp.P @ soft_state_value(Q, policy, alpha)",
      "return mdp.R + gamma * mdp.P @ soft_state_value(Q, policy, gamma)"),
    M("soft_policy_iteration_tabular", "SPI-5", "sup norm without the absolute value",
      "return float(np.max(np.abs(x)))", "return float(np.max(x))"),
    M("soft_policy_iteration_tabular", "SPI-6", "discount dropped from the entropy term of the linear solve",
      "r_pi = (mdp.R + gamma * alpha * mdp.P @ entropy(policy))", "r_pi = (mdp.R + alpha * mdp.P @ entropy(policy))"),
    M("soft_policy_iteration_tabular", "SPI-7", "the improved policy without its normaliser",
      "return weights / weights.sum(axis=1, keepdims=True)", "return weights"),
    M("soft_policy_iteration_tabular", "SPI-7", "temperature multiplied instead of divided in the soft-greedy policy",
      "logits = (Q - Q.max(axis=1, keepdims=True)) / alpha", "logits = (Q - Q.max(axis=1, keepdims=True)) * alpha"),
    M("soft_policy_iteration_tabular", "SPI-8", "the improvement margin taken as the largest entry, not the smallest",
      "margin = float(np.min((new_Q - Q)[nonterminal]))", "margin = float(np.max((new_Q - Q)[nonterminal]))"),
    M("soft_policy_iteration_tabular", "SPI-9", "temperature dropped outside the log-sum-exp",
      "return q_max + alpha * np.log(", "return q_max + np.log("),
    M("soft_policy_iteration_tabular", "SPI-10", "soft value iteration backs up the hard max",
      "Q_next = mdp.R + gamma * mdp.P @ soft_max_value(Q, alpha)",
      "Q_next = mdp.R + gamma * mdp.P @ soft_max_value(Q, 0.0)"),
    M("soft_policy_iteration_tabular", "SPI-11", "policy improvement by the hard argmax, not the soft-greedy policy",
      "new_policy = soft_greedy_policy(Q, alpha)", "new_policy = soft_greedy_policy(Q, 0.0)"),
    M("soft_policy_iteration_tabular", "SPI-13", "a terminal state as an absorbing self-loop",
      "P[terminal] = 0.0", "P[terminal] = 0.0\n    P[terminal, :, terminal] = 1.0"),
    M("soft_policy_iteration_tabular", "SPI-13", "terminating transitions kept in P",
      "                if terminated:\n                    terminal[next_state] = True\n                else:\n"
      "                    P[s, a, next_state] += prob",
      "                terminal[next_state] |= bool(terminated)\n                P[s, a, next_state] += prob"),
    # ---------------------------------------------------------------- soft_q_learning.py
    M("soft_q_learning", "SQL-1", "Boltzmann logits Q·α instead of Q/α", "return q / alpha", "return q * alpha"),
    M("soft_q_learning", "SQL-1", "the Gumbel noise's sign flipped when acting",
      "- torch.log(-torch.log(uniform))).argmax(-1)", "+ torch.log(-torch.log(uniform))).argmax(-1)"),
    M("soft_q_learning", "SQL-2", "the temperature dropped outside the log-sum-exp",
      "return alpha * torch.logsumexp(q / alpha, dim=-1)", "return torch.logsumexp(q / alpha, dim=-1)"),
    M("soft_q_learning", "SQL-4", "log q of the uniform proposal with the wrong sign",
      "return -action_dim * math.log(2.0)", "return action_dim * math.log(2.0)"),
    M("soft_q_learning", "SQL-4", "importance-sampled soft value without the −log M",
      "dim=-1) - math.log(num_samples))", "dim=-1))"),
    M("soft_q_learning", "SQL-5", "the done mask dropped", "reward + gamma * (1.0 - terminated) * next_value",
      "reward + gamma * next_value"),
    M("soft_q_learning", "SQL-6", "the shape check dropped (a (B, 1) target broadcasts to (B, B))",
      "    assert q.shape == target.shape, (q.shape, target.shape)  # docs/pitfalls.md#silent-broadcasting\n", ""),
    M("soft_q_learning", "SQL-2 SQL-5", "the discrete target computed from the online Q, not Q̄",
      "discrete_soft_value(agent.q_target(batch.next_obs), args.alpha)",
      "discrete_soft_value(agent.q(batch.next_obs), args.alpha)"),
    M("soft_q_learning", "SQL-4 SQL-5", "the continuous target computed from the online Q, not Q̄",
      "importance_sampled_soft_value(agent.q_target(batch.next_obs, proposal)",
      "importance_sampled_soft_value(agent.q(batch.next_obs, proposal)"),
    M("soft_q_learning", "SQL-12", "reward scale not applied in the target",
      "soft_q_target(args.reward_scale * batch.rewards,", "soft_q_target(batch.rewards,"),
    M("soft_q_learning", "SQL-7", "Polyak weights swapped: Q̄ ← (1 − τ) Q + τ Q̄",
      "list(online.parameters()), tau)\n\n\n# ---", "list(online.parameters()), 1.0 - tau)\n\n\n# ---"),
    M("soft_q_learning", "SQL-8", "median heuristic without the division by log K",
      "bandwidth = (median / math.log(xs.shape[-2]))", "bandwidth = (median)"),
    M("soft_q_learning", "SQL-8", "kernel gradient with the wrong sign", "kappa_grad = -2.0 * diff",
      "kappa_grad = 2.0 * diff"),
    M("soft_q_learning", "SQL-9", "the repulsive term of SVGD with the wrong sign",
      "grad_log_p.unsqueeze(-2) + kappa_grad)", "grad_log_p.unsqueeze(-2) - kappa_grad)"),
    M("soft_q_learning", "SQL-9", "sum over the fixed particles instead of the mean (1/K dropped)",
      "+ kappa_grad).mean(dim=-3)", "+ kappa_grad).sum(dim=-3)"),
    M("soft_q_learning", "SQL-9", "∇ log p without the temperature: ∇Q instead of ∇Q/α",
      "agent.q(obs, fixed).sum() / args.alpha", "agent.q(obs, fixed).sum()"),
    M("soft_q_learning", "SQL-10", "surrogate loss with the wrong sign (particles move against the Stein direction)",
      "return -(updated_actions * direction.detach())", "return (updated_actions * direction.detach())"),
    M("soft_q_learning", "SQL-10", "the Stein direction not detached in the surrogate loss",
      "(updated_actions * direction.detach())", "(updated_actions * direction)",
      equivalent="no gradient path: the direction is built from detached particles and from ∇ log p taken by "
                 "torch.autograd.grad without create_graph, so it carries no graph to detach"),
    M("soft_q_learning", "SQL-11", "squash-correction gradient with the wrong sign",
      "return -torch.sinh(2.0 * u)", "return torch.sinh(2.0 * u)"),
    M("soft_q_learning", "SQL-11", "the squash correction subtracted from ∇ log p instead of added",
      "grad_log_p = grad_log_p + squash_correction_gradient(u)",
      "grad_log_p = grad_log_p - squash_correction_gradient(u)"),
    M("soft_q_learning", "SQL-13", "MultiGoal distance cost to the farthest goal, not the nearest",
      "float(squared_distances.min()))", "float(squared_distances.max()))"),
    M("soft_q_learning", "SQL-5", "truncation stored as termination by the training loop",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations | truncations)"),
    M("soft_q_learning", "SQL-5", "the next episode's first observation stored as s' (autoreset)",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)",
      "buffer.add(obs, actions, rewards, next_obs, terminations)"),
    # ---------------------------------------------------------------- sac_continuous.py
    M("sac_continuous", "SAC-4", "softplus of +2u instead of −2u", "- F.softplus(-2.0 * u))",
      "- F.softplus(2.0 * u))"),
    M("sac_continuous", "SAC-4", "log(1 − tanh²u + ε) instead of the exact identity",
      "return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))", "return torch.log(1 - torch.tanh(u) ** 2 + 1e-6)"),
    M("sac_continuous", "SAC-3", "the tanh correction added instead of subtracted",
      "(gaussian - log_one_minus_tanh_squared(u))", "(gaussian + log_one_minus_tanh_squared(u))"),
    M("sac_continuous", "SAC-3", "log σ dropped from the Gaussian log-density",
      "/ log_std.exp()) ** 2 - log_std -", "/ log_std.exp()) ** 2 -"),
    M("sac_continuous", "SAC-2 SAC-3", "log π computed from atanh(clamp(tanh u)) instead of from u",
      "return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)",
      "return torch.tanh(u), tanh_gaussian_log_prob(torch.atanh(torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6)), mean, "
      "log_std)"),
    M("sac_continuous", "SAC-2", "exploration without the noise: tanh(μ)",
      "return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))", "return torch.tanh(mean)"),
    M("sac_continuous", "SAC-5", "rescaling without the bias (assumes symmetric bounds)",
      "return action * self.action_scale + self.action_bias", "return action * self.action_scale"),
    M("sac_continuous", "SAC-6", "α dropped from the v1 value target",
      "return q_new.min(dim=0).values - alpha * log_prob", "return q_new.min(dim=0).values - log_prob"),
    M("sac_continuous", "SAC-6", "the v1 value target from Q₁ alone, not the minimum",
      "return q_new.min(dim=0).values - alpha * log_prob", "return q_new[0] - alpha * log_prob"),
    M("sac_continuous", "SAC-6", "the v1 value target not detached (the V loss moves the actor)",
      "value_target(q_new, log_prob, alpha).detach())", "value_target(q_new, log_prob, alpha))"),
    M("sac_continuous", "SAC-7", "the v1 done mask dropped",
      "return reward + gamma * (1.0 - terminated) * next_v_target", "return reward + gamma * next_v_target"),
    M("sac_continuous", "SAC-7", "the v1 target from the online V, not V̄",
      "next_v = agent.value_target(batch.next_obs)", "next_v = agent.value(batch.next_obs)"),
    M("sac_continuous", "SAC-7 SAC-10", "reward scale dropped from the target",
      "reward = args.reward_scale * batch.rewards", "reward = batch.rewards"),
    M("sac_continuous", "SAC-8", "critic loss averaged over the twin critics instead of summed",
      "return 0.5 * ((q - target) ** 2).mean(dim=1).sum()", "return 0.5 * ((q - target) ** 2).mean()"),
    M("sac_continuous", "SAC-8", "the shape check dropped (a (B, 1) target broadcasts to (2, B, B))",
      "    assert target.shape == q.shape[1:], f\"target {tuple(target.shape)} against Q {tuple(q.shape)}\"\n", ""),
    M("sac_continuous", "SAC-9", "actor loss on Q₁ alone, not the minimum",
      "return (alpha * log_prob - q_new.min(dim=0).values).mean()", "return (alpha * log_prob - q_new[0]).mean()"),
    M("sac_continuous", "SAC-9", "entropy term of the actor loss with the wrong sign",
      "return (alpha * log_prob - q_new.min(dim=0).values).mean()",
      "return (-alpha * log_prob - q_new.min(dim=0).values).mean()"),
    M("sac_continuous", "SAC-9 SAC-12", "α not detached in the actor loss (the actor loss moves α)",
      "        alpha = agent.log_alpha.detach().exp()\n        action, log_prob = agent.actor.sample(obs)",
      "        alpha = agent.log_alpha.exp()\n        action, log_prob = agent.actor.sample(obs)"),
    M("sac_continuous", "SAC-10", "the v2 target with the larger of the twin target critics",
      "next_v = next_q.min(dim=0).values - alpha * next_log_prob",
      "next_v = next_q.max(dim=0).values - alpha * next_log_prob"),
    M("sac_continuous", "SAC-10", "entropy bonus with the wrong sign in the v2 target",
      "next_v = next_q.min(dim=0).values - alpha * next_log_prob",
      "next_v = next_q.min(dim=0).values + alpha * next_log_prob"),
    M("sac_continuous", "SAC-10", "the v2 done mask dropped", "return reward + gamma * (1.0 - terminated) * next_v\n",
      "return reward + gamma * next_v\n"),
    M("sac_continuous", "SAC-10", "the v2 target from the online critics, not the target critics",
      "next_q = agent.critic_target(batch.next_obs, next_action)",
      "next_q = agent.critic(batch.next_obs, next_action)"),
    M("sac_continuous", "SAC-10", "α not detached in the critic's target",
      "        alpha = agent.log_alpha.detach().exp()\n        reward =",
      "        alpha = agent.log_alpha.exp()\n        reward =",
      equivalent="α only enters the target, which is computed under torch.no_grad()"),
    M("sac_continuous", "SAC-10", "the critic target computed outside torch.no_grad()",
      "        with torch.no_grad():\n            if args.variant == \"v2\":",
      "        if True:\n            if args.variant == \"v2\":",
      equivalent="the extra gradients land in the actor (its gradients are cleared before its step) and in no "
                 "parameter of a critic (the targets and V̄ require no gradient, α is detached)"),
    M("sac_continuous", "SAC-11 SAC-12", "temperature loss with the wrong sign",
      "return -(log_alpha * (log_prob.detach() + target_entropy)).mean()",
      "return (log_alpha * (log_prob.detach() + target_entropy)).mean()"),
    M("sac_continuous", "SAC-12", "α instead of log α in the temperature loss",
      "return -(log_alpha * (log_prob.detach() + target_entropy)).mean()",
      "return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()"),
    M("sac_continuous", "SAC-12", "log π not detached in the temperature loss (the temperature loss moves the actor)",
      "return -(log_alpha * (log_prob.detach() + target_entropy)).mean()",
      "return -(log_alpha * (log_prob + target_entropy)).mean()"),
    M("sac_continuous", "SAC-13", "Polyak weights swapped: θ̄ ← (1 − τ)θ + τθ̄",
      "list(online.parameters()), tau)\n\n\n# ---", "list(online.parameters()), 1.0 - tau)\n\n\n# ---"),
    M("sac_continuous", "SAC-14", "evaluation action μ clipped to the box instead of tanh(μ)",
      "return torch.tanh(self(obs)[0])", "return self(obs)[0].clamp(-1.0, 1.0)"),
    M("sac_continuous", "SAC-10", "truncation stored as termination by the training loop",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations | truncations)"),
    M("sac_continuous", "SAC-10", "the next episode's first observation stored as s' (autoreset)",
      "buffer.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminations)",
      "buffer.add(obs, actions, rewards, next_obs, terminations)"),
    # ---------------------------------------------------------------- sac_discrete.py
    M("sac_discrete", "DSAC-1", "log(softmax + ε) instead of log_softmax",
      "log_probs = F.log_softmax(logits, dim=-1)", "log_probs = torch.log(F.softmax(logits, dim=-1) + 1e-8)"),
    M("sac_discrete", "DSAC-1", "exploration by the argmax instead of sampling π",
      "return torch.multinomial(F.softmax(self(obs), dim=-1), 1).squeeze(1)", "return self(obs).argmax(dim=-1)"),
    M("sac_discrete", "DSAC-2", "entropy averaged over actions instead of summed",
      "return -(probs * log_probs).sum(-1)", "return -(probs * log_probs).mean(-1)"),
    M("sac_discrete", "DSAC-3", "the soft value with the larger twin critic",
      "(next_target_q.min(dim=0).values - alpha * next_log_probs)",
      "(next_target_q.max(dim=0).values - alpha * next_log_probs)"),
    M("sac_discrete", "DSAC-3", "entropy bonus with the wrong sign in the soft value",
      "(next_target_q.min(dim=0).values - alpha * next_log_probs)",
      "(next_target_q.min(dim=0).values + alpha * next_log_probs)"),
    M("sac_discrete", "DSAC-3", "the soft value as a mean over actions instead of the expectation under π",
      "return (next_probs * (next_target_q.min(dim=0).values - alpha * next_log_probs)).sum(-1)",
      "return (next_target_q.min(dim=0).values - alpha * next_log_probs).mean(-1)"),
    M("sac_discrete", "DSAC-3", "the critic target computed from the online critics, not the targets",
      "agent.critic_target(batch.next_obs), alpha)", "agent.critic(batch.next_obs), alpha)"),
    M("sac_discrete", "DSAC-4", "the done mask dropped", "return reward + gamma * (1.0 - terminated) * next_value",
      "return reward + gamma * next_value"),
    M("sac_discrete", "DSAC-4", "truncation stored as termination by the training loop",
      "terminal = terminal_for_update(terminations, infos, args.terminal_on_life_loss)",
      "terminal = terminal_for_update(terminations | truncations, infos, args.terminal_on_life_loss)"),
    M("sac_discrete", "DSAC-4", "the next episode's first observation stored as s' (autoreset)",
      "buffer.add(obs, actions, stored_rewards, true_next_obs(next_obs, infos), terminal, done)",
      "buffer.add(obs, actions, stored_rewards, next_obs, terminal, done)"),
    M("sac_discrete", "DSAC-5", "critic loss averaged over the twin critics instead of summed",
      "return 0.5 * ((q - target) ** 2).mean(dim=1).sum()", "return 0.5 * ((q - target) ** 2).mean(dim=1).mean()"),
    M("sac_discrete", "DSAC-6", "actor loss averaged over actions as well as states",
      "(probs * (alpha * log_probs - q.min(dim=0).values.detach())).sum(-1).mean()",
      "(probs * (alpha * log_probs - q.min(dim=0).values.detach())).mean()"),
    M("sac_discrete", "DSAC-6", "entropy term of the actor loss with the wrong sign",
      "(probs * (alpha * log_probs - q.min(dim=0).values.detach()))",
      "(probs * (-alpha * log_probs - q.min(dim=0).values.detach()))"),
    M("sac_discrete", "DSAC-6", "actor loss on Q₁ alone, not the minimum",
      "(alpha * log_probs - q.min(dim=0).values.detach())", "(alpha * log_probs - q[0].detach())"),
    M("sac_discrete", "DSAC-6", "the actor loss reads the target critics, not the just-updated online ones",
      "            q = agent.critic(obs)\n", "            q = agent.critic_target(obs)\n"),
    M("sac_discrete", "DSAC-6 DSAC-8", "α not detached in the actor loss (the actor loss moves α)",
      "        alpha = agent.log_alpha.detach().exp()\n        with torch.no_grad():\n            q =",
      "        alpha = agent.log_alpha.exp()\n        with torch.no_grad():\n            q ="),
    M("sac_discrete", "DSAC-8", "log π not detached in the temperature loss (its gradient into the logits, "
      "Σ π ∇log π, is 0 up to rounding; the test checks that none reaches them)",
      "(log_prob.detach() + target_entropy)", "(log_prob + target_entropy)"),
    M("sac_discrete", "DSAC-8", "temperature loss with the wrong sign",
      "return -(log_alpha * (log_prob.detach() + target_entropy)).mean()",
      "return (log_alpha * (log_prob.detach() + target_entropy)).mean()"),
    M("sac_discrete", "DSAC-8", "α in place of log α as the factor of the temperature loss",
      "return -(log_alpha * (log_prob.detach()", "return -(log_alpha.exp() * (log_prob.detach()"),
    M("sac_discrete", "DSAC-9", "target entropy with the wrong sign", "return scale * math.log(n_actions)",
      "return -scale * math.log(n_actions)"),
    M("sac_discrete", "DSAC-10", "Polyak weights swapped: θ̄ ← (1 − τ)θ + τθ̄",
      "list(online.parameters()), tau)\n\n\n# ---", "list(online.parameters()), 1.0 - tau)\n\n\n# ---"),
    M("sac_discrete", "DSAC-11", "the greedy evaluation plays the sampled policy",
      "greedy = play(agent.actor, env, episodes, seed, greedy=True, device=device)",
      "greedy = play(agent.actor, env, episodes, seed, greedy=False, device=device)"),
]


def script_text(script: str) -> str:
    return (ROOT / f"{script}.py").read_text()


def check_mutations(mutations: list[Mutation]) -> list[str]:
    """Every old text occurs exactly once in its script and differs from the new text."""
    problems = []
    for mutation in mutations:
        count = script_text(mutation.script).count(mutation.old)
        if count != 1:
            problems.append(f"{mutation.script}.py: the old text of '{mutation.description}' occurs {count} times:\n"
                            f"{mutation.old}")
        if mutation.old == mutation.new:
            problems.append(f"{mutation.script}.py: '{mutation.description}' changes nothing")
    return problems


def implemented_labels(script: str) -> set[str]:
    """The equation labels that a function's or a class's docstring cites: the equations the script implements."""
    labels = set()
    for node in ast.walk(ast.parse(script_text(script))):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            labels |= {f"{family}-{number}" for family, number in LABEL.findall(ast.get_docstring(node) or "")}
    return labels


def uncovered_labels() -> list[str]:
    """Labels implemented by a script that no real (non-equivalent) mutation breaks."""
    missing = []
    for script in SCRIPTS:
        covered = {label for m in MUTATIONS if m.script == script and not m.equivalent for label in m.labels.split()}
        missing += [f"{script}.py: ({label})" for label in sorted(implemented_labels(script) - covered)]
    return missing


def copy_repository(destination: Path) -> None:
    for script in SCRIPTS:
        shutil.copy(ROOT / f"{script}.py", destination)
    shutil.copy(ROOT / "pytest.ini", destination)
    shutil.copytree(ROOT / "tests", destination / "tests", ignore=shutil.ignore_patterns("__pycache__"))


def run_tests(copy: Path, script: str) -> tuple[bool, str, float]:
    """(all passed, the first failing test or the error, seconds) for the script's fast tests in the copy."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
               TESTS[script]]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.time()
    try:
        done = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=TIMEOUT, env=environment)
    except subprocess.TimeoutExpired:
        return False, f"timeout after {TIMEOUT} s", time.time() - started
    seconds = time.time() - started
    if done.returncode == 0:
        return True, "", seconds
    failed = re.search(r"^(?:FAILED|ERROR) \S+::(\S+)", done.stdout, re.M)
    return False, failed.group(1) if failed else f"pytest exit status {done.returncode}", seconds


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *(f"{s}.py" for s in SCRIPTS), "tests"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    return head.strip() + (" with uncommitted changes to the scripts or tests" if dirty.strip() else "")


def write_report(results: list[tuple[Mutation, bool, str, float]], command: str, minutes: float) -> None:
    real = [r for r in results if not r[0].equivalent]
    survivors = [m for m, survived, _, _ in real if survived]
    lines = [
        "# Mutation check",
        "",
        "Written by `benchmarks/mutations.py`; do not edit by hand. Each row is one plausible mistake applied alone to "
        "a copy of the repository, followed by that script's fast tests (`pytest -x -q -m \"not slow\" "
        "tests/test_<script>.py`). *caught by* names the first test that failed.",
        "",
        f"Command: `{command}`  ",
        f"Commit: {commit()}  ",
        f"Date: {datetime.date.today().isoformat()}, {minutes:.0f} minutes on one core of {os.cpu_count()}.",
        "",
        f"**{len(real) - len(survivors)} of {len(real)} mutations caught; survivors: "
        + (", ".join(f"{m.script}.py: {m.description}" for m in survivors) if survivors else "none")
        + f".** {len(results) - len(real)} equivalent mutations, listed at the end with the reason, are not counted.",
        "",
    ]
    for script in SCRIPTS:
        rows = [r for r in real if r[0].script == script]
        if not rows:
            continue
        lines += [f"## {script}.py", "", "| labels | mutation | result | caught by | s |",
                  "| --- | --- | --- | --- | ---: |"]
        for mutation, survived, failed, seconds in rows:
            labels = ", ".join(f"({label})" for label in mutation.labels.split()) or "training loop"
            result = "**SURVIVED**" if survived else "caught"
            caught_by = f"`{failed}`" if failed else ""
            lines.append(f"| {labels} | {mutation.description} | {result} | {caught_by} | {seconds:.0f} |")
        lines.append("")
    equivalent = [r for r in results if r[0].equivalent]
    if equivalent:
        lines += ["## Equivalent mutations", "", "They cannot change what the script computes, so no test can catch "
                  "them; the check runs them and expects them to survive.", "",
                  "| script | mutation | why it is equivalent | result |", "| --- | --- | --- | --- |"]
        for mutation, survived, failed, _ in equivalent:
            result = "survived" if survived else f"caught by `{failed}` (not equivalent after all?)"
            lines.append(f"| {mutation.script}.py | {mutation.description} | {mutation.equivalent} | {result} |")
        lines.append("")
    REPORT.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", choices=SCRIPTS, help="only this script's mutations")
    parser.add_argument("--match", help="only mutations whose description contains this text")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    args = parser.parse_args()

    problems = check_mutations(MUTATIONS) + [f"no mutation breaks {label}" for label in uncovered_labels()]
    if problems:
        print("error: the mutation list does not fit the scripts:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    selected = [m for m in MUTATIONS if (args.script in (None, m.script))
                and (args.match is None or args.match.lower() in m.description.lower())]
    if args.list:
        for m in selected:
            print(f"{m.script}.py [{m.labels}] {m.description}" + (" (equivalent)" if m.equivalent else ""))
        return 0

    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as directory:
        copy = Path(directory)
        copy_repository(copy)
        for script in dict.fromkeys(m.script for m in selected):
            passed, failed, seconds = run_tests(copy, script)
            if not passed:
                print(f"error: the unmutated {script}.py fails {failed}; fix that first", file=sys.stderr)
                return 1
            print(f"{script}.py unmutated: fast tests pass ({seconds:.0f} s)", flush=True)
        for number, mutation in enumerate(selected, 1):
            target = copy / f"{mutation.script}.py"
            original = target.read_text()
            target.write_text(original.replace(mutation.old, mutation.new))
            try:
                survived, failed, seconds = run_tests(copy, mutation.script)
            finally:
                target.write_text(original)
            results.append((mutation, survived, failed, seconds))
            if survived:
                verdict = "survived (equivalent)" if mutation.equivalent else "SURVIVED"
            else:
                verdict = f"caught by {failed}"
            print(f"[{number}/{len(selected)}] {mutation.script}.py: {mutation.description}: {verdict} "
                  f"({seconds:.0f} s)", flush=True)
    whole = len(selected) == len(MUTATIONS)
    if whole:
        write_report(results, "python benchmarks/mutations.py", (time.time() - started) / 60)
        print(f"wrote {REPORT.relative_to(ROOT)}")
    bad = [m for m, survived, _, _ in results if survived != bool(m.equivalent)]
    for m in bad:
        print(f"{'survivor' if not m.equivalent else 'caught although marked equivalent'}: {m.script}.py: "
              f"{m.description}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
