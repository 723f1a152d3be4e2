"""Learning-phase speed of every training script, measured in one run so that ratios are meaningful on a shared machine.

    python benchmarks/speed.py                      # all configurations, 2 rounds, writes benchmarks/speed.json and speed.md
    python benchmarks/speed.py --only sac_continuous --rounds 3

Each configuration runs as a subprocess for --steps environment steps (learning starts after --learning-starts) and
reports `train_sps` from its summary.json: environment steps per second, one gradient step per environment step,
batch 256, 256x256 networks. Configurations run one at a time and in interleaved rounds (A B C, A B C), so a slow
period of the machine hits all of them alike; the table gives the median over rounds and the ratio to the
straightforward baseline (benchmarks/sac_straightforward.py) of the same round.
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

# (name, script, extra flags); the first entry is the baseline the ratios refer to.
CONFIGURATIONS = [
    ("baseline: straightforward SAC v2", HERE / "sac_straightforward.py", []),
    ("sac_continuous v2", REPO / "sac_continuous.py", ["--variant", "v2"]),
    ("sac_continuous v1", REPO / "sac_continuous.py", ["--variant", "v1"]),
    ("sac_continuous v2 --compile", REPO / "sac_continuous.py", ["--variant", "v2", "--compile"]),
]
COMMON = {
    "sac_straightforward.py": ["--eval-episodes", "1"],
    "sac_continuous.py": ["--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "0", "--log-every", "1000000"],
}


def run_once(script: Path, extra: list[str], env_id: str, steps: int, learning_starts: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as output_dir:
        command = [sys.executable, str(script), "--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps),
                   "--learning-starts", str(learning_starts), "--output-dir", output_dir, *COMMON.get(script.name, []), *extra]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
        summary = json.loads(next(Path(output_dir).glob("*/summary.json")).read_text())
        return float(summary["train_sps"])


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


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
    parser.add_argument("--env-id", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=5000, help="environment steps per measurement")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random steps before learning (not timed)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported")
    parser.add_argument("--only", default=None, help="run only configurations whose name contains this")
    parser.add_argument("--output", default=str(HERE / "speed.json"))
    args = parser.parse_args()

    configurations = [c for c in CONFIGURATIONS if args.only is None or args.only in c[0] or c is CONFIGURATIONS[0]]
    sps: dict[str, list[float]] = {name: [] for name, _, _ in configurations}
    for round_index in range(args.rounds):
        for name, script, extra in configurations:
            value = run_once(script, extra, args.env_id, args.steps, args.learning_starts, seed=1)
            sps[name].append(value)
            print(f"round {round_index + 1}: {name}: {value:.1f} SPS", flush=True)

    baseline = configurations[0][0]
    rows = []
    for name, _, extra in configurations:
        ratios = [a / b for a, b in zip(sps[name], sps[baseline])]
        rows.append({"name": name, "sps_per_round": sps[name], "sps_median": statistics.median(sps[name]),
                     "ratio_to_baseline_median": statistics.median(ratios)})
    import torch

    result = {
        "env_id": args.env_id, "steps": args.steps, "learning_starts": args.learning_starts, "rounds": args.rounds,
        "commit": git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "rows": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2))
    lines = [
        f"Learning-phase environment steps per second on {args.env_id} ({args.steps - args.learning_starts} learning steps, "
        f"batch 256, 256x256 networks, one gradient step per environment step), median of {args.rounds} interleaved rounds.",
        f"Machine: {result['cpu']}, {result['cores']} cores, torch {result['torch']}; commit {result['commit'][:12]}, {result['date']}.",
        f"Command: `python benchmarks/speed.py --env-id {args.env_id} --steps {args.steps} --rounds {args.rounds}`",
        "",
        "| configuration | SPS (median) | ratio to baseline |",
        "| --- | ---: | ---: |",
        *[f"| {r['name']} | {r['sps_median']:.0f} | {r['ratio_to_baseline_median']:.2f}x |" for r in rows],
    ]
    (Path(args.output).with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
