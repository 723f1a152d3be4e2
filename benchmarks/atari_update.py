"""The time of one discrete SAC update on Atari shapes, with the frames laid out NCHW and NHWC (channels-last).

    python benchmarks/atari_update.py                      # batch 64, 4x84x84 frames, 18 actions, 1 thread
    python benchmarks/atari_update.py --threads 2 --rounds 5

sac_discrete.py feeds its convolutions channels-last frames (`scaled_frames`); this script swaps in the plain
`obs.float() / 255` (NCHW) for the other agent, runs both agents' `update` on the same batches in interleaved rounds
and prints the median milliseconds of each, their ratio, the share of the update spent in convolutions (profiler)
and the largest difference in the critic loss (the layouts round differently, nothing more).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sac_discrete as sd  # noqa: E402

LAYOUTS = {"NCHW (obs.float() / 255)": lambda obs: obs.float() / 255.0, "NHWC (sac_discrete.scaled_frames)": sd.scaled_frames}
CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                   "aten::_slow_conv2d_backward")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=8, help="updates per round and layout")
    parser.add_argument("--n-actions", type=int, default=18)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    args = sd.Args(env_id="SeaquestNoFrameskip-v4", batch_size=64, q_lr=3e-4, tau=1.0, target_network_frequency=2000)
    generator = torch.Generator().manual_seed(0)

    def frames():
        return torch.randint(0, 256, (args.batch_size, 4, 84, 84), dtype=torch.uint8, generator=generator)

    batches = [sd.Batch(frames(), torch.randint(0, options.n_actions, (args.batch_size,), generator=generator),
                        torch.rand(args.batch_size, generator=generator), frames(), torch.zeros(args.batch_size))
               for _ in range(4)]
    agents = {}
    for layout in LAYOUTS:
        torch.manual_seed(0)
        agents[layout] = sd.Agent(args, (4, 84, 84), options.n_actions, torch.device("cpu"))
    times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    losses: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for _ in range(options.rounds):
        for layout, scaled in LAYOUTS.items():
            sd.scaled_frames = scaled  # what Actor and TwinQ call on their input frames
            agent = agents[layout]
            agent.update(batches[0])  # warm-up
            for i in range(options.updates):
                start = time.perf_counter()
                metrics = agent.update(batches[i % len(batches)])
                times[layout].append((time.perf_counter() - start) * 1000)
                losses[layout].append(float(metrics["losses/qf_loss"]))
    print(f"discrete SAC update, batch {args.batch_size}, 4x84x84 frames, {options.n_actions} actions, "
          f"{options.threads} thread(s), median of {options.rounds * options.updates} updates")
    for layout in LAYOUTS:
        print(f"  {layout:36s} {statistics.median(times[layout]):7.1f} ms")
    baseline, ours = (statistics.median(times[layout]) for layout in LAYOUTS)
    print(f"  speed-up of NHWC: {baseline / ours:.2f}x")
    first, second = losses.values()
    print(f"  largest relative difference of the critic loss: {max(abs(a - b) / abs(a) for a, b in zip(first, second)):.1e}")

    sd.scaled_frames = LAYOUTS["NHWC (sac_discrete.scaled_frames)"]
    with torch.profiler.profile() as profile:
        for i in range(options.updates):
            agents["NHWC (sac_discrete.scaled_frames)"].update(batches[i % len(batches)])
    events = profile.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    convolution = sum(event.self_cpu_time_total for event in events if event.key in CONVOLUTION_OPS)
    print(f"  convolutions, forward and backward: {100 * convolution / total:.0f}% of the update (NHWC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
