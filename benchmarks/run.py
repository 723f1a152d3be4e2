"""Run a training script over several seeds and record the results in one JSON file.

    python benchmarks/run.py --algo sac_continuous --env-id Hopper-v5 --seeds 1 2 3 4 5 \\
        --total-timesteps 1000000 -- --variant v2
    python benchmarks/run.py --suite quick --jobs 2        # every script, about an hour on 2 cores
    python benchmarks/run.py --suite mujoco --dry-run      # print the commands only

Each seed runs `{script-dir}/{algo}.py` as a subprocess with its own `--output-dir`, passing
`--seed`, `--env-id`, `--total-timesteps` (when given) and the flags after `--`. The runner
reads the run's `summary.json` and `metrics.jsonl` (the interface every training script shares,
see ../README.md) and writes `benchmarks/results/{algo}[-{variant}]__{env}.json` with per-seed
evaluation curves, Q, temperature and entropy over training, final returns, speed, wall time, the exact
commands, the git commit and the machine. A seed that fails is recorded with its exit code and the end of its
stderr. With `--resume` each seed whose work dir holds a checkpoint continues from it (the script's own
`--resume`); the result records the steps at which it was resumed and sums the wall time of its segments. With
`--merge` the seeds join those already in the result file, when the file was made with the same flags and the
same committed content of the script (so one benchmark can span several sessions); each seed keeps the commit it
ran on.

`soft_policy_iteration_tabular.py` is not a training script: it is run once per seed with
`--seed S --env ENV --output-json PATH`, and the JSON it writes is stored as is.

`python benchmarks/report.py` turns the result files into benchmarks/README.md and plots.
Only the standard library is needed here (torch is imported only to resolve `--device auto`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TABULAR_ALGO = "soft_policy_iteration_tabular"

# Presets. Each entry runs `algo` on `env_id` for seeds 1..seeds. `total_timesteps` None means the
# script's default; `extra` goes after the standard flags. Budgets of the quick suite are sized so
# the whole suite takes about an hour on a 2-core CPU (`--jobs 2`) at the speeds measured when it was
# written (sac_continuous ~50 env steps/s on one busy core, soft_q_learning CartPole ~340); raise
# `seeds` when time allows. `--dry-run` lists the commands.
SUITES: dict[str, list[dict]] = {
    "quick": [
        {"algo": TABULAR_ALGO, "env_id": "FrozenLake8x8-v1", "seeds": 3, "total_timesteps": None, "extra": []},
        {"algo": TABULAR_ALGO, "env_id": "random", "seeds": 3, "total_timesteps": None, "extra": []},
        {"algo": "sac_continuous", "env_id": "Pendulum-v1", "seeds": 2, "total_timesteps": 10_000, "extra": ["--variant", "v2"]},
        {"algo": "sac_continuous", "env_id": "Pendulum-v1", "seeds": 2, "total_timesteps": 10_000, "extra": ["--variant", "v1"]},
        {"algo": "sac_continuous", "env_id": "InvertedPendulum-v5", "seeds": 2, "total_timesteps": 15_000, "extra": ["--variant", "v2"]},
        {"algo": "sac_continuous", "env_id": "InvertedPendulum-v5", "seeds": 2, "total_timesteps": 15_000, "extra": ["--variant", "v1"]},
        {"algo": "sac_discrete", "env_id": "CartPole-v1", "seeds": 3, "total_timesteps": 40_000, "extra": []},
        {"algo": "soft_q_learning", "env_id": "MultiGoal", "seeds": 2, "total_timesteps": 20_000, "extra": []},
        {"algo": "soft_q_learning", "env_id": "CartPole-v1", "seeds": 3, "total_timesteps": 60_000, "extra": []},
    ],
    # Discrete SAC in the setting of its paper (Christodoulou 2019, Table 1): 100k agent steps (400k frames) of
    # NoFrameskip-v4, 20k random steps, one update of batch 64 every 4 steps, Adam 3e-4, a hard target copy every 8000
    # steps (2000 gradient steps), target entropy 0.98 log|A|. Adam's eps is PyTorch's default 1e-8, not the 1e-4 of
    # the author's code and CleanRL, which stalled the actor here (docs/pitfalls.md#adam-eps-and-init). About 90 min
    # per seed on one CPU core.
    # Few evaluations of few games: a greedy policy that stalls (seen on Seaquest) plays each game towards the
    # 108k-frame limit, up to ~45 s per game here.
    "atari100k": [
        {"algo": "sac_discrete", "env_id": f"{game}NoFrameskip-v4", "seeds": 3, "total_timesteps": 100_000,
         "extra": ["--buffer-size", "100000", "--learning-starts", "20000", "--update-frequency", "4", "--batch-size", "64",
                   "--tau", "1", "--target-network-frequency", "2000", "--q-lr", "3e-4", "--policy-lr", "3e-4",
                   "--adam-eps", "1e-8", "--target-entropy-scale", "0.98", "--eval-every", "25000", "--eval-episodes", "5"]}
        for game in ("Seaquest", "MsPacman", "RoadRunner")
    ],
    # Settings of the papers: 1M steps on MuJoCo (Haarnoja et al. 2018a/b); Pong for discrete SAC
    # (Christodoulou 2019 stopped at 100k steps, where nothing is learned yet; 5M as CleanRL sac_atari.py).
    # Days on a CPU; meant for a GPU machine, `--jobs` on many cores, or the W&B sweeps in sweeps/.
    # MuJoCo files are tagged `{variant}-1m`, apart from the 100k rows; checkpoints keep the buffer, so that a seed
    # stopped on the way goes on with `--resume` (HalfCheetah v2's row was made so, 3 seeds).
    "mujoco": [
        *[
            {"algo": "sac_continuous", "env_id": env_id, "seeds": 3, "total_timesteps": 1_000_000,
             "tag": f"{variant}-1m",
             "extra": ["--variant", variant, "--learning-starts", "5000", "--q-lr", "3e-4"]
             + (["--alpha", "1", "--reward-scale", "5"] if variant == "v1" else [])
             + ["--eval-every", "50000", "--eval-episodes", "10", "--checkpoint-every", "50000", "--save-buffer"]}
            for variant in ("v2", "v1")
            for env_id in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")
        ],
        {"algo": "sac_discrete", "env_id": "PongNoFrameskip-v4", "seeds": 3, "total_timesteps": 5_000_000,
         "extra": ["--buffer-size", "1000000", "--learning-starts", "20000", "--update-frequency", "4", "--batch-size", "64",
                   "--tau", "1.0", "--target-network-frequency", "2000", "--q-lr", "3e-4", "--policy-lr", "3e-4",
                   "--target-entropy-scale", "0.89", "--eval-every", "100000", "--eval-episodes", "5"]},
    ],
}

STDERR_TAIL_LINES = 30
MEMORY_POLL_S = 5.0  # how often a running seed's peak resident memory is read
RUNNING: set[subprocess.Popen] = set()  # seeds running now, stopped with SIGTERM when the runner gets one
RUNNING_LOCK = threading.Lock()
VERSIONED_PACKAGES = ("torch", "gymnasium", "mujoco", "numpy", "tyro", "ale-py")


# ----------------------------------------------------------------------------- naming
def flag_value(flags: list[str], name: str) -> str | None:
    """Value of `--name X` or `--name=X` in a flag list (the last one wins, as in tyro)."""
    value = None
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


def result_stem(algo: str, env_id: str, extra: list[str], tag: str | None = None) -> str:
    """`{algo}[-{tag or variant}]__{env}` with "/" in the env id replaced by "-"."""
    suffix = tag if tag is not None else flag_value(extra, "--variant")
    name = f"{algo}-{suffix}" if suffix else algo
    return f"{name}__{env_id.replace('/', '-')}"


# ----------------------------------------------------------------------------- environment facts
def git_info(script: Path) -> dict:
    """Commit of the repository holding the script; dirty when a tracked file or the script itself differs from it."""
    directory = script.parent

    def git(*arguments: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(directory), *arguments],
                capture_output=True, text=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "script_blob": None}
    blob = git("rev-parse", f"HEAD:./{script.name}")  # the script's own content: what --merge compares
    tracked = git("status", "--porcelain", "--untracked-files=no")
    this_script = git("status", "--porcelain", "--untracked-files=all", "--", script.name)  # e.g. not committed yet
    if tracked is None or this_script is None:
        return {"commit": commit, "dirty": None, "script_blob": blob}
    return {"commit": commit, "dirty": bool(tracked or this_script), "script_blob": blob}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        with open("/proc/meminfo") as meminfo:
            memory_gb = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        memory_gb = None
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": usable,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


@functools.cache
def package_versions(python: str) -> dict:
    """Versions as seen by the interpreter that runs the scripts."""
    versions = {}
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        versions["python"] = platform.python_version()
        for package in VERSIONED_PACKAGES:
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                versions[package] = None
        return versions
    probe = (
        "import importlib.metadata as m, json, platform\n"
        "v = {'python': platform.python_version()}\n"
        f"for p in {VERSIONED_PACKAGES!r}:\n"
        "    try: v[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: v[p] = None\n"
        "print(json.dumps(v))\n"
    )
    try:
        return json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60).stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


@functools.cache
def resolve_device(requested: str, python: str) -> dict:
    """`auto` becomes cuda when the scripts' torch sees a GPU, as the scripts themselves decide."""
    info = {"requested": requested, "device": requested, "gpu": None}
    if requested in ("auto", "cuda"):
        probe = (
            "import torch, json\n"
            "ok = torch.cuda.is_available()\n"
            "print(json.dumps([ok, torch.cuda.get_device_name(0) if ok else None]))\n"
        )
        try:
            available, name = json.loads(
                subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120).stdout
            )
        except (OSError, ValueError, subprocess.TimeoutExpired):
            available, name = False, None
        info["device"] = "cuda" if (requested == "cuda" or available) else "cpu"
        info["gpu"] = name
    return info


