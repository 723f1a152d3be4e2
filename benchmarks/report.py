"""Turn benchmarks/results/*.json (written by run.py) into benchmarks/README.md, plots and a summary table.

    python benchmarks/report.py

Writes
- `benchmarks/README.md`: one table per script (seeds, final evaluation return mean ± std over
  seeds, training speed, wall time, commit, published reference with its source), the machines
  and versions the numbers come from, failed seeds, and the learning curves;
- `benchmarks/plots/{stem}.png`: evaluation return against environment steps, mean over seeds
  with a band from the worst to the best seed, and the reference value as a dashed line;
- `benchmarks/summary_table.md`: every result in one compact table;
- the main README's headline table: the rows of HEADLINE, at most one per script and task.
`benchmarks/README.md` also takes in the speed tables (`speed.md`, `ablation.md`, written by speed.py and ablation.py)
and `findings.md`, the hand-written account of what the runs showed. Nothing else is typed by hand: rerun run.py,
then this script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import textwrap
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent

# Published numbers to compare with, keyed by (script, environment name without its version).
# The first entry of each list is shown in the tables; all are listed under "References".
# Versions differ (v2/v3/v4 vs our v5: same robots, small changes in the MuJoCo bindings), so
# these are orders of magnitude to aim at, not exact targets.
_SAC_PAPER = "Haarnoja et al. 2018b, *Soft Actor-Critic Algorithms and Applications*, Fig. 1 (SAC v2, deterministic evaluation, -v2 envs), as read in the CleanRL SAC docs"
_SAC_PAPER_URL = "https://docs.cleanrl.dev/rl-algorithms/sac/#experiment-results"
_CLEANRL = "CleanRL `sac_continuous_action.py`, 3 seeds, training return (-v2 envs; InvertedPendulum-v4)"
_ZOO = "rl-baselines3-zoo SAC benchmark (one run, deterministic evaluation, -v3 envs)"
_ZOO_URL = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md"
_TIANSHOU = "Tianshou `mujoco_sac.py`, 10 seeds, the best deterministic evaluation (10 episodes) within 1M steps (-v3 envs)"
_TIANSHOU_URL = "https://github.com/thu-ml/tianshou/tree/master/examples/mujoco"
REFERENCES: dict[tuple[str, str], list[dict]] = {
    ("sac_continuous", "Hopper"): [
        {"value": 3250, "approx": True, "steps": 1_000_000, "short": "SAC paper 2018b", "source": _SAC_PAPER, "url": _SAC_PAPER_URL},
        {"value": 2310.46, "std": 342.82, "steps": 1_000_000, "short": "CleanRL", "source": _CLEANRL, "url": _SAC_PAPER_URL},
        {"value": 2325.547, "std": 1129.676, "steps": 1_000_000, "short": "rl-zoo", "source": _ZOO, "url": _ZOO_URL},
    ],
    ("sac_continuous", "HalfCheetah"): [
        {"value": 11250, "approx": True, "steps": 1_000_000, "short": "SAC paper 2018b", "source": _SAC_PAPER, "url": _SAC_PAPER_URL},
        {"value": 9634.89, "std": 1423.73, "steps": 1_000_000, "short": "CleanRL", "source": _CLEANRL, "url": _SAC_PAPER_URL},
        {"value": 9535.451, "std": 100.470, "steps": 1_000_000, "short": "rl-zoo", "source": _ZOO, "url": _ZOO_URL},
        {"value": 12138.8, "std": 1049.3, "steps": 1_000_000, "short": "Tianshou", "source": _TIANSHOU, "url": _TIANSHOU_URL},
    ],
    ("sac_continuous", "Walker2d"): [
        {"value": 4800, "approx": True, "steps": 1_000_000, "short": "SAC paper 2018b", "source": _SAC_PAPER, "url": _SAC_PAPER_URL},
        {"value": 3591.45, "std": 911.33, "steps": 1_000_000, "short": "CleanRL", "source": _CLEANRL, "url": _SAC_PAPER_URL},
        {"value": 3863.203, "std": 254.347, "steps": 1_000_000, "short": "rl-zoo", "source": _ZOO, "url": _ZOO_URL},
    ],
    ("sac_continuous", "Ant"): [
        {"value": 4615.791, "std": 1354.111, "steps": 1_000_000, "short": "rl-zoo", "source": _ZOO, "url": _ZOO_URL},
    ],
    ("sac_continuous", "Humanoid"): [
        {"value": 4500, "approx": True, "steps": 1_000_000, "short": "SAC paper 2018b", "source": _SAC_PAPER, "url": _SAC_PAPER_URL},
        {"value": 4996.29, "std": 686.40, "steps": 1_000_000, "short": "CleanRL", "source": _CLEANRL, "url": _SAC_PAPER_URL},
    ],
    ("sac_continuous", "InvertedPendulum"): [
        {"value": 909.37, "std": 55.66, "steps": 1_000_000, "short": "CleanRL", "source": _CLEANRL, "url": _SAC_PAPER_URL},
        {"value": 1000, "steps": None, "short": "max return", "source": "maximum return (1000 steps of +1, gymnasium InvertedPendulum)",
         "url": "https://gymnasium.farama.org/environments/mujoco/inverted_pendulum/"},
    ],
    ("sac_continuous", "Pendulum"): [
        {"value": -156.995, "std": 88.714, "steps": 20_000, "short": "rl-zoo", "source": _ZOO, "url": _ZOO_URL},
    ],
    ("sac_discrete", "CartPole"): [
        {"value": 500, "steps": None, "short": "max return", "source": "maximum return of CartPole-v1 (500-step limit, gymnasium)",
         "url": "https://gymnasium.farama.org/environments/classic_control/cart_pole/"},
    ],
    ("soft_q_learning", "MultiGoal"): [
        {"text": "all 4 goals", "short": "SQL paper Fig. 2",
         "source": "Haarnoja et al. 2017, *Reinforcement Learning with Deep Energy-Based Policies*, §5.1 and Fig. 2: "
                   "trajectories sampled from the start reach all four goals",
         "url": "https://arxiv.org/abs/1702.08165"},
    ],
    ("soft_q_learning", "Pendulum"): [
        {"value": -156.995, "std": 88.714, "steps": 20_000, "short": "rl-zoo, SAC", "source": _ZOO + "; SAC, not soft Q-learning: no published SQL number",
         "url": _ZOO_URL},
    ],
    ("soft_q_learning", "CartPole"): [
        {"value": 500, "steps": None, "short": "max return", "source": "maximum return of CartPole-v1 (500-step limit, gymnasium)",
         "url": "https://gymnasium.farama.org/environments/classic_control/cart_pole/"},
    ],
    **{(algo, "Acrobot"): [
        {"value": -100, "steps": None, "short": "solved threshold",
         "source": "reward_threshold of gymnasium's Acrobot-v1 spec (500-step limit, -1 per step)",
         "url": "https://gymnasium.farama.org/environments/classic_control/acrobot/"},
    ] for algo in ("sac_discrete", "soft_q_learning")},
    **{(algo, "LunarLander"): [
        {"value": 200, "steps": None, "short": "solved threshold",
         "source": "reward_threshold of gymnasium's LunarLander-v3 spec",
         "url": "https://gymnasium.farama.org/environments/box2d/lunar_lander/"},
    ] for algo in ("sac_discrete", "soft_q_learning")},
    # Christodoulou 2019, Table 1 (100k agent steps): the games where discrete SAC beats a random policy clearly.
    **{("sac_discrete", game): [
        {"value": value, "steps": 100_000, "short": "Christodoulou 2019",
         "source": f"Christodoulou 2019, *Soft Actor-Critic for Discrete Action Settings*, Table 1, SAC at 100k steps "
                   f"(a random policy scores {random_score} in the usual Atari tables)", "url": "https://arxiv.org/abs/1910.07207"},
    ] for game, value, random_score in [("Seaquest", 211.6, 68.4), ("MsPacman", 690.9, 307.3),
                                        ("RoadRunner", 305.3, 11.5), ("BattleZone", 4386.7, 2360.0),
                                        ("Assault", 350.0, 222.4), ("Breakout", 0.7, 1.7)]},
    ("sac_discrete", "Pong"): [
        {"value": -20.98, "std": 0.0, "steps": 100_000, "short": "Christodoulou 2019", "source": "Christodoulou 2019, *Soft Actor-Critic for Discrete Action Settings*, Table (Atari 100k)",
         "url": "https://arxiv.org/abs/1910.07207"},
        {"value": 19.24, "std": 1.81, "approx": True, "steps": 5_000_000, "short": "CleanRL sac_atari", "source": "CleanRL `sac_atari.py` (PongNoFrameskip-v4, training return)",
         "url": "https://docs.cleanrl.dev/rl-algorithms/sac/#atari-experiment-results-for-sac-discrete"},
    ],
}


# The main README's rows, in this order: (result file stem, what the row shows). A result file missing is skipped.
HEADLINE = [
    ("sac_continuous-v2__Pendulum-v1", "the default command"),
    ("sac_continuous-v1__Pendulum-v1", ""),
    ("sac_continuous-v2__HalfCheetah-v5", ""),
    ("sac_continuous-v2-1m__HalfCheetah-v5", "the second paper's setting at its budget"),
    ("sac_continuous-v2__Hopper-v5", ""),
    ("sac_discrete-tes025__CartPole-v1", "the default command (its target entropy 0.25 given as a flag, the same run)"),
    ("sac_discrete-tes025__Acrobot-v1", "the defaults; the paper's twin minimum never reaches the goal: -500"),
    ("sac_discrete-tes025__LunarLander-v3", "the defaults; seed 2 still lands only half its episodes at 200k"),
    ("sac_discrete__MsPacmanNoFrameskip-v4", "the defaults for pixels: the paper's Atari 100k setting"),
    ("sac_discrete__RoadRunnerNoFrameskip-v4", "the defaults for pixels; at the vector target entropy 0.25 π went one-hot on 3/3 seeds: 293 ± 415"),
    ("sac_discrete__SeaquestNoFrameskip-v4", "the defaults for pixels: the paper's Atari 100k setting"),
    ("soft_q_learning__MultiGoal", "the default command"),
    ("soft_q_learning__Pendulum-v1", ""),
    ("soft_policy_iteration_tabular__FrozenLake8x8-v1", ""),
]


# ----------------------------------------------------------------------------- loading
def load_results(results_dir: Path) -> list[dict]:
    results = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except ValueError as error:
            print(f"skipping {path}: not valid JSON ({error})", file=sys.stderr)
            continue
        if not isinstance(result, dict) or "seeds" not in result:
            print(f"skipping {path}: not a run.py result file", file=sys.stderr)
            continue
        result.setdefault("stem", path.stem)
        results.append(result)
    return results


def env_name(env_id: str) -> str:
    """`ALE/Pong-v5` -> `Pong`, `PongNoFrameskip-v4` -> `Pong`, `Hopper-v5` -> `Hopper`."""
    return re.sub(r"(NoFrameskip)?-v\d+$", "", env_id.split("/")[-1])


def references_for(result: dict) -> list[dict]:
    return REFERENCES.get((result.get("algo"), env_name(result.get("env_id", ""))), [])


def shown_references(result: dict) -> list[dict]:
    """The references a row shows: every one measured at the row's budget, so that a run at the papers' budget is
    read against all of them; otherwise the first (the others are listed under References)."""
    references = references_for(result)
    at_budget = [r for r in references if r.get("steps") and r["steps"] == result.get("total_timesteps")]
    return at_budget or references[:1]


def references_text(result: dict) -> str:
    return "; ".join(reference_text(r) for r in shown_references(result)) or "–"


# ----------------------------------------------------------------------------- formatting
def decimals(value: float) -> int:
    size = abs(value)
    return 0 if size >= 100 else 1 if size >= 10 else 2


def number(value: float | None, places: int | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{decimals(value) if places is None else places}f}"


def mean_std(stats: dict | None) -> str:
    """`mean ± std`, both with the precision the mean deserves."""
    if not stats:
        return "n/a"
    places = decimals(stats["mean"])
    return f"{number(stats['mean'], places)} ± {number(stats['std'], places)}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def steps_text(steps) -> str:
    if not isinstance(steps, (int, float)):
        return "n/a"
    if steps >= 1_000_000 and steps % 100_000 == 0:
        return f"{steps / 1_000_000:g}M"
    if steps >= 1000 and steps % 1000 == 0:
        return f"{steps / 1000:g}k"
    return f"{int(steps):,}"


def commit_text(git: dict | None) -> str:
    """Short commit the run started from; `*` when the working tree had uncommitted changes."""
    if not git or not git.get("commit"):
        return "n/a"
    commits = git.get("commits") or [git["commit"]]  # seeds added later with run.py --merge
    return " + ".join(commit[:7] for commit in commits if commit) + ("*" if git.get("dirty") else "")


def reference_text(reference: dict | None, link: bool = True) -> str:
    if reference is None:
        return "–"
    if "value" not in reference:  # a qualitative result
        return f"{reference['text']} ([{reference['short']}]({reference['url']}))" if link else f"{reference['text']} ({reference['short']})"
    value = ("≈ " if reference.get("approx") else "") + number(reference["value"])
    if reference.get("std") is not None and not reference.get("approx"):
        value += f" ± {number(reference['std'], decimals(reference['value']))}"
    if reference.get("steps"):
        value += f" @ {steps_text(reference['steps'])}"
    source = reference.get("short") or reference["source"]
    return f"{value} ([{source}]({reference['url']}))" if link else f"{value} ({source})"


def stats_of(result: dict, key: str) -> dict | None:
    """Aggregate from the file, or recomputed from the seeds (older files)."""
    aggregate = result.get("aggregate") or {}
    if aggregate.get(key):
        return aggregate[key]
    seed_key = {"final_eval_return": "final_eval_return_mean"}.get(key, key)
    values = [s[seed_key] for s in result["seeds"] if s.get("status") == "ok" and s.get(seed_key) is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def final_return_text(result: dict) -> str:
    """mean ± std over seeds; for MultiGoal also how many seeds reached every goal, and the rarest goal's count."""
    text = mean_std(stats_of(result, "final_eval_return"))
    sampled = [(s.get("summary") or {}).get("eval_stochastic_return_mean") for s in result["seeds"] if s.get("status") == "ok"]
    sampled = [value for value in sampled if value is not None]
    if atari_preprocessing(result) and sampled:  # greedy Atari policies can stall; the sampled one is what trained
        spread = statistics.pstdev(sampled) if len(sampled) > 1 else 0.0
        text += f" (sampling π: {mean_std({'mean': statistics.fmean(sampled), 'std': spread})})"
    counts = [(s.get("summary") or {}).get("goal_reach_counts") for s in result["seeds"] if s.get("status") == "ok"]
    counts = [c for c in counts if c]
    if counts:
        every = sum(1 for c in counts if min(c) > 0)
        text += f"; all {len(counts[0])} goals on {every}/{len(counts)} seeds (rarest goal: {min(min(c) for c in counts)} episodes)"
    return text


