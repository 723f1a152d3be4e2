"""Where the time of one SAC v2 update goes on this machine, against the floor the matrix products set.

    python benchmarks/update_profile.py                   # Pendulum shapes, batch 256, 256x256, 1 and 2 threads
    python benchmarks/update_profile.py --threads 1 --updates 300

For each thread count it builds sac_continuous.py's agent, fills a replay buffer and then
1. times the whole update (`Learner.update`, as the training loop calls it) and each of its parts, run one after the
   other in the update's own order: sampling the batch, the critic loss forward, its backward, the critic's Adam step,
   the policy losses forward, their backward, their Adam steps, the Polyak update;
2. runs torch.profiler over the same updates and sums the self time of the matrix products (mm, addmm, bmm, baddbmm)
   apart from everything else;
3. measures the GEMM throughput of these very shapes, and divides the update's matrix-product FLOPs by it: the floor
   of an update that did nothing but its matrix products.
Times are medians over --updates updates after a warm-up. The machine's load moves every figure: compare parts of one
run, and run it on a quiet machine before quoting it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sac_continuous as sac  # noqa: E402

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def build(obs_size: int, action_size: int, batch_size: int, hidden: tuple[int, ...]):
    args = sac.with_defaults(sac.Args(hidden_sizes=hidden, batch_size=batch_size, target_entropy=-float(action_size)))
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, (action_size,), np.float32)
    agent = sac.Agent(args, obs_size, space)
    learner = sac.Learner(agent, args)
    buffer = sac.ReplayBuffer(10_000, 1, obs_size, action_size, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(10_000):
        buffer.add(rng.normal(size=(1, obs_size)), rng.uniform(-1, 1, (1, action_size)), rng.normal(size=1),
                   rng.normal(size=(1, obs_size)), np.zeros(1))
    return args, agent, learner, buffer


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def time_parts(args, agent, learner, buffer, updates: int) -> dict[str, float]:
    """Median milliseconds of each part of Learner.update, run in its order (the sum is close to a whole update)."""
    parts: dict[str, list[float]] = {}
    for _ in range(updates):
        state = {}
        def record(name, step):
            parts.setdefault(name, []).append(1e3 * timed(step))

        record("sample the batch", lambda: state.update(batch=buffer.sample(args.batch_size)))
        record("critic loss: forward", lambda: state.update(zip(("loss", "m"), learner.critic_losses(state["batch"]))))
        learner.q_optimizer.zero_grad(set_to_none=True)
        record("critic loss: backward", lambda: state["loss"].backward())
        record("critic: Adam step", learner.q_optimizer.step)
        record("actor and alpha losses: forward",
               lambda: state.update(zip(("loss", "m"), learner.policy_losses(state["batch"].obs))))
        for optimizer in learner.policy_optimizers:
            optimizer.zero_grad(set_to_none=True)
        record("actor and alpha losses: backward", lambda: state["loss"].backward(inputs=learner.policy_params))
        record("actor and alpha: Adam steps", lambda: [optimizer.step() for optimizer in learner.policy_optimizers])
        record("Polyak update", lambda: sac.polyak_update(agent.critic_target, agent.critic, args.tau))
    return {name: statistics.median(values) for name, values in parts.items()}


def matmul_share(learner, buffer, batch_size: int, updates: int) -> tuple[float, float]:
    """(milliseconds of matrix products, milliseconds of everything) per update, from torch.profiler's self times."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(updates):
            learner.update(buffer.sample(batch_size))
    events = profile.key_averages()
    matmul = sum(event.self_cpu_time_total for event in events if event.key in MATMUL_OPS)
    total = sum(event.self_cpu_time_total for event in events)
    return matmul / 1e3 / updates, total / 1e3 / updates


def matmul_flops(obs_size: int, action_size: int, batch: int, hidden: tuple[int, ...]) -> float:
    """Multiply-adds x 2 of the matrix products of one update (forward 1x, backward 2x where weights learn)."""
    def mlp(in_size, out_size, members=1, forward=1, backward=0):
        sizes = (in_size, *hidden, out_size)
        products = sum(i * o for i, o in zip(sizes[:-1], sizes[1:])) * members * batch
        return 2 * products * (forward + 2 * backward)

    critic_in, actor_out = obs_size + action_size, 2 * action_size
    return (mlp(obs_size, actor_out)                     # next action for the target
            + mlp(critic_in, 1, members=2)               # target critics
            + mlp(critic_in, 1, members=2, backward=1)   # critics, trained
            + mlp(obs_size, actor_out, backward=1)       # actor, trained
            + mlp(critic_in, 1, members=2, backward=1))  # critics on fresh actions (gradient to the actions only;
    #                                                      counted as full backward, a slight overestimate)


def gemm_throughput(batch: int, hidden: tuple[int, ...], repeats: int = 200) -> float:
    """FLOP/s of (batch x 256) @ (256 x 256)-like products of the update's own widest shape."""
    width = max(hidden)
    a, b = torch.randn(batch, width), torch.randn(width, width)
    for _ in range(20):
        a @ b
    seconds = statistics.median(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * batch * width * width / seconds


def report(threads_list: list[int], updates: int, batch_size: int = 256, hidden: tuple[int, ...] = (256, 256)) -> str:
    """The markdown tables of this module's docstring, one per thread count (torch's thread count is restored)."""
    obs_size, action_size = 3, 1  # Pendulum-v1
    flops = matmul_flops(obs_size, action_size, batch_size, hidden)
    lines = [f"SAC v2 update, Pendulum shapes, batch {batch_size}, hidden {hidden}, torch {torch.__version__}; "
             f"{flops / 1e9:.3f} GFLOP of matrix products per update.", ""]
    threads_before = torch.get_num_threads()
    for threads in threads_list:
        torch.set_num_threads(threads)
        args, agent, learner, buffer = build(obs_size, action_size, batch_size, hidden)
        for _ in range(50):
            learner.update(buffer.sample(args.batch_size))
        whole = statistics.median(1e3 * timed(lambda: learner.update(buffer.sample(args.batch_size)))
                                  for _ in range(updates))
        parts = time_parts(args, agent, learner, buffer, updates)
        matmul_ms, profiled_ms = matmul_share(learner, buffer, args.batch_size, max(20, updates // 4))
        throughput = gemm_throughput(batch_size, hidden)
        floor_ms = 1e3 * flops / throughput
        lines += [f"**{threads} thread{'s' if threads > 1 else ''}**", "",
                  "| part of one update | ms (median) |", "| --- | ---: |"]
        lines += [f"| {name} | {ms:.2f} |" for name, ms in parts.items()]
        lines += [f"| sum of the parts | {sum(parts.values()):.2f} |",
                  f"| whole update (`Learner.update`) | {whole:.2f} |", "",
                  f"torch.profiler: matrix products {matmul_ms:.2f} ms of {profiled_ms:.2f} ms of op self time per "
                  f"update ({100 * matmul_ms / profiled_ms:.0f}%). GEMM throughput at ({batch_size} x {max(hidden)}) @ "
                  f"({max(hidden)} x {max(hidden)}): {throughput / 1e9:.1f} GFLOP/s; matrix-product floor "
                  f"{floor_ms:.2f} ms; the update runs at {100 * floor_ms / whole:.0f}% of it.", ""]
    torch.set_num_threads(threads_before)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[256, 256])
    options = parser.parse_args()
    print(report(options.threads, options.updates, options.batch_size, tuple(options.hidden_sizes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