# ----------------------------------------------------------------------------- one seed
def read_jsonl(path: Path) -> list[dict]:
    """Metric events; a line cut short by a killed run is skipped."""
    events = []
    if not path.exists():
        return events
    with open(path) as file:
        for line in file:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def finite_or_none(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if math.isfinite(value) else None
    return None


def build_command(python: str, script: Path, algo: str, env_id: str, seed: int,
                  total_timesteps: int | None, extra: list[str], seed_dir: Path) -> list[str]:
    if algo == TABULAR_ALGO:
        # Not a training script: no output dir, no steps budget; it writes one JSON.
        return [python, str(script), "--seed", str(seed), "--env", env_id,
                "--output-json", str(seed_dir / "result.json"), *extra]
    command = [python, str(script), "--seed", str(seed), "--env-id", env_id, "--output-dir", str(seed_dir)]
    if total_timesteps is not None:
        command += ["--total-timesteps", str(total_timesteps)]
    return command + extra


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of a running process so far (VmHWM; Linux only, else None)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def wait_recording_memory(process: subprocess.Popen, timeout: float | None, record: dict) -> int:
    """process.wait(timeout), reading the seed's peak resident memory every MEMORY_POLL_S seconds into
    record["peak_rss_mb"] (replay buffers fill as they go, so the last reading is within one poll of the peak)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = MEMORY_POLL_S if deadline is None else max(0.0, min(MEMORY_POLL_S, deadline - time.monotonic()))
        try:
            return process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            peak = peak_rss_mb(process.pid)
            if peak is not None:
                record["peak_rss_mb"] = peak
            if deadline is not None and time.monotonic() >= deadline:
                raise


def checkpoint_of(seed_dir: Path) -> Path | None:
    found = sorted(seed_dir.glob("*/checkpoint.pt"))
    return found[-1] if found else None


def resume_segment(command: list[str], seed_dir: Path, python: str) -> tuple[list[str] | None, list[dict]]:
    """The command that continues a seed from the checkpoint in its work dir (`--resume`), or None when the checkpoint
    is already at --total-timesteps (the script would refuse it: the seed is collected as it is), and the segments it
    has run so far. A segment stopped from outside (a machine that went away) left no record: it is added here, up to
    the checkpoint's step, with the wall time its metrics.jsonl had reached at that step."""
    checkpoint = checkpoint_of(seed_dir)
    step = int(subprocess.run([python, "-c", "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)"
                               "['global_step'])", str(checkpoint)], capture_output=True, text=True, check=True).stdout)
    segments = read_jsonl(seed_dir / "segments.jsonl")
    if not segments or segments[-1]["to_step"] != step:
        events = [e for e in read_jsonl(checkpoint.parent / "metrics.jsonl") if e.get("global_step", 0) <= step]
        segments.append({"from_step": segments[-1]["to_step"] if segments else 0, "to_step": step,
                         "wall_time_s": events[-1]["wall_time"] if events else None, "stopped_from_outside": True})
        (seed_dir / "segments.jsonl").write_text("".join(json.dumps(segment) + "\n" for segment in segments))
    total = command[command.index("--total-timesteps") + 1]
    if step >= int(total):
        return None, segments
    return [command[0], command[1], "--resume", str(checkpoint), "--total-timesteps", total], segments


def launch(command: list[str], seed_dir: Path, env: dict, timeout: float | None, record: dict) -> int:
    """Run one segment of a seed in its work dir, its output appended to stdout.log and stderr.log: the exit status."""
    with open(seed_dir / "stdout.log", "a") as stdout, open(seed_dir / "stderr.log", "a") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=seed_dir)
        with RUNNING_LOCK:
            RUNNING.add(process)
        try:
            return wait_recording_memory(process, timeout, record)
        except subprocess.TimeoutExpired:
            process.terminate()  # scripts save a checkpoint and summary on SIGTERM
            record["timed_out"] = True
            try:
                return process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()
        finally:
            with RUNNING_LOCK:
                RUNNING.discard(process)