def seeds_text(result: dict) -> str:
    """Seeds ok of seeds run, and which were resumed from a checkpoint at which steps (run.py --resume)."""
    ok = sum(1 for s in result["seeds"] if s.get("status") == "ok")
    total = len(result.get("seeds_requested") or result["seeds"])
    resumed = [f"seed {s['seed']} at {', '.join(steps_text(step) for step in s['resumed_at_steps'])}"
               for s in sorted(result["seeds"], key=lambda s: s["seed"]) if s.get("resumed_at_steps")]
    return f"{ok}/{total}" + (f" (resumed: {'; '.join(resumed)})" if resumed else "")


ATARI_PREPROCESSING = (
    "Atari rows: 0-30 no-op starts, frame skip 4 with max-pooling of the last two frames, 84×84 grayscale, 4 stacked "
    "frames, FIRE after a reset and after a lost life where the game needs it (Mnih et al. 2015, as CleanRL and SB3); "
    "the learner stores sign(reward) and treats a lost life as terminal where the row says so; evaluation plays full "
    "games (at most 108k frames) with unclipped scores; the final return is the greedy policy's mean over the "
    "`--eval-episodes` games of the last evaluation, followed by the same for the policy sampled from π. `NoFrameskip-v4` has no sticky actions (the protocol of DQN and of the discrete SAC paper); `ALE/*-v5` "
    "repeats the previous action with probability 0.25 (Machado et al. 2018)."
)


