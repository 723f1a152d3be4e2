"""Check that a change to the training scripts left what they learn untouched.

    python benchmarks/same_behaviour.py            # run the short commands below, compare with benchmarks/behaviour/
    python benchmarks/same_behaviour.py --record   # (re)write the reference files from the code as it is now

Each command is a short seeded CPU run (`--torch-deterministic`, one thread). Its `metrics.jsonl` is compared event by
event with the recorded one: the same events in the same order, with the same names and the same numbers, apart from
the fields that measure time (`wall_time`, `charts/SPS`); an event left with nothing but its step (a speed-only log
line) is dropped. A restructuring must pass this unchanged; a change that is
meant to alter learning re-records the files and says why in its commit message.
The files hold for the CPU they were recorded on (an AMD EPYC): another CPU model rounds some kernels differently
(on an Intel Xeon all five commands differ, from the 6th or 7th digit of a loss or a return on), so on another
machine record the parent commit's files first, in a clone, and compare against those.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = Path(__file__).resolve().parent / "behaviour"
TIME_FIELDS = {"wall_time", "charts/SPS"}
SHORT = ["--total-timesteps", "3000", "--eval-every", "1000", "--eval-episodes", "2", "--log-every", "500"]

COMMANDS = {
    "sac_continuous-v2": ["sac_continuous.py", "--env-id", "Pendulum-v1", "--variant", "v2", *SHORT],
    "sac_continuous-v1": ["sac_continuous.py", "--env-id", "Pendulum-v1", "--variant", "v1", *SHORT],
    "sac_discrete": ["sac_discrete.py", "--env-id", "CartPole-v1", "--learning-starts", "500", *SHORT],
    "soft_q_learning-multigoal": ["soft_q_learning.py", "--env-id", "MultiGoal", "--goal-episodes", "5", *SHORT],
    "soft_q_learning-cartpole": ["soft_q_learning.py", "--env-id", "CartPole-v1", "--learning-starts", "500", *SHORT],
}


def run(name: str, output_dir: Path) -> list[dict]:
    """Run one command and return its metrics.jsonl without the time fields."""
    script, *flags = COMMANDS[name]
    command = [sys.executable, str(REPO_ROOT / script), *flags, "--seed", "1", "--device", "cpu",
               "--torch-deterministic", "--output-dir", str(output_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    (metrics,) = output_dir.glob("*/metrics.jsonl")
    return without_time(json.loads(line) for line in metrics.read_text().splitlines())


def without_time(events) -> list[dict]:
    kept = [{key: value for key, value in event.items() if key not in TIME_FIELDS} for event in events]
    return [event for event in kept if set(event) != {"global_step"}]


def first_difference(expected: list[dict], got: list[dict]) -> str | None:
    for index, (a, b) in enumerate(zip(expected, got)):
        if a.keys() != b.keys() or any(float(a[key]) != float(b[key]) for key in a):
            return f"event {index + 1}: expected {a}, got {b}"
    if len(expected) != len(got):
        return f"expected {len(expected)} events, got {len(got)}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write the reference files instead of comparing")
    parser.add_argument("names", nargs="*", help=f"commands to run, of {', '.join(COMMANDS)} (default: all)")
    options = parser.parse_args()
    unknown = set(options.names) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown command {sorted(unknown)[0]}; choose from {', '.join(COMMANDS)}")
    REFERENCE_DIR.mkdir(exist_ok=True)
    failures = 0
    for name in options.names or COMMANDS:
        with tempfile.TemporaryDirectory() as output_dir:
            events = run(name, Path(output_dir))
        reference = REFERENCE_DIR / f"{name}.jsonl"
        if options.record:
            reference.write_text("".join(json.dumps(event) + "\n" for event in events))
            print(f"{name}: recorded {len(events)} events")
            continue
        expected = without_time(json.loads(line) for line in reference.read_text().splitlines())
        difference = first_difference(expected, events)
        print(f"{name}: {'same' if difference is None else 'DIFFERENT, ' + difference}")
        failures += difference is not None
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