def resume_restores(command: list[str]) -> str:
    """What the training scripts' --resume brought back (their checkpoint.pt), for a resumed seed's record: the same
    seed resumed is close to, not bit for bit, the run that was never stopped."""
    buffer = ("and the replay buffer (--save-buffer)" if "--save-buffer" in command else
              "but not the replay buffer (no --save-buffer): learning went on from an empty one")
    return ("the networks and their targets, the temperature, the optimizers' state, the torch random generator, the "
            f"step, episode and gradient-step counters, {buffer}; the environments started new episodes")


def run_seed(command: list[str], seed: int, seed_dir: Path, algo: str, env: dict,
             timeout: float | None, resume: bool = False, python: str = sys.executable) -> dict:
    """Run one seed to completion and collect what it left behind; with `resume`, continue it from its checkpoint."""
    segments: list[dict] = []
    finished = False
    first_command = command
    if resume and checkpoint_of(seed_dir) is not None:
        resumed, segments = resume_segment(command, seed_dir, python)
        command, finished = resumed or command, resumed is None
    elif seed_dir.exists():
        shutil.rmtree(seed_dir)  # a stale run must never be read as this one
    seed_dir.mkdir(parents=True, exist_ok=True)
    # The seed's own command, which reproduces it; a resume's command (a checkpoint's path) goes in its segment.
    record: dict = {"seed": seed, "command": first_command, "command_line": shlex.join(first_command),
                    "work_dir": str(seed_dir)}
    start = time.perf_counter()
    exit_code = segments[-1].get("exit_code", 0) if finished else launch(command, seed_dir, env, timeout, record)
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    record["exit_code"] = exit_code
    if algo != TABULAR_ALGO:  # each run of the script is a segment; a resumed seed's wall time sums them
        if finished:
            record["wall_time_s"] = segments[-1]["wall_time_s"]
        else:
            summaries = sorted(seed_dir.glob("*/summary.json"))
            reached = json.loads(summaries[-1].read_text()).get("global_step") if summaries else None
            segments.append({"from_step": segments[-1]["to_step"] if segments else 0, "to_step": reached,
                             "wall_time_s": record["wall_time_s"], "exit_code": exit_code,
                             "peak_rss_mb": record.get("peak_rss_mb")}
                            | ({"command_line": shlex.join(command)} if command is not first_command else {}))
            (seed_dir / "segments.jsonl").write_text("".join(json.dumps(segment) + "\n" for segment in segments))
        if len(segments) > 1:
            record["segments"] = segments
            record["resumed_at_steps"] = [segment["from_step"] for segment in segments[1:]]
            record["resume_restores"] = resume_restores(first_command)
            record["wall_time_s"] = round(sum(segment["wall_time_s"] or 0.0 for segment in segments), 3)
        peaks = [segment["peak_rss_mb"] for segment in segments if segment.get("peak_rss_mb") is not None]
        if peaks:  # over every segment, so a seed collected without running keeps it
            record["peak_rss_mb"] = max(peaks)
    stderr_lines = (seed_dir / "stderr.log").read_text(errors="replace").splitlines()
    record["stderr_tail"] = "\n".join(stderr_lines[-STDERR_TAIL_LINES:])

    if algo == TABULAR_ALGO:
        output_path = seed_dir / "result.json"
        try:
            record["output"] = json.loads(output_path.read_text())
        except (OSError, ValueError) as error:
            record["output"] = None
            if exit_code == 0:
                record["error"] = f"no readable {output_path.name}: {error}"
        record["status"] = "ok" if exit_code == 0 and record["output"] is not None else "failed"
        return record

    summaries = sorted(seed_dir.glob("*/summary.json"))
    summary = None
    if summaries:
        record["run_dir"] = str(summaries[-1].parent)
        try:
            summary = json.loads(summaries[-1].read_text())
        except ValueError as error:
            record["error"] = f"unreadable summary.json: {error}"
    elif exit_code == 0:
        record["error"] = "the script exited 0 but wrote no summary.json"
    run_dirs = [path.parent for path in seed_dir.glob("*/metrics.jsonl")]
    if "run_dir" not in record and run_dirs:
        record["run_dir"] = str(run_dirs[0])
    events = read_jsonl(Path(record["run_dir"]) / "metrics.jsonl") if "run_dir" in record else []
    evaluations = [e for e in events if "eval/return_mean" in e and "global_step" in e]
    # One point per step: a final evaluation logged again at the last step keeps its latest value.
    evaluations = list({e["global_step"]: e for e in evaluations}.values())
    record["eval_curve"] = [[e["global_step"], e["eval/return_mean"]] for e in evaluations]
    record["eval_curve_std"] = [[e["global_step"], e.get("eval/return_std")] for e in evaluations]
    record["loss_curves"] = loss_curves(events)
    record["summary"] = summary
    summary = summary or {}
    record["final_eval_return_mean"] = finite_or_none(summary.get("eval_return_mean"))
    record["final_eval_return_std"] = finite_or_none(summary.get("eval_return_std"))
    record["train_sps"] = finite_or_none(summary.get("train_sps"))
    record["global_step"] = summary.get("global_step")
    record["episodes"] = summary.get("episodes")
    record["script_wall_time_s"] = summary.get("wall_time_s")
    if record["final_eval_return_mean"] is None and evaluations:
        record["final_eval_return_mean"] = finite_or_none(evaluations[-1]["eval/return_mean"])
    record["status"] = "ok" if exit_code == 0 and summary else "failed"
    return record


