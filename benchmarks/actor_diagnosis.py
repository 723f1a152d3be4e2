"""Is a discrete SAC actor learning? Two readings of a sac_discrete.py checkpoint.

    python benchmarks/actor_diagnosis.py runs/<run>/checkpoint.pt            # plays one game with the run's env
    python benchmarks/actor_diagnosis.py runs/<run>/checkpoint.pt --steps 600 --seed 5

1. Adam's effective step, layer by layer. Adam moves a parameter by lr · m̂ / (√v̂ + ε); where √v̂, the gradient's
   running RMS, is small against ε, the step shrinks by about √v̂ / (√v̂ + ε). The script prints the mean of that
   fraction over each parameter tensor of the actor and of the critics, from the optimizers' saved state
   (docs/pitfalls.md#adam-eps-and-init).
2. What the policy does with the states it visits: it plays --steps steps sampling from π, and prints π's mean
   probabilities, how often each action is π's first choice and the critics' (min over the twins), and how often
   the two agree. A policy that ranks the same action first everywhere while the critics do not has learned a bias,
   not the critics' preferences.
3. How far π is from the policy its loss (DSAC-6) aims at in each state, softmax(min Q / α): the KL divergence
   between them, and that target's own entropy. A small KL with a near-uniform target means the critics' action
   gaps are small against α, so π cannot prefer anything yet; a large KL means the actor lags the critics.
4. With --games N, the scores of N full games played greedily on π (the script's evaluation) and greedily on the
   critics' min Q, from the evaluation's start states: would the critics alone play better?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sac_discrete as sd  # noqa: E402


def effective_steps(optimizer_state: dict, eps: float) -> list[tuple[int, float, float]]:
    """(numel, median √v, mean √v / (√v + ε)) per parameter tensor, in the optimizer's order."""
    rows = []
    for state in optimizer_state["state"].values():
        rms = state["exp_avg_sq"].sqrt().flatten()
        rows.append((rms.numel(), rms.median().item(), (rms / (rms + eps)).mean().item()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--steps", type=int, default=600, help="steps of play sampled from π")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--games", type=int, default=0, help="games to play greedily on π and on min Q")
    options = parser.parse_args()
    torch.set_num_threads(1)
    missing = [path for path in (options.checkpoint, options.checkpoint.parent / "args.json") if not path.is_file()]
    if missing:
        print(f"error: {missing[0]} not found: give a sac_discrete.py run's checkpoint.pt", file=sys.stderr)
        return 2

    saved = json.loads((options.checkpoint.parent / "args.json").read_text())
    args = sd.Args(**{key: tuple(value) if isinstance(value, list) else value for key, value in saved.items()})
    checkpoint = torch.load(options.checkpoint, weights_only=True)
    env = sd.make_env(args, seed=options.seed)()
    n_actions = int(env.action_space.n)
    agent = sd.Agent(args, env.observation_space.shape, n_actions, torch.device("cpu"))
    agent.load_state_dict(checkpoint["agent"])

    print(f"{args.env_id}, Adam eps {args.adam_eps}, alpha {agent.log_alpha.exp().item():.4f}, "
          f"{agent.gradient_steps} gradient steps")
    print("\nAdam's effective step, mean of sqrt(v) / (sqrt(v) + eps):")
    for name, network in (("actor", agent.actor), ("q", agent.critic)):
        rows = effective_steps(checkpoint["agent"]["optimizers"][name], args.adam_eps)
        for (parameter, _), (numel, rms, fraction) in zip(network.named_parameters(), rows):  # the optimizer's order
            print(f"  {name:5s} {parameter:20s} {numel:9d} values  median sqrt(v) {rms:.1e}  step {fraction:6.1%}")

    obs, _ = env.reset(seed=options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    probabilities, q_values = [], []
    for _ in range(options.steps):
        with torch.no_grad():
            batch = torch.as_tensor(obs[None])
            probs = torch.softmax(agent.actor(batch)[0], dim=-1)
            q_values.append(agent.critic(batch)[:, 0].min(dim=0).values.numpy())
        probabilities.append(probs.numpy())
        obs, _, terminated, truncated, _ = env.step(int(torch.multinomial(probs, 1, generator=generator)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    probabilities, q_values = np.array(probabilities), np.array(q_values)
    entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    print(f"\n{options.steps} states; actions: {env.unwrapped.get_action_meanings()}")
    print(f"  π's mean probabilities   [{', '.join(f'{p:.3f}' for p in probabilities.mean(axis=0))}]")
    print(f"  π ranks first            {np.bincount(probabilities.argmax(axis=1), minlength=n_actions).tolist()}")
    print(f"  min Q ranks first        {np.bincount(q_values.argmax(axis=1), minlength=n_actions).tolist()}")
    print(f"  π and Q agree            {(probabilities.argmax(axis=1) == q_values.argmax(axis=1)).mean():.1%}")
    print(f"  median entropy of π      {np.median(entropy):.3f} (uniform: {np.log(n_actions):.3f})")
    alpha = agent.log_alpha.exp().item()
    log_target = torch.log_softmax(torch.as_tensor(q_values) / alpha, dim=1).numpy()
    kl = (probabilities * (np.log(probabilities) - log_target)).sum(axis=1)
    target_entropy = -(np.exp(log_target) * log_target).sum(axis=1)
    gap = q_values.max(axis=1) - np.median(q_values, axis=1)
    print(f"  median (max Q − median Q) / α              {np.median(gap) / alpha:.3f}")
    print(f"  median entropy of softmax(min Q / α)       {np.median(target_entropy):.3f}")
    print(f"  median KL(π ‖ softmax(min Q / α))          {np.median(kl):.4f}")
    if options.games > 0:
        seed = args.seed + 100_000  # the start states of sac_discrete.evaluate
        env = sd.make_env(args, seed)()
        print(f"\nGreedy play, {options.games} games from the evaluation's start states:")
        for name, scores in (("argmax π", agent.actor), ("argmax min Q", lambda x: agent.critic(x).min(dim=0).values)):
            returns = sd.play(scores, env, options.games, seed, greedy=True, device=torch.device("cpu"))
            print(f"  {name:14s} {np.mean(returns):8.1f} ± {np.std(returns):.1f}  {returns}")
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
