"""What each speed trick of sac_continuous.py buys, with each trick replaced in turn by its textbook form.

    python benchmarks/ablation.py                                   # 1 and 2 threads, 2 rounds, writes ablation.md
    python benchmarks/ablation.py --cleanrl /tmp/cleanrl/sac_continuous_action.py --cleanrl-python /tmp/venv/bin/python

Three measurements, all of SAC v2 on Pendulum-v1 with the script's default networks and batch:
1. Whole environment steps (acting, stepping, storing, the update, the bookkeeping): every configuration is a
   subprocess training for --steps steps, timed over the second half of its learning steps from its own log lines, in
   interleaved rounds (A B C, A B C); the figure is the median over rounds of its ratio to the script as it is in the
   same round. On a shared virtual machine these drift by 10-20% from one minute to the next, more than most tricks
   are worth, so they cannot decide; they show the forms together, and CleanRL beside us.
2. Paired, in one process: the script as it is and one textbook form, each a separate copy of the module, alternate in
   blocks of updates (or acts, or buffer operations), so that the drift hits both alike; the median difference over
   blocks is what the trick saves per environment step, given as a share of a whole step of measurement 3. This decides:
   a trick that saves less than 5% of a step on both 1 and 2 threads goes, unless it removes at least 25% of the
   operator calls of an update (what a GPU pays per kernel launch), which the table counts with torch.profiler.
3. Where a step of the script as it is goes, from timers around each part of real training steps.

The textbook forms, each swapped in alone (the "all" row swaps all of them at once):
- two critic modules: two nn.Sequential Q networks called one after the other, in place of the ensemble `TwinQ`;
- one backward per loss: the actor loss and the temperature loss each with its own `backward()` and optimizer step, in
  place of one `backward(inputs=...)` over their sum, which computes no gradient for the critic;
- plain Adam: torch's default Adam (a loop over the tensors on CPU), in place of `fused=True`;
- numpy buffer: numpy arrays sampled with numpy and copied to torch at every update, in place of torch tensors.
Three more were measured at commit 5fe1e59 and are now the script's own form (benchmarks/ablation.md keeps the
figures): acting with `Actor.sample` in place of an `explore` that skipped the log-probability, a Polyak loop over the
tensors in place of one `torch._foreach_lerp_`, and deterministic mode's NaN-filled new tensors left on.

With --cleanrl, CleanRL's own `sac_continuous_action.py` runs in the same rounds (the file as fetched from
vwxyzjn/cleanrl, with the three edits gymnasium 1.x needs applied here in memory; nothing of it is in this repository).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEXTBOOK = ["two critic modules", "one backward per loss", "plain Adam", "numpy buffer"]
ALL = "all textbook forms at once"
AS_IS = "sac_continuous.py as it is"
CLEANRL = "CleanRL sac_continuous_action.py"


# ---- the textbook forms, patched into an imported sac_continuous ----
def apply(sac, form: str) -> None:
    """Replace one trick of the imported module `sac` by its textbook form."""
    import numpy as np
    import torch
    import torch.nn as nn

    if form == "two critic modules":
        class TwoQ(nn.Module):
            def __init__(self, obs_size, action_size, hidden_sizes):
                super().__init__()
                self.q1 = sac.mlp(obs_size + action_size, hidden_sizes, 1)
                self.q2 = sac.mlp(obs_size + action_size, hidden_sizes, 1)

            def forward(self, obs, action):
                x = torch.cat([obs, action], dim=-1)
                return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])

        sac.TwinQ = TwoQ
    elif form == "one backward per loss":
        def update(self, batch):
            self.gradient_steps += 1
            loss, metrics = self.critic_losses(batch)
            self.q_optimizer.zero_grad()
            loss.backward()
            self.q_optimizer.step()
            agent, args = self.agent, self.args
            alpha = agent.log_alpha.detach().exp()
            action, log_prob = agent.actor.sample(batch.obs)
            loss = sac.actor_loss(log_prob, agent.critic(batch.obs, action), alpha)
            self.actor_optimizer.zero_grad()
            loss.backward()
            self.actor_optimizer.step()
            alpha_loss = sac.temperature_loss(agent.log_alpha, log_prob.detach(), args.target_entropy)
            self.alpha_optimizer.zero_grad()
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics.update({"losses/actor_loss": loss.detach(), "losses/alpha": alpha})
            sac.polyak_update(agent.critic_target, agent.critic, args.tau)
            return metrics

        sac.Learner.update = update
    elif form == "plain Adam":
        adam = torch.optim.Adam

        class PlainAdam(adam):
            def __init__(self, params, lr, fused=None):
                super().__init__(params, lr=lr)

        sac.torch.optim.Adam = PlainAdam
    elif form == "numpy buffer":
        class NumpyReplayBuffer:
            def __init__(self, capacity, obs_shape, action_shape, action_dtype, device):
                self.capacity, self.position, self.size, self.device = capacity, 0, 0, device
                self.data = [np.zeros((capacity, *obs_shape), np.float32),
                             np.zeros((capacity, *action_shape), np.float32), np.zeros(capacity, np.float32),
                             np.zeros((capacity, *obs_shape), np.float32), np.zeros(capacity, np.float32)]

            def add(self, *values):
                for store, value in zip(self.data, values):
                    store[self.position] = value[0]
                self.position = (self.position + 1) % self.capacity
                self.size = min(self.size + 1, self.capacity)

            def sample(self, batch_size):
                index = np.random.randint(0, self.size, batch_size)
                return sac.Batch(*(torch.as_tensor(store[index], device=self.device) for store in self.data))

        sac.ReplayBuffer = NumpyReplayBuffer
    else:
        raise ValueError(form)


def import_script():
    sys.path.insert(0, str(REPO))
    import sac_continuous

    return sac_continuous


def worker(form: str, threads: int, steps: int, learning_starts: int, output_dir: str) -> int:
    """Train with one form patched in (subprocess entry point); the timing is read from metrics.jsonl afterwards."""
    sac = import_script()
    for one in (TEXTBOOK if form == ALL else [] if form == AS_IS else [form]):
        apply(sac, one)
    args = sac.Args(env_id="Pendulum-v1", total_timesteps=steps, learning_starts=learning_starts, eval_every=0,
                    eval_episodes=1, checkpoint_every=0, log_every=100, threads=threads, output_dir=output_dir)
    return sac.main(args)


def learning_sps(marks: list[tuple[int, float]], start: int, end: int) -> float:
    """Steps per second between the first mark at or after `start` and the last at or before `end`."""
    inside = [(step, wall) for step, wall in marks if start <= step <= end]
    (step0, wall0), (step1, wall1) = inside[0], inside[-1]
    return (step1 - step0) / (wall1 - wall0)


def run_once(name: str, threads: int, options) -> float:
    """One configuration as a subprocess; its steps per second over the second half of the learning steps."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    start = options.learning_starts + (options.steps - options.learning_starts) // 2
    with tempfile.TemporaryDirectory() as work:
        if name == CLEANRL:
            script = Path(work) / "sac_continuous_action.py"
            script.write_text(cleanrl_source(Path(options.cleanrl)))
            command = [options.cleanrl_python, str(script), "--env-id", "Pendulum-v1", "--total-timesteps",
                       str(options.steps), "--learning-starts", str(options.learning_starts), "--no-cuda"]
            # Its helpers (cleanrl_utils/) are found beside the fetched file.
            env["PYTHONPATH"] = str(Path(options.cleanrl).resolve().parent)
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
            marks = [(int(s), float(t)) for s, t in re.findall(r"^MARK (\d+) ([\d.]+)$", done.stdout, re.M)]
        else:
            command = [sys.executable, __file__, "--worker", name, "--threads", str(threads), "--steps",
                       str(options.steps), "--learning-starts", str(options.learning_starts), "--output-dir", work]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            (metrics,) = Path(work).glob("*/metrics.jsonl")
            events = [json.loads(line) for line in metrics.read_text().splitlines()]
            marks = [(e["global_step"], e["wall_time"]) for e in events if "charts/SPS" in e]
        if done.returncode != 0:
            raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return learning_sps(marks, start, options.steps)