# Logged by every SAC script: with these a result can be diagnosed (a growing Q, a collapsed entropy, a stuck
# temperature) from its file alone, after the run's own directory is gone.
LOSS_CURVE_KEYS = ("losses/q_mean", "losses/alpha", "losses/entropy")
LOSS_CURVE_POINTS = 250


def loss_curves(events: list[dict]) -> dict[str, list]:
    """{key: [[step, value], ...]} for each of LOSS_CURVE_KEYS the run logged: one point per step (a resumed run's
    later value), every k-th kept so that at most LOSS_CURVE_POINTS remain, plus the last."""
    curves = {}
    for key in LOSS_CURVE_KEYS:
        points = sorted({e["global_step"]: e[key] for e in events if key in e and "global_step" in e}.items())
        if not points:
            continue
        kept = points[::-(-len(points) // LOSS_CURVE_POINTS)]
        if kept[-1] != points[-1]:
            kept.append(points[-1])
        curves[key] = [[step, finite_or_none(value)] for step, value in kept]
    return curves


def seed_line(record: dict, algo: str) -> str:
    head = f"  seed {record['seed']:>3}  "
    if record["status"] != "ok":
        last = record.get("error") or (record["stderr_tail"].splitlines() or [""])[-1]
        return f"{head}FAILED exit {record['exit_code']}  time {record['wall_time_s']:.1f} s  {last[:200]}"
    if algo == TABULAR_ALGO:
        output = record["output"]
        verdicts = output.get("verdicts") if isinstance(output, dict) else None
        if isinstance(verdicts, dict):
            passed = sum(1 for value in verdicts.values() if value is True)
            text = f"verdicts {passed}/{len(verdicts)} true"
        else:
            text = "output recorded"
        return f"{head}ok  {text}  time {record['wall_time_s']:.1f} s"
    final = record["final_eval_return_mean"]
    sps = record["train_sps"]
    final_text = f"{final:.2f}" if final is not None else "n/a"
    sps_text = f"{sps:.0f}" if sps is not None else "n/a"
    return f"{head}ok  final return {final_text}  SPS {sps_text}  time {record['wall_time_s']:.1f} s"


# ----------------------------------------------------------------------------- one benchmark
def aggregate(records: list[dict]) -> dict:
    ok = [r for r in records if r["status"] == "ok"]

    def stats(key: str) -> dict | None:
        values = [r[key] for r in ok if r.get(key) is not None]
        if not values:
            return None
        return {
            "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }

    return {
        "seeds_ok": len(ok),
        "seeds_failed": len(records) - len(ok),
        "final_eval_return": stats("final_eval_return_mean"),
        "train_sps": stats("train_sps"),
        "wall_time_s": stats("wall_time_s"),
        "peak_rss_mb": stats("peak_rss_mb"),
    }


def run_benchmark(entry: dict, options: argparse.Namespace, stop: threading.Event) -> bool:
    """Run every seed of one (algo, env, flags) and write its result file. True when all seeds pass."""
    algo, env_id, seeds, extra = entry["algo"], entry["env_id"], entry["seeds"], entry["extra"]
    total_timesteps = entry.get("total_timesteps")
    stem = result_stem(algo, env_id, extra, entry.get("tag"))
    script = Path(options.script_dir).resolve() / f"{algo}.py"
    work_dir = Path(options.work_dir).resolve() / stem
    commands = {
        seed: build_command(options.python, script, algo, env_id, seed, total_timesteps, extra, work_dir / f"seed{seed}")
        for seed in seeds
    }
    print(f"== {stem}: {algo}.py on {env_id}, seeds {' '.join(map(str, seeds))}"
          + (f", {total_timesteps} steps" if total_timesteps is not None else ""), flush=True)
    if options.dry_run:
        for command in commands.values():
            print("  " + shlex.join(command))
        return True
    if not script.exists():
        print(f"  error: {script} does not exist (--algo names a script in --script-dir {options.script_dir})",
              file=sys.stderr)
        return False

    git = git_info(script)  # the code as it was when the seeds started, not when they ended
    path = Path(options.results_dir) / f"{stem}.json"

    env = dict(os.environ)
    if options.jobs > 1 and "OMP_NUM_THREADS" not in env:
        # Parallel seeds would otherwise each grab every core and slow one another down.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // options.jobs))
    device = flag_value(extra, "--device") or "auto"
    started = datetime.datetime.now(datetime.timezone.utc)
    wall_start = time.perf_counter()
    records: dict[int, dict] = {}

    def job(seed: int) -> dict | None:
        if stop.is_set():
            return None
        return run_seed(commands[seed], seed, work_dir / f"seed{seed}", algo, env, options.timeout, options.resume,
                        options.python)

    interrupted = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = {pool.submit(job, seed): seed for seed in seeds}
        pending = set(futures)
        while pending:
            try:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            except KeyboardInterrupt:
                # The scripts got the same SIGINT and are saving; start no new seed, wait for the rest.
                interrupted = True
                stop.set()
                print("  interrupted: waiting for running seeds to save, then writing partial results",
                      file=sys.stderr, flush=True)
                continue
            for future in done:
                record = future.result()
                if record is not None:
                    records[record["seed"]] = record
                    print(seed_line(record, algo), flush=True)

    for record in records.values():
        record["git_commit"] = git["commit"]
    ordered = [records[seed] for seed in seeds if seed in records]
    this_run = {"date": started.isoformat(timespec="seconds"), "commit": git["commit"],
                "seeds": [record["seed"] for record in ordered], "runner_command": shlex.join([sys.executable, *sys.argv])}
    runs = [this_run]
    # Read now, not when the seeds started: another runner may have merged its seeds into the file meanwhile.
    earlier = json.loads(path.read_text()) if options.merge and path.exists() else None
    problem = merge_problem(entry, options, git) if earlier is not None else None
    if problem:  # checked by main() before the seeds ran; changed since
        path = path.with_suffix(".unmerged.json")
        print(f"  error: --merge: {problem}; this run's seeds go to {path}", file=sys.stderr)
        earlier = None
    if earlier is not None:  # keep the seeds of earlier runs that this one did not redo
        kept = [record for record in earlier["seeds"] if record["seed"] not in records]
        ordered = sorted(kept + ordered, key=lambda record: record["seed"])
        seeds = sorted(set(earlier["seeds_requested"]) | set(seeds))
        runs = earlier.get("runs", [{"date": earlier["date"], "commit": earlier["git"]["commit"],
                                     "seeds": [record["seed"] for record in earlier["seeds"]],
                                     "runner_command": earlier["runner_command"]}]) + runs
    kind = "tabular" if algo == TABULAR_ALGO else "training"
    result = {
        "schema_version": 1,
        "stem": stem,
        "kind": kind,
        "algo": algo,
        "script": f"{algo}.py",
        "env_id": env_id,
        "variant": flag_value(extra, "--variant"),
        "tag": entry.get("tag"),
        "total_timesteps": total_timesteps if total_timesteps is not None else (ordered[0].get("global_step") if ordered else None),
        "total_timesteps_requested": total_timesteps,
        "extra_args": extra,
        "seeds_requested": list(seeds),
        "seeds": ordered,
        "aggregate": aggregate(ordered),
        "interrupted": interrupted,
        "jobs": options.jobs,
        "omp_num_threads": env.get("OMP_NUM_THREADS"),
        "runner_command": shlex.join([sys.executable, *sys.argv]),
        "date": runs[0]["date"],
        "runs": runs,
        "runner_wall_time_s": round(time.perf_counter() - wall_start, 3)
        + (earlier.get("runner_wall_time_s", 0.0) if earlier is not None else 0.0),
        "git": {**git, "commits": list(dict.fromkeys(run["commit"] for run in runs))},
        "versions": dict(package_versions(options.python)),
        "machine": machine_info(),
        "device": dict(resolve_device(device, options.python)) if kind == "training" else {"requested": None, "device": "cpu", "gpu": None},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(temporary, path)
    summary = result["aggregate"]
    text = f"  -> {path}  ({summary['seeds_ok']}/{len(seeds)} seeds ok"
    if summary["final_eval_return"]:
        text += f", final return {summary['final_eval_return']['mean']:.2f} ± {summary['final_eval_return']['std']:.2f}"
    print(text + ")", flush=True)
    if interrupted:
        raise KeyboardInterrupt
    return summary["seeds_failed"] == 0


def merge_problem(entry: dict, options: argparse.Namespace, git: dict | None = None) -> str | None:
    """Why the seeds of `entry` cannot join those of its existing result file (None when they can, or when there is
    none): same script, flags and budget, and the same committed content of the script, so that one benchmark may
    span sessions without the code changing under it."""
    algo, env_id, total_timesteps, extra = entry["algo"], entry["env_id"], entry.get("total_timesteps"), entry["extra"]
    path = Path(options.results_dir) / f"{result_stem(algo, env_id, extra, entry.get('tag'))}.json"
    if not path.exists():
        return None
    earlier = json.loads(path.read_text())
    git = git or git_info(Path(options.script_dir).resolve() / f"{algo}.py")  # default: the script as it is now
    if (earlier.get("algo"), earlier.get("env_id")) != (algo, env_id):
        return f"{path} holds {earlier.get('algo')} on {earlier.get('env_id')}"
    steps = earlier.get("total_timesteps_requested")
    # A file run with the script's default budget joins an explicit one equal to the steps its seeds ran
    # (`--resume` needs --total-timesteps, so collecting a finished seed of such a file gives one).
    same_budget = total_timesteps == steps or (steps is None and total_timesteps == earlier.get("total_timesteps"))
    if earlier.get("extra_args") != extra or not same_budget:
        flags = shlex.join(earlier.get("extra_args", []))
        return f"{path} was run with other flags or budget: {flags!r}, {steps} steps"
    before = earlier.get("git") or {}
    if git.get("dirty") or before.get("dirty") or not git.get("script_blob"):
        return f"{path} or this run has uncommitted changes: run from a clean clone"
    if before.get("script_blob") != git["script_blob"]:
        return f"{path} was made with another version of {algo}.py (commit {str(before.get('commit'))[:7]})"
    return None


# ----------------------------------------------------------------------------- command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    else:
        extra = []
    parser = argparse.ArgumentParser(
        description="Run a training script over seeds and write benchmarks/results/{algo}__{env}.json.",
        epilog="Flags after `--` go to the script unchanged, e.g. `-- --variant v1 --batch-size 128`.",
    )
    parser.add_argument("--algo", help="script stem in --script-dir, e.g. sac_continuous; with --suite, a filter")
    parser.add_argument("--env-id", help="environment id (tabular script: its --env value); with --suite, a filter")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to run (default 1 2 3; with --suite each entry's count)")
    parser.add_argument("--total-timesteps", type=int, help="steps per seed (default: the script's; with --suite overrides)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at the same time (default 1: timings stay clean)")
    parser.add_argument("--suite", choices=sorted(SUITES), help="run a preset list of benchmarks (see SUITES in run.py)")
    parser.add_argument("--tag", help="file name suffix instead of the variant: results/{algo}-{tag}__{env}.json")
    parser.add_argument("--merge", action="store_true",
                        help="add these seeds to an existing result file made with the same script content and flags")
    parser.add_argument("--resume", action="store_true",
                        help="continue each seed from the checkpoint in its --work-dir (resumed steps are recorded)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.add_argument("--timeout", type=float, help="seconds before a seed is stopped with SIGTERM (default none)")
    parser.add_argument("--script-dir", default=str(REPO_ROOT), help="folder holding the scripts (default: repo root)")
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "benchmarks" / "results"), help="where result JSON files go")
    parser.add_argument("--work-dir", help="where the runs' output dirs go (default: a fresh folder in $TMPDIR/benchmarks)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the scripts (default: this one)")
    options = parser.parse_args(argv)
    options.extra = extra
    if options.suite is None and (options.algo is None or options.env_id is None):
        parser.error("give --algo and --env-id, or --suite")
    if options.jobs < 1:
        parser.error("--jobs must be at least 1")
    if options.seeds is not None and len(set(options.seeds)) != len(options.seeds):
        parser.error("--seeds has duplicates")
    if options.resume and (options.work_dir is None or options.total_timesteps is None):
        parser.error("--resume needs the --work-dir and the --total-timesteps of the seeds to continue")
    if options.work_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        options.work_dir = str(Path(tempfile.gettempdir()) / "benchmarks" / f"{stamp}-{os.getpid()}")
    return options


def entries_from(options: argparse.Namespace) -> list[dict]:
    if options.suite is None:
        return [{
            "algo": options.algo,
            "env_id": options.env_id,
            "seeds": options.seeds or [1, 2, 3],
            "total_timesteps": options.total_timesteps,
            "extra": options.extra,
            "tag": options.tag,
        }]
    entries = []
    for preset in SUITES[options.suite]:
        if options.algo not in (None, preset["algo"]) or options.env_id not in (None, preset["env_id"]):
            continue
        entry = dict(preset)
        entry["seeds"] = options.seeds or list(range(1, preset["seeds"] + 1))
        if options.total_timesteps is not None:
            entry["total_timesteps"] = options.total_timesteps
        entry["extra"] = [*preset["extra"], *options.extra]
        entry["tag"] = options.tag if options.tag is not None else preset.get("tag")
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    entries = entries_from(options)
    if not entries:
        print(f"nothing in suite {options.suite!r} matches --algo {options.algo} --env-id {options.env_id}", file=sys.stderr)
        return 2
    for entry in entries if options.merge else []:
        problem = merge_problem(entry, options)
        if problem:
            print(f"error: --merge: {problem}", file=sys.stderr)
            return 2
    if not options.dry_run:
        print(f"work dir: {options.work_dir}", flush=True)
    stop = threading.Event()
    all_ok = True

    def forward_sigterm(signum, frame):
        # Ctrl-C reaches the scripts by itself (same process group); SIGTERM sent to the runner does not.
        with RUNNING_LOCK:
            for process in RUNNING:
                process.terminate()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, forward_sigterm)
    try:
        for entry in entries:
            all_ok &= run_benchmark(entry, options, stop)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
