"""The times the README states for its two commands, `python sac_continuous.py` (the default run) and `pytest`, each
on a fresh clone of HEAD, once on idle cores and once beside a busy neighbour: another default training run, niced,
started just before and killed just after.

    python benchmarks/readme_times.py                  # both commands, idle then busy (about 55 min on 2 cores)
    python benchmarks/readme_times.py --only training  # the training command alone (about 11 min)

Writes benchmarks/readme_times.md. Start it on idle cores: the load average it found is printed in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMANDS = {"training": ["sac_continuous.py"], "tests": ["-m", "pytest", "-q"]}


@contextlib.contextmanager
def neighbour(clone: Path, environment: dict, busy: bool):
    """A default training run at nice 10 for as long as the block lasts, when `busy`."""
    if not busy:
        yield
        return
    process = subprocess.Popen(["nice", "-n", "10", sys.executable, "sac_continuous.py", "--total-timesteps",
                                "100000000", "--output-dir", str(clone.parent / "neighbour")], cwd=clone,
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(10)  # past its imports, into its steps
        yield
    finally:
        process.kill()
        process.wait()


def minutes(command: list[str], clone: Path, environment: dict, busy: bool) -> float:
    with neighbour(clone, environment, busy):
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, *command], cwd=clone, env=environment, capture_output=True,
                                   text=True)
        elapsed = (time.perf_counter() - started) / 60
    if completed.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} exited {completed.returncode}: {completed.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(COMMANDS), help="time one command only")
    parser.add_argument("--output", type=Path, default=HERE / "readme_times.md")
    options = parser.parse_args()
    load = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    environment = {**os.environ, "WANDB_MODE": "disabled"}
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        clone = Path(temporary) / "clone"
        subprocess.run(["git", "clone", "-q", str(HERE.parent), str(clone)], check=True)
        for name in [options.only] if options.only else list(COMMANDS):
            command = COMMANDS[name]
            idle, busy = (minutes(command, clone, environment, busy) for busy in (False, True))
            rows.append(f"| `python {' '.join(command)}` | {idle:.1f} min | {busy:.1f} min |")
            print(rows[-1], flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    options.output.write_text(
        f"The README's commands, wall time on a fresh clone of commit {commit}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load:.2f} at the start. Busy: beside a default "
        f"`python sac_continuous.py` at nice 10.\n"
        f"Command: `python benchmarks/readme_times.py{' --only ' + options.only if options.only else ''}`\n\n"
        "| command | idle | busy |\n| --- | ---: | ---: |\n" + "\n".join(rows) + "\n")
    print(f"-> {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