def cleanrl_source(path: Path) -> str:
    """CleanRL's file with the edits gymnasium 1.x needs (same-step autoreset, its episode statistics) and a timing
    line every 100 steps; its algorithm is untouched."""
    source = path.read_text()
    edits = [
        # 1. gymnasium >= 1.0 resets on the next step by default and has no final_observation: ask for same-step resets.
        ("[make_env(args.env_id, args.seed + i, i, args.capture_video, run_name) for i in range(args.num_envs)]\n    )",
         "[make_env(args.env_id, args.seed + i, i, args.capture_video, run_name) for i in range(args.num_envs)],\n"
         "        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,\n    )"),
        # 2. episode statistics come as arrays in infos["episode"], no final_info list.
        ('        if "final_info" in infos:\n            for info in infos["final_info"]:\n',
         '        if False:\n            for info in infos["final_info"]:\n'),
        # 3. the final observation is infos["final_obs"].
        ('real_next_obs[idx] = infos["final_observation"][idx]', 'real_next_obs[idx] = infos["final_obs"][idx]'),
        # Timing marks on stdout, every 100 steps, in every phase.
        ("        # ALGO LOGIC: training.\n",
         "        if global_step % 100 == 0:\n            print('MARK', global_step, time.time(), flush=True)\n"
         "        # ALGO LOGIC: training.\n"),
    ]
    for old, new in edits:
        if old not in source:
            raise SystemExit(f"{path}: the text to edit is not there any more: {old[:60]!r}")
        source = source.replace(old, new)
    return source