def atari_preprocessing(result: dict) -> str | None:
    """What the row's Atari preprocessing was, from its id and flags (the rest is ATARI_PREPROCESSING)."""
    env_id, extra = result.get("env_id", ""), result.get("extra_args") or []
    if not (env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")):
        return None
    parts = ["no sticky actions" if env_id.endswith("NoFrameskip-v4") else "sticky actions 0.25",
             "life loss terminal" if "--no-terminal-on-life-loss" not in extra else "life loss not terminal",
             "clipped rewards" if "--no-clip-rewards" not in extra else "raw rewards"]
    return "Atari: " + ", ".join(parts)


def label(result: dict) -> str:
    """The row's variant or tag; an Atari row also states its preprocessing, whatever its tag."""
    parts = [part for part in (result.get("tag") or result.get("variant"), atari_preprocessing(result)) if part]
    return "; ".join(parts) or "–"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tabular results
def tabular_summary(result: dict) -> tuple[str, str]:
    """(verdicts, iterations) over seeds: `name k/n` for boolean verdicts, means for iteration counts."""
    outputs = [s.get("output") for s in result["seeds"] if s.get("status") == "ok" and isinstance(s.get("output"), dict)]
    verdict_counts: dict[str, list[int]] = {}
    iteration_values: dict[str, list[float]] = {}
    for output in outputs:
        verdicts = output.get("verdicts")
        if isinstance(verdicts, dict):
            for name, value in verdicts.items():
                if isinstance(value, bool):
                    count = verdict_counts.setdefault(name, [0, 0])
                    count[0] += value
                    count[1] += 1
        elif isinstance(verdicts, bool):
            count = verdict_counts.setdefault("verdict", [0, 0])
            count[0] += verdicts
            count[1] += 1
        iterations = output.get("iterations")
        if isinstance(iterations, dict):
            for name, value in iterations.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    iteration_values.setdefault(name, []).append(value)
        elif isinstance(iterations, (int, float)) and not isinstance(iterations, bool):
            iteration_values.setdefault("iterations", []).append(iterations)
    verdict_text = ", ".join(f"{name} {passed}/{total}" for name, (passed, total) in verdict_counts.items()) or "n/a"
    iteration_text = ", ".join(f"{name} {number(statistics.fmean(values))}" for name, values in iteration_values.items()) or "n/a"
    return verdict_text, iteration_text


# ----------------------------------------------------------------------------- plots
def curve_band(result: dict):
    """Common step grid, and mean / min / max over seeds of the evaluation return on it."""
    import numpy as np

    curves = []
    for seed in result["seeds"]:
        points = sorted((float(step), float(value)) for step, value in seed.get("eval_curve") or [] if value is not None)
        if points:
            curves.append(np.array(points))
    if not curves:
        return None
    grid = np.unique(np.concatenate([curve[:, 0] for curve in curves]))
    values = np.full((len(curves), len(grid)), np.nan)
    for row, curve in enumerate(curves):
        inside = (grid >= curve[0, 0]) & (grid <= curve[-1, 0])
        values[row, inside] = np.interp(grid[inside], curve[:, 0], curve[:, 1])
    return grid, np.nanmean(values, axis=0), np.nanmin(values, axis=0), np.nanmax(values, axis=0), len(curves)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_curve(axes, result: dict, band, legend_size: int = 8) -> None:
    """Mean over seeds, a band from the worst to the best seed, and the row's references as dashed lines."""
    grid, mean, low, high, count = band
    axes.plot(grid, mean, color="C0", label=f"mean of {count} seed{'s' if count > 1 else ''}")
    if count > 1:
        axes.fill_between(grid, low, high, color="C0", alpha=0.25, linewidth=0, label="min..max over seeds")
    for color, reference in zip(("C3", "C1", "C2", "C4"), [r for r in shown_references(result) if "value" in r]):
        axes.axhline(reference["value"], color=color, linestyle="--", linewidth=1,
                     label="reference: " + reference_text(reference, link=False)[:60])
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=legend_size)


