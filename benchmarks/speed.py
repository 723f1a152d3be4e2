"""Learning-phase speed of every training script, measured in one run so that ratios are meaningful on a shared machine.

    python benchmarks/speed.py                      # all configurations, 2 rounds, writes benchmarks/speed.json and speed.md
    python benchmarks/speed.py --only sac_continuous --rounds 3

Each configuration runs as a subprocess for --steps environment steps (learning starts after --learning-starts) and
reports `train_sps` from its summary.json: environment steps per second during learning, one gradient step per
environment step, each script's default networks and batch. Configurations run one at a time and in interleaved
rounds (A B C, A B C), so a slow period of the machine hits all of them alike. The table gives the median over rounds,
the ratio to the first configuration of the same task in the same round (for continuous control, the straightforward
SAC of benchmarks/sac_straightforward.py), and the steady speed of the second half of the learning steps. Atari
(SeaquestNoFrameskip-v4, skipped without ale-py) runs fewer steps, with the paper's update every 4 steps. After the
rounds, benchmarks/update_profile.py's breakdown of one SAC v2 update on 1 and 2 threads is added to the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

# Tasks: (environment, [(name, script, flags)]); each task's first entry is the reference of its ratios.
TASKS = [
    ("Pendulum-v1", [
        ("baseline: straightforward SAC v2", HERE / "sac_straightforward.py", []),
        ("sac_continuous v2", REPO / "sac_continuous.py", ["--variant", "v2"]),
        ("sac_continuous v2 --threads 2", REPO / "sac_continuous.py", ["--variant", "v2", "--threads", "2"]),
        ("sac_continuous v2 --no-torch-deterministic", REPO / "sac_continuous.py",
         ["--variant", "v2", "--no-torch-deterministic"]),
        ("sac_continuous v1", REPO / "sac_continuous.py", ["--variant", "v1"]),
        ("soft_q_learning (SVGD sampler)", REPO / "soft_q_learning.py", []),
    ]),
    ("CartPole-v1", [
        ("sac_discrete", REPO / "sac_discrete.py", []),
        ("soft_q_learning (discrete)", REPO / "soft_q_learning.py", []),
    ]),
]
# Atari: the paper's update cadence (one gradient step of batch 64 every 4 environment steps), fewer steps.
ATARI_FLAGS = ["--update-frequency", "4", "--batch-size", "64", "--buffer-size", "10000"]
TASKS.append(("SeaquestNoFrameskip-v4", [
    ("sac_discrete (Atari)", REPO / "sac_discrete.py", ATARI_FLAGS),
]))
TASK_STEPS = {"SeaquestNoFrameskip-v4": (1500, 500)}  # (steps, learning starts) instead of --steps, --learning-starts
# Progress every 250 steps: the steady speed is read from the second half of the learning steps.
QUIET = ["--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "0", "--log-every", "250"]
COMMON = {
    "sac_straightforward.py": ["--eval-episodes", "1"],
    "sac_continuous.py": QUIET,
    "sac_discrete.py": QUIET,
    "soft_q_learning.py": QUIET,
}


def steady_sps(metrics: Path, learning_starts: int, steps: int) -> float | None:
    """Steps per second over the second half of the learning steps, from the progress events' wall times: the speed
    once compilation (which happens in the first updates) is over. None for a script that logs no progress events."""
    middle = learning_starts + (steps - learning_starts) // 2
    events = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    points = [(e["global_step"], e["wall_time"]) for e in events if "charts/SPS" in e and e["global_step"] >= middle]
    if len(points) < 2 or points[-1][1] <= points[0][1]:
        return None
    return (points[-1][0] - points[0][0]) / (points[-1][1] - points[0][1])


def run_once(script: Path, extra: list[str], env_id: str, steps: int, learning_starts: int,
             seed: int) -> tuple[float, float | None]:
    """(train_sps of summary.json, steady_sps) of one run."""
    with tempfile.TemporaryDirectory() as output_dir:
        command = [sys.executable, str(script), "--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps),
                   "--learning-starts", str(learning_starts), "--output-dir", output_dir, *COMMON.get(script.name, []), *extra]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
        run_dir = next(Path(output_dir).glob("*/summary.json")).parent
        summary = json.loads((run_dir / "summary.json").read_text())
        return float(summary["train_sps"]), steady_sps(run_dir / "metrics.jsonl", learning_starts, steps)


def has_atari() -> bool:
    try:
        import ale_py  # noqa: F401
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def git_commit() -> dict:
    """The commit measured, and whether tracked files differed from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except OSError:
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="environment steps per measurement")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random steps before learning (not timed)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported")
    parser.add_argument("--only", default=None,
                        help="run only configurations whose name contains this (and the reference of their task)")
    parser.add_argument("--output", default=str(HERE / "speed.json"))
    parser.add_argument("--table-only", action="store_true", help="measure nothing: rewrite speed.md from --output")
    args = parser.parse_args()
    if args.table_only:
        if not Path(args.output).is_file():
            parser.error(f"--table-only: {args.output} does not exist; run speed.py without --table-only first")
        Path(args.output).with_suffix(".md").write_text(markdown(json.loads(Path(args.output).read_text())))
        return

    tasks = []
    for env_id, configurations in TASKS:
        if env_id in TASK_STEPS and not has_atari():
            print(f"skipping {env_id}: pip install ale-py opencv-python-headless to measure it", flush=True)
            continue
        chosen = [c for c in configurations if args.only is None or args.only in c[0]]
        if chosen:
            tasks.append((env_id, configurations[:1] + [c for c in chosen if c is not configurations[0]]))
    git = git_commit()  # the code measured, read before anything can change it
    sps: dict[tuple[str, str], list[float]] = {(env_id, name): [] for env_id, cs in tasks for name, _, _ in cs}
    steady: dict[tuple[str, str], list[float | None]] = {key: [] for key in sps}
    for round_index in range(args.rounds):
        for env_id, configurations in tasks:
            steps, learning_starts = TASK_STEPS.get(env_id, (args.steps, args.learning_starts))
            for name, script, extra in configurations:
                value, steady_value = run_once(script, extra, env_id, steps, learning_starts, seed=1)
                sps[env_id, name].append(value)
                steady[env_id, name].append(steady_value)
                print(f"round {round_index + 1}: {env_id}: {name}: {value:.1f} SPS", flush=True)

    rows = [{"env_id": env_id, "name": name, "reference": configurations[0][0], "sps_per_round": sps[env_id, name],
             "steady_sps_per_round": steady[env_id, name],
             "steps": TASK_STEPS.get(env_id, (args.steps, args.learning_starts))[0],
             "learning_starts": TASK_STEPS.get(env_id, (args.steps, args.learning_starts))[1]}
            for env_id, configurations in tasks for name, _, _ in configurations]
    import torch

    import update_profile  # noqa: E402  (this folder; imports torch and sac_continuous)
    profile = "" if args.only else update_profile.report([1, 2], updates=200)

    result = {
        "steps": args.steps, "learning_starts": args.learning_starts, "rounds": args.rounds, "only": args.only,
        "git": git, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(), "rows": rows,
        "update_profile": profile,
    }
    Path(args.output).write_text(json.dumps(result, indent=2))
    table = markdown(result)
    Path(args.output).with_suffix(".md").write_text(table)
    print(table)