# ---- measured in this process ----
def load_copy(name: str):
    """A separate copy of sac_continuous.py as module `name`, so that one form can be patched into it alone."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "sac_continuous.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def filled_buffer(sac, size: int = 10_000):
    import numpy as np
    import torch

    buffer = sac.ReplayBuffer(size, (3,), (1,), torch.float32, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(size):
        buffer.add(rng.normal(size=(1, 3)).astype(np.float32), rng.uniform(-1, 1, (1, 1)).astype(np.float32),
                   rng.normal(size=1), rng.normal(size=(1, 3)).astype(np.float32), np.zeros(1))
    return buffer


def paired_cost(form: str, threads: int, blocks: int, per_block: int) -> float:
    """Milliseconds per environment step that `form` adds to the part of a step it touches (the update, or storing and
    sampling), timed in one process: the script as it is and the textbook form alternate in blocks, so
    that the drift of a shared machine hits both alike. Median over blocks of the difference."""
    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    adam = torch.optim.Adam
    parts = []
    for name in ("as_is", "textbook"):
        sac = load_copy(f"sac_{name}")
        if name == "textbook":
            apply(sac, form)
        args = sac.with_defaults(sac.Args(batch_size=256))
        torch.manual_seed(0)
        agent = sac.Agent(args, 3, space)
        learner, buffer = sac.Learner(agent, args), filled_buffer(sac)
        torch.optim.Adam = adam  # "plain Adam" patches torch itself: only the textbook learner was built with it
        if form == "numpy buffer":
            transition = (np.zeros((1, 3), np.float32), np.zeros((1, 1), np.float32), np.zeros(1),
                          np.zeros((1, 3), np.float32), np.zeros(1))

            def part(buffer=buffer, transition=transition):
                buffer.add(*transition)
                buffer.sample(256)
        else:
            def part(learner=learner, buffer=buffer):
                learner.update(buffer.sample(256))
        parts.append(part)
    for part in parts:  # warm up
        for _ in range(per_block):
            part()
    differences = []
    for block in range(blocks):
        seconds = []
        for part in (parts if block % 2 == 0 else parts[::-1]):
            start = time.perf_counter()
            for _ in range(per_block):
                part()
            seconds.append((time.perf_counter() - start) / per_block)
        as_is, textbook = seconds if block % 2 == 0 else seconds[::-1]
        differences.append(1e3 * (textbook - as_is))
    return statistics.median(differences)


def paired_costs(threads: int, blocks: int, per_block: int) -> dict[str, float]:
    """paired_cost of every textbook form, each in a fresh process."""
    costs = {}
    for form in TEXTBOOK:
        code = ("import sys, json; sys.argv = ['x']; sys.path.insert(0, %r); import ablation as a; "
                "print(json.dumps(a.paired_cost(%r, %d, %d, %d)))" % (str(HERE), form, threads, blocks, per_block))
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        costs[form] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"paired, {threads} thread(s), {form}: {costs[form]:+.3f} ms per step", file=sys.stderr, flush=True)
    return costs

def operator_calls(form: str, updates: int = 20) -> int:
    """aten operators per SAC v2 update that call no other aten operator (forward, backward, optimizer steps)."""
    code = ("import sys, json; sys.argv = ['x']; sys.path.insert(0, %r); import ablation as a; "
            "print(json.dumps(a.count_in_process(%r, %d)))" % (str(HERE), form, updates))
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_in_process(form: str, updates: int) -> float:
    import gymnasium as gym
    import numpy as np
    import torch

    sac = import_script()
    for one in (TEXTBOOK if form == ALL else [] if form == AS_IS else [form]):
        apply(sac, one)
    args = sac.with_defaults(sac.Args(batch_size=256))
    torch.manual_seed(0)
    agent = sac.Agent(args, 3, gym.spaces.Box(-2.0, 2.0, (1,), np.float32))
    learner = sac.Learner(agent, args)
    buffer = filled_buffer(sac, 1000)
    for _ in range(3):
        learner.update(buffer.sample(args.batch_size))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(updates):
            learner.update(buffer.sample(args.batch_size))
    leaves = [e for e in profile.events() if e.name.startswith("aten::")
              and not any(child.name.startswith("aten::") for child in e.cpu_children)]
    return len(leaves) / updates


def step_breakdown(threads: int, steps: int, learning_starts: int) -> dict[str, float]:
    """Milliseconds per environment step of the script as it is, by part, over its learning phase."""
    import torch

    sac = import_script()
    torch.set_num_threads(threads)
    spent: dict[str, float] = {}
    counting = {"on": False}

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                if counting["on"]:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    make_vector_env = sac.make_vector_env

    def timed_envs(*a, **k):
        envs = make_vector_env(*a, **k)
        envs.step = timed("environment step", envs.step)
        return envs

    sac.make_vector_env = timed_envs
    sac.ReplayBuffer.add = timed("storing", sac.ReplayBuffer.add)
    sac.ReplayBuffer.sample = timed("update: sampling the batch", sac.ReplayBuffer.sample)
    sac.Learner.update = timed("update: losses and optimizer steps", sac.Learner.update)
    advance = sac.Run.advance
    clock = {}

    def advance_and_count(self, n, infos):
        advance(self, n, infos)
        if self.global_step == learning_starts + 1:
            counting["on"], clock["start"] = True, time.perf_counter()

    sac.Run.advance = advance_and_count
    with tempfile.TemporaryDirectory() as work:
        args = sac.Args(env_id="Pendulum-v1", total_timesteps=steps, learning_starts=learning_starts, eval_every=0,
                        eval_episodes=1, checkpoint_every=0, threads=threads, output_dir=work)
        # The clock stops when the loop hands over to the final evaluation.
        log_evaluation = sac.Run.log_evaluation

        def stop_clock(self, evaluate):
            if counting["on"]:
                counting["on"], clock["end"] = False, time.perf_counter()
            return log_evaluation(self, evaluate)

        sac.Run.log_evaluation = stop_clock
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            sac.train(args)
    learning_steps = steps - learning_starts - 1
    total = 1e3 * (clock["end"] - clock["start"]) / learning_steps
    parts = {name: 1e3 * seconds / learning_steps for name, seconds in spent.items()}
    parts["the rest (acting, the loop, logging)"] = total - sum(parts.values())
    return {**parts, "whole step": total}


def machine() -> str:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "sac_continuous.py"], capture_output=True,
                           text=True).stdout.strip()
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}; "
            f"commit {commit}{' (sac_continuous.py modified)' if dirty else ''}, "
            f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")


def report(options, sps: dict, paired: dict, calls: dict, breakdown: dict) -> str:
    """The markdown of benchmarks/ablation.md."""
    threads = options.threads
    names = [name for name in [AS_IS, *TEXTBOOK, ALL, CLEANRL] if any(sps.get((name, t)) for t in threads)]
    lines = [f"Machine: {machine()}.",
             f"Command: `python benchmarks/ablation.py --rounds {options.rounds} --steps {options.steps} "
             f"--learning-starts {options.learning_starts} --blocks {options.blocks}"
             + (" --cleanrl ...`" if options.cleanrl else "`"), "",
             "**What each trick saves** (paired in one process; the decision): milliseconds per environment step that "
             "the textbook form adds, and that as a share of a whole step of the script (last table). A trick stays "
             "if it saves at least 5% on 1 or 2 threads, or removes at least 25% of the operator calls per update.", "",
             "| textbook form | " + " | ".join(f"{t} thread{'s' * (t > 1)}: ms | share" for t in threads)
             + " | operator calls per update |",
             "| --- |" + " ---: | ---: |" * len(threads) + " ---: |"]
    for name in paired.get(threads[0], {}):
        cells = []
        for t in threads:
            cost = paired[t][name]
            cells += [f"{cost:+.2f}", f"{cost / breakdown[t]['whole step']:+.1%}"]
        count = calls.get(name)
        share = f"{count:.0f} ({count / calls[AS_IS] - 1:+.0%})" if count is not None else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share} |")
    lines.append("| (the script as it is) | " + " | ".join(["", ""] * len(threads)) + f" | {calls[AS_IS]:.0f} |")
    if names:
        lines += ["", "**Whole environment steps** (subprocesses in interleaved rounds; drift between rounds is larger "
                  "than most single tricks): steps per second, and the ratio to the script as it is in the same round "
                  "(median; each round in brackets). Below 1: the form is slower.", "",
                  "| form | " + " | ".join(f"{t} thread{'s' * (t > 1)}: steps/s | ratio" for t in threads) + " |",
                  "| --- |" + " ---: | ---: |" * len(threads)]
        for name in names:
            cells = []
            for t in threads:
                ratios = [a / b for a, b in zip(sps[name, t], sps[AS_IS, t])]
                cells += [f"{statistics.median(sps[name, t]):.1f}",
                          f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "**Where a step of the script as it is goes** (ms per environment step over the learning phase):", "",
              "| part | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in threads) + " |",
              "| --- |" + " ---: |" * len(threads)]
    for part in breakdown[threads[0]]:
        lines.append(f"| {part} | " + " | ".join(f"{breakdown[t][part]:.2f}" for t in threads) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of whole-step runs (0: none)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=40, help="blocks of 10 updates per form, paired measurement")
    parser.add_argument("--cleanrl", help="path of CleanRL's sac_continuous_action.py (fetched, not in this repository)")
    parser.add_argument("--cleanrl-python", default=sys.executable, help="a Python with stable-baselines3 and tensorboard")
    parser.add_argument("--output", default=str(HERE / "ablation.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        return worker(options.worker, options.threads[0], options.steps, options.learning_starts, options.output_dir)

    names = [AS_IS, *TEXTBOOK, ALL] + ([CLEANRL] if options.cleanrl else [])
    sps = {(name, t): [] for name in names for t in options.threads}
    for round_index in range(options.rounds):
        for threads in options.threads:
            for name in names:
                sps[name, threads].append(run_once(name, threads, options))
                print(f"round {round_index + 1}, {threads} thread(s), {name}: {sps[name, threads][-1]:.1f} steps/s",
                      file=sys.stderr, flush=True)
    paired = {t: paired_costs(t, options.blocks, 10) for t in options.threads}
    calls = {name: operator_calls(name) for name in [AS_IS, *TEXTBOOK, ALL]}
    breakdown = {t: step_breakdown(t, options.steps, options.learning_starts) for t in options.threads}
    text = report(options, sps, paired, calls, breakdown)
    Path(options.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