def plot_title(result: dict) -> str:
    """Script, label and environment, wrapped so that a long label (an Atari row's preprocessing) stays inside the
    figure: about 55 characters fit across either plot at its font size."""
    title = f"{result.get('script', result.get('algo'))} {label(result) if label(result) != '–' else ''} on {result.get('env_id')}"
    return textwrap.fill(" ".join(title.split()), width=55)


def plot_result(result: dict, path: Path) -> bool:
    """The evaluation return; beside it, one panel per training curve the seeds recorded (Q, α, entropy: run.py's
    loss_curves), a line per seed, so that a disappointing return can be read against what the learner did."""
    band = curve_band(result)
    if band is None:
        return False
    keys = [key for key in ("losses/q_mean", "losses/alpha", "losses/entropy")
            if any((seed.get("loss_curves") or {}).get(key) for seed in result["seeds"])]
    plt = pyplot()
    figure, grid = plt.subplots(1, 1 + len(keys), figsize=(6 + 4 * len(keys), 4), dpi=100, squeeze=False)
    axes = grid[0, 0]
    draw_curve(axes, result, band)
    axes.set_xlabel("environment steps")
    axes.set_ylabel("evaluation return")
    axes.set_title(plot_title(result))
    for axes, key in zip(grid[0, 1:], keys):
        for seed in result["seeds"]:
            points = [(step, value) for step, value in (seed.get("loss_curves") or {}).get(key, []) if value is not None]
            if points:
                axes.plot(*zip(*points), linewidth=1, label=f"seed {seed['seed']}")
        if key == "losses/alpha":
            axes.set_yscale("log")  # the temperature moves by orders of magnitude
        axes.set_title(f"{key} (training)")
        axes.set_xlabel("environment steps")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def plot_overview(results: list[dict], path: Path) -> bool:
    """One panel per untagged training result (tags are side experiments), for the main README."""
    panels = [(r, band) for r in results if r.get("kind", "training") == "training" and not r.get("tag")
              for band in [curve_band(r)] if band is not None]
    if not panels:
        return False
    plt = pyplot()
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), dpi=90, squeeze=False)
    for axes, (result, band) in zip(grid.flat, panels):
        draw_curve(axes, result, band, legend_size=6)
        axes.set_title(plot_title(result), fontsize=9)
        axes.tick_params(labelsize=7)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_visible(False)
    figure.supxlabel("environment steps", fontsize=9)
    figure.supylabel("evaluation return", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


# ----------------------------------------------------------------------------- documents
def training_row(result: dict, plot_link: str | None) -> list[str]:
    wall = stats_of(result, "wall_time_s")
    memory = stats_of(result, "peak_rss_mb")
    device = (result.get("device") or {}).get("device") or "n/a"
    env_cell = result.get("env_id", "n/a") + (f" ([plot]({plot_link}))" if plot_link else "")
    return [
        env_cell,
        label(result),
        seeds_text(result),
        steps_text(result.get("total_timesteps")),
        final_return_text(result),
        mean_std(stats_of(result, "train_sps")),
        duration(wall["mean"] if wall else None),
        f"{memory['max'] / 1024:.2f} GiB" if memory else "n/a",
        device,
        commit_text(result.get("git")),
        (result.get("date") or "n/a")[:10],
        references_text(result),
    ]


def machine_key(result: dict) -> tuple:
    machine = result.get("machine") or {}
    versions = result.get("versions") or {}
    device = result.get("device") or {}
    return (
        machine.get("cpu"), machine.get("cpu_count"), device.get("device"), device.get("gpu"),
        tuple(sorted((k, v) for k, v in versions.items() if v is not None)),
    )


def build_readme(results: list[dict], plots: dict[str, Path], readme_path: Path, overview: Path | None = None,
                 speed: str | None = None, ablation: str | None = None, findings: str | None = None) -> str:
    def relative(path: Path) -> str:
        return os.path.relpath(path, readme_path.parent).replace(os.sep, "/")

    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand.",
        "Each result file was written by `benchmarks/run.py`, which runs a script once per seed and records",
        "the exact commands, the commit, the machine and the package versions (see the file itself).",
        "",
        "Reproduce: `python benchmarks/run.py --suite quick --jobs 2` (about an hour on a 2-core CPU), or one",
        "entry, e.g. `python benchmarks/run.py --algo sac_continuous --env-id Hopper-v5 --seeds 1 2 3 4 5",
        "--total-timesteps 1000000 -- --variant v2`; then `python benchmarks/report.py`.",
        "",
        "Final return: deterministic evaluation at the end of training (`eval_return_mean` of `summary.json`),",
        "mean ± standard deviation over seeds. SPS: environment steps per second during learning.",
        "Wall time: per seed, measured by the runner around the process. Peak memory: the largest resident set",
        "of one seed's process (read by the runner from /proc; n/a for results recorded before it did).",
        "References use older",
        "environment versions and other evaluation protocols: orders of magnitude, not exact targets.",
        "",
    ]
    if not results:
        lines += ["No results yet: run `python benchmarks/run.py` first.", ""]
        return "\n".join(lines)

    training = [r for r in results if r.get("kind", "training") == "training"]
    tabular = [r for r in results if r.get("kind") == "tabular"]
    header = ["Environment", "Variant", "Seeds ok", "Steps", "Final return", "SPS", "Wall time / seed",
              "Peak memory", "Device", "Commit", "Date", "Reference"]
    for script in sorted({r.get("script") or f"{r.get('algo')}.py" for r in training}):
        rows = [r for r in training if (r.get("script") or f"{r.get('algo')}.py") == script]
        rows.sort(key=lambda r: (r.get("env_id", ""), label(r)))
        lines += [f"## `{script}`", ""]
        lines.append(markdown_table(header, [training_row(r, relative(plots[r["stem"]]) if r["stem"] in plots else None) for r in rows]))
        lines.append("")
        if any(atari_preprocessing(r) for r in rows):
            lines += [ATARI_PREPROCESSING, ""]

    if tabular:
        lines += ["## `soft_policy_iteration_tabular.py`", "",
                  "Not a training script: each seed runs the exact algorithm once; the JSON it writes is stored in the result file.", ""]
        rows = []
        for r in sorted(tabular, key=lambda r: r.get("env_id", "")):
            verdicts, iterations = tabular_summary(r)
            wall = stats_of(r, "wall_time_s")
            rows.append([r.get("env_id", "n/a"), seeds_text(r), verdicts, iterations,
                         duration(wall["mean"] if wall else None), commit_text(r.get("git")), (r.get("date") or "n/a")[:10]])
        lines.append(markdown_table(["Environment", "Seeds ok", "Verdicts (true / seeds)", "Iterations (mean)",
                                     "Wall time / seed", "Commit", "Date"], rows))
        lines.append("")

    failures = [(r, s) for r in results for s in r["seeds"] if s.get("status") != "ok"]
    if failures:
        lines += ["## Failed seeds", ""]
        rows = []
        for r, s in failures:
            last = s.get("error") or ((s.get("stderr_tail") or "").strip().splitlines() or [""])[-1]
            rows.append([r["stem"], str(s.get("seed")), str(s.get("exit_code")), f"`{last[:150]}`" if last else ""])
        lines.append(markdown_table(["Result", "Seed", "Exit code", "Last line of stderr"], rows))
        lines.append("")

    if speed:
        lines += ["## Speed", "", "Written by `python benchmarks/speed.py` (benchmarks/speed.json holds every round).", "",
                  speed.strip(), ""]
    if ablation:
        lines += ["## What each speed trick buys", "", "Written by `python benchmarks/ablation.py`.", "",
                  ablation.strip(), ""]
    if findings:  # a page of its own, its headings one level down (not the comments of its code blocks)
        in_code = False
        for line in findings.strip().splitlines():
            in_code ^= line.startswith("```")
            lines.append("#" + line if line.startswith("#") and not in_code else line)
        lines.append("")

    lines += ["## Machines and versions", ""]
    groups: dict[tuple, list[str]] = {}
    for r in results:
        groups.setdefault(machine_key(r), []).append(r["stem"])
    rows = []
    for (cpu, cores, device, gpu, versions), stems in groups.items():
        rows.append([
            f"{cpu or 'n/a'} ({cores or '?'} cores)",
            (device or "n/a") + (f" ({gpu})" if gpu else ""),
            ", ".join(f"{name} {version}" for name, version in versions),
            ", ".join(stems),
        ])
    lines.append(markdown_table(["CPU", "Device", "Versions", "Results"], rows))
    lines.append("")

    lines += ["## Commands", "", "The command of the first seed of each result (the others differ only in `--seed` and the output path).", ""]
    for r in results:
        if r["seeds"]:
            lines.append(f"- `{r['stem']}`: `{r['seeds'][0].get('command_line', '')}`")
    lines.append("")

    if plots:
        lines += ["## Learning curves", "",
                  "Evaluation return against environment steps: mean over seeds, band from the worst to the best seed,",
                  "dashed lines the references of the table.", ""]
        if overview is not None:
            lines += [f"![all results]({relative(overview)})", ""]
        for r in training:
            if r["stem"] in plots:
                lines += [f"### {r['stem']}", "", f"![{r['stem']}]({relative(plots[r['stem']])})", ""]

    cited = sorted({(key, i) for r in results for key in [(r.get("algo"), env_name(r.get("env_id", "")))]
                    for i in range(len(REFERENCES.get(key, [])))})
    if cited:
        lines += ["## References", ""]
        for (algo, env), i in cited:
            reference = REFERENCES[(algo, env)][i]
            lines.append(f"- `{algo}` {env}: {reference_text(reference)}: {reference['source']}")
        lines.append("")
    return "\n".join(lines)