def markdown(result: dict) -> str:
    """The table of speed.md: per configuration the median SPS, and the ratios of each round (same round, same load)."""
    sps = {(r["env_id"], r["name"]): r["sps_per_round"] for r in result["rows"]}

    def ratios(row: dict, other: str) -> list[float]:
        return [a / b for a, b in zip(row["sps_per_round"], sps[row["env_id"], other])]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}x ({', '.join(f'{v:.2f}' for v in values)})"

    lines = [
        f"Learning-phase environment steps per second ({result['steps'] - result['learning_starts']} learning steps after "
        f"{result['learning_starts']} random ones, Atari {TASK_STEPS['SeaquestNoFrameskip-v4'][0] - TASK_STEPS['SeaquestNoFrameskip-v4'][1]} "
        f"after {TASK_STEPS['SeaquestNoFrameskip-v4'][1]}; one gradient step per environment step (Atari: every 4), each "
        f"script's default networks and batch), median of {result['rounds']} interleaved rounds; ratios are taken within a round (per round in brackets).",
        f"Machine: {result['cpu']}, {result['cores']} cores, "
        + "each script with its default `--threads 1` unless the row says otherwise"
        + (f" (OMP_NUM_THREADS={result['omp_num_threads']})" if result["omp_num_threads"] else "")
        + f", torch {result['torch']}; commit {(result['git']['commit'] or 'unknown')[:7]}"
        + (" with uncommitted changes" if result["git"]["dirty"] else "") + f", {result['date']}.",
        f"Command: `python benchmarks/speed.py --steps {result['steps']} --learning-starts {result['learning_starts']} "
        f"--rounds {result['rounds']}"
        + (f" --only '{result['only']}'" if result.get("only") else "") + "`",
        "",
        "Steady SPS: over the second half of the learning steps.",
        "",
        "| task | configuration | SPS (median) | ratio to the task's first row | steady SPS |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        steady_values = [v for v in row.get("steady_sps_per_round", []) if v is not None]
        steady = statistics.median(steady_values) if steady_values else None
        lines.append(f"| {row['env_id']} | {row['name']} | {statistics.median(row['sps_per_round']):.0f} | "
                     f"{cell(ratios(row, row['reference']))} | {f'{steady:.0f}' if steady else ''} |")
    if result.get("update_profile"):
        lines += ["", "Where the time of one `sac_continuous.py` v2 update goes (`benchmarks/update_profile.py`, "
                  "run by speed.py after the rounds):", "", result["update_profile"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