def slowest_seed_minutes(result: dict) -> str:
    """Wall time of the slowest successful seed, as measured by the runner around the script."""
    times = [seed["wall_time_s"] for seed in result.get("seeds", []) if seed.get("status") == "ok" and seed.get("wall_time_s")]
    return f"{max(times) / 60:.1f} min" if times else "–"


def build_summary(results: list[dict]) -> str:
    if not results:
        return "<!-- generated by benchmarks/report.py -->\nNo benchmark results yet: run `python benchmarks/run.py --suite quick`.\n"
    rows = []
    for r in sorted(results, key=lambda r: (r.get("algo", ""), r.get("env_id", ""), label(r))):
        script = r.get("script") or f"{r.get('algo')}.py"
        if r.get("kind") == "tabular":
            verdicts, _ = tabular_summary(r)
            counts = re.findall(r"(\S+) (\d+)/(\d+)", verdicts)
            if counts and all(passed == total for _, passed, total in counts):
                verdicts = f"all {len(counts)} checks hold"
            rows.append([f"`{script}`", r.get("env_id", "n/a"), "–", seeds_text(r), verdicts, "–", "–", "–", commit_text(r.get("git"))])
            continue
        rows.append([
            f"`{script}`" + (f" {label(r)}" if label(r) != "–" else ""),
            r.get("env_id", "n/a"),
            steps_text(r.get("total_timesteps")),
            seeds_text(r),
            final_return_text(r),
            references_text(r),
            mean_std(stats_of(r, "train_sps")),
            slowest_seed_minutes(r),
            commit_text(r.get("git")),
        ])
    table = markdown_table(["Script", "Environment", "Steps", "Seeds ok", "Final return", "Reference", "SPS",
                            "Slowest seed", "Commit"], rows)
    table += "\n`*`: measured with uncommitted changes to the repository (see the result file).\n"
    if any(atari_preprocessing(r) for r in results):
        table += "\n" + ATARI_PREPROCESSING + "\n"
    return ("<!-- generated by benchmarks/report.py from benchmarks/results; details in benchmarks/README.md -->\n"
            + table + "\n")


def build_headline(results: list[dict]) -> str:
    """The main README's table: the HEADLINE rows, one per script and task."""
    by_stem = {r["stem"]: r for r in results}
    rows = []
    for stem, note in HEADLINE:
        if stem not in by_stem:
            continue
        r = by_stem[stem]
        script = (r.get("script") or f"{r.get('algo')}.py") + (f" {r['variant']}" if r.get("variant") else "")
        if r.get("kind") == "tabular":
            verdicts, _ = tabular_summary(r)
            counts = re.findall(r"(\S+) (\d+)/(\d+)", verdicts)
            held = counts and all(passed == total for _, passed, total in counts)
            final, reference = f"all {len(counts)} checks hold" if held else verdicts, "–"
        else:
            final, reference = final_return_text(r), references_text(r)
        steps = steps_text(r.get("total_timesteps")) if r.get("kind") != "tabular" else "–"
        wall = stats_of(r, "wall_time_s")
        rows.append([f"`{script}`", r.get("env_id", "n/a"), steps, seeds_text(r), final,
                     reference, note, duration(wall["mean"] if wall else None), commit_text(r.get("git"))])
    return ("<!-- generated by benchmarks/report.py from benchmarks/results: the HEADLINE rows -->\n"
            + markdown_table(["Script", "Environment", "Steps", "Seeds ok", "Final return", "Reference", "Note",
                              "Time per seed", "Commit"], rows) + "\n")


def embed_in_main_readme(readme: Path, name: str, text: str) -> None:
    """Put generated text between `<!-- {name}:start -->` and `<!-- {name}:end -->` of the main README, so its
    numbers are never typed by hand."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not readme.exists():
        return
    content = readme.read_text()
    if start not in content or end not in content:
        return
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write benchmarks/README.md, plots and summary_table.md from the result files.")
    parser.add_argument("--results-dir", default=str(BENCHMARKS_DIR / "results"))
    parser.add_argument("--readme", default=str(BENCHMARKS_DIR / "README.md"))
    parser.add_argument("--plots-dir", default=str(BENCHMARKS_DIR / "plots"))
    parser.add_argument("--summary", default=str(BENCHMARKS_DIR / "summary_table.md"))
    parser.add_argument("--speed", default=str(BENCHMARKS_DIR / "speed.md"), help="the table speed.py wrote")
    parser.add_argument("--ablation", default=str(BENCHMARKS_DIR / "ablation.md"), help="the table ablation.py wrote")
    parser.add_argument("--findings", default=str(BENCHMARKS_DIR / "findings.md"), help="what the runs showed")
    parser.add_argument("--main-readme", default=str(BENCHMARKS_DIR.parent / "README.md"),
                        help="the headline table replaces what stands between its benchmarks markers")
    options = parser.parse_args(argv)

    results = load_results(Path(options.results_dir))
    plots: dict[str, Path] = {}
    for result in results:
        if result.get("kind", "training") != "training":
            continue
        path = Path(options.plots_dir) / f"{result['stem']}.png"
        if plot_result(result, path):
            plots[result["stem"]] = path
    overview = Path(options.plots_dir) / "overview.png"
    overview = overview if plot_overview(results, overview) else None
    speed, ablation, findings = (Path(path).read_text() if Path(path).exists() else None
                                 for path in (options.speed, options.ablation, options.findings))
    readme = Path(options.readme)
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(build_readme(results, plots, readme, overview, speed, ablation, findings))
    summary = Path(options.summary)
    summary.write_text(build_summary(results))
    embed_in_main_readme(Path(options.main_readme), "benchmarks", build_headline(results))
    print(f"{len(results)} result files -> {readme}, {summary}, {len(plots)} plots in {options.plots_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
