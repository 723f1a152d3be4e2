"""The benchmark tooling: run.py records what the scripts did, report.py shows it, the sweeps match the scripts.

run.py and report.py are exercised end to end on fake training scripts written into tmp_path that follow the
shared interface (metrics.jsonl with eval events, summary.json), so these tests take seconds and do not depend
on the real scripts. The sweep tests read each real script's --help and skip when the script does not exist.
"""

import argparse
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
REPORT = ROOT / "benchmarks" / "report.py"
SWEEPS = sorted((ROOT / "benchmarks" / "sweeps").glob("*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_module = load(RUN)
report_module = load(REPORT)

# A training script reduced to the interface: eval return = step / 10 + seed at 6 evenly spaced steps,
# summary.json at the end; `--fail-seed S` makes seed S die with exit status 3 and a message on stderr.
FAKE_TRAINING_SCRIPT = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--env-id", default="Pendulum-v1")
    parser.add_argument("--total-timesteps", type=int, default=1000)
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--variant", default="v2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fail-seed", type=int, default=-1)
    args = parser.parse_args()
    if args.seed == args.fail_seed:
        print("step 40: losses/qf_loss is nan", file=sys.stderr)
        sys.exit(3)
    run_dir = os.path.join(args.output_dir, f"{args.env_id.replace('/', '-')}__fake__{args.seed}__{int(time.time())}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as metrics:
        for i in range(6):
            step = i * args.total_timesteps // 5
            metrics.write(json.dumps({"global_step": step, "wall_time": 0.01 * i, "charts/SPS": 100.0,
                                      "losses/alpha": 0.2 / (i + 1)}) + "\\n")
            metrics.write(json.dumps({"global_step": step, "wall_time": 0.01 * i,
                                      "eval/return_mean": step / 10 + args.seed, "eval/return_std": 0.5}) + "\\n")
    summary = {"global_step": args.total_timesteps, "train_sps": 1000.0 + args.seed,
               "eval_return_mean": args.total_timesteps / 10 + args.seed, "eval_return_std": 0.5,
               "episodes": 7, "wall_time_s": 0.05, "run_dir": run_dir}
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file)
    """
)

FAKE_TABULAR_SCRIPT = textwrap.dedent(
    """
    import argparse, json
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int)
    parser.add_argument("--env")
    parser.add_argument("--output-json")
    args = parser.parse_args()
    verdicts = {"lemma1_contraction": True, "lemma2_monotone_improvement": args.seed != 2}
    with open(args.output_json, "w") as file:
        json.dump({"env": args.env, "seed": args.seed, "verdicts": verdicts, "iterations": 4 + args.seed}, file)
    """
)


def run_tool(script: Path, *arguments, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, arguments)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """One runner invocation shared by the tests below: 3 seeds, 2 at a time, seed 2 fails."""
    base = tmp_path_factory.mktemp("bench")
    scripts = base / "scripts"
    scripts.mkdir()
    # Named after a real script so report.py finds its reference value (SAC on Pendulum).
    (scripts / "sac_continuous.py").write_text(FAKE_TRAINING_SCRIPT)
    (scripts / "soft_policy_iteration_tabular.py").write_text(FAKE_TABULAR_SCRIPT)
    git = ["git", "-C", str(scripts), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "fake scripts"]):
        subprocess.run(git + command, check=True, capture_output=True)
    results = base / "results"
    done = run_tool(RUN, "--algo", "sac_continuous", "--env-id", "Pendulum-v1", "--seeds", 1, 2, 3,
                    "--total-timesteps", 500, "--jobs", 2, "--script-dir", scripts, "--results-dir", results,
                    "--work-dir", base / "work", "--", "--variant", "v1", "--device", "cpu", "--fail-seed", 2)
    tabular = run_tool(RUN, "--algo", "soft_policy_iteration_tabular", "--env-id", "FrozenLake8x8-v1",
                       "--seeds", 1, 2, "--script-dir", scripts, "--results-dir", results, "--work-dir", base / "work")
    return {"base": base, "scripts": scripts, "results": results, "done": done, "tabular": tabular}


def test_loss_curves_keep_one_point_per_step_and_thin_long_runs_keeping_the_last():
    # A run resumed at 2500 logs 3000-4000 again, and 3500: the later values win, in step order.
    events = [{"global_step": s, "losses/entropy": 1.0, "losses/q_mean": float(s)} for s in range(0, 5000, 1000)]
    events += [{"global_step": s, "losses/entropy": 2.0} for s in (3000, 3500, 4000)] + [{"global_step": 4000, "x": 1}]
    curves = run_module.loss_curves(events)
    assert curves["losses/entropy"] == [[0, 1.0], [1000, 1.0], [2000, 1.0], [3000, 2.0], [3500, 2.0], [4000, 2.0]]
    assert curves["losses/q_mean"] == [[s, float(s)] for s in range(0, 5000, 1000)] and "losses/alpha" not in curves
    # 1002 points: every 5th is kept (0, 5000, ..., 1M), then the last, 1,001,000, is added.
    thinned = run_module.loss_curves([{"global_step": s, "losses/alpha": s / 1000} for s in range(0, 1_002_000, 1000)])
    steps = [step for step, _ in thinned["losses/alpha"]]
    assert steps == list(range(0, 1_000_001, 5000)) + [1_001_000] and thinned["losses/alpha"][-1][1] == 1001.0
    assert len(steps) <= run_module.LOSS_CURVE_POINTS + 1
    assert run_module.loss_curves([{"global_step": 1, "losses/alpha": float("nan")}]) == {"losses/alpha": [[1, None]]}


def test_runner_records_every_seed_with_curves_speed_and_provenance(benchmark_run):
    done = benchmark_run["done"]
    assert done.returncode == 1, done.stderr  # one seed failed: the run as a whole is not a success
    path = benchmark_run["results"] / "sac_continuous-v1__Pendulum-v1.json"
    result = json.loads(path.read_text())
    assert [s["seed"] for s in result["seeds"]] == [1, 2, 3]
    assert result["algo"] == "sac_continuous" and result["env_id"] == "Pendulum-v1" and result["variant"] == "v1"
    assert result["total_timesteps"] == 500 and result["kind"] == "training"

    for seed in (1, 3):
        record = result["seeds"][seed - 1]
        assert record["status"] == "ok" and record["exit_code"] == 0
        # The curve is exactly the eval events of metrics.jsonl, in order; other events are ignored.
        assert record["eval_curve"] == [[i * 100, i * 100 / 10 + seed] for i in range(6)]
        assert record["loss_curves"] == {"losses/alpha": [[i * 100, 0.2 / (i + 1)] for i in range(6)]}
        assert record["final_eval_return_mean"] == 50.0 + seed
        assert record["train_sps"] == 1000.0 + seed
        assert record["wall_time_s"] > 0 and record["script_wall_time_s"] == 0.05
        command = record["command"]
        assert command[1].endswith("sac_continuous.py")
        assert run_module.flag_value(command, "--seed") == str(seed)
        assert run_module.flag_value(command, "--env-id") == "Pendulum-v1"
        assert run_module.flag_value(command, "--total-timesteps") == "500"
        assert run_module.flag_value(command, "--variant") == "v1"
        assert Path(run_module.flag_value(command, "--output-dir")).name == f"seed{seed}"
        assert f"--seed {seed}" in record["command_line"]

    failed = result["seeds"][1]
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    assert "losses/qf_loss is nan" in failed["stderr_tail"]
    assert failed["final_eval_return_mean"] is None

    aggregate = result["aggregate"]
    assert aggregate["seeds_ok"] == 2 and aggregate["seeds_failed"] == 1
    assert aggregate["final_eval_return"]["mean"] == pytest.approx(52.0)
    assert aggregate["final_eval_return"]["std"] == pytest.approx(1.0)  # population std of 51 and 53
    assert aggregate["train_sps"]["mean"] == pytest.approx(1002.0)

    assert set(result["versions"]) >= {"python", "torch", "gymnasium", "mujoco", "numpy"}
    assert result["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert result["machine"]["cpu"] and result["machine"]["cpu_count"] >= 1
    assert result["device"]["device"] == "cpu"
    assert set(result["git"]) == {"commit", "dirty", "script_blob", "commits"} and not result["git"]["dirty"]
    assert re.match(r"\d{4}-\d\d-\d\dT", result["date"])
    assert "--fail-seed 2" in result["runner_command"]

    # One line per seed on stdout, with return, speed and time for the ones that worked.
    lines = [line for line in done.stdout.splitlines() if re.match(r"\s+seed\s+\d", line)]
    assert len(lines) == 3
    assert any("seed   1  ok  final return 51.00  SPS 1001" in line for line in lines)
    assert any("FAILED exit 3" in line and "qf_loss is nan" in line for line in lines)


def test_runner_stores_the_tabular_script_json_per_seed(benchmark_run):
    assert benchmark_run["tabular"].returncode == 0, benchmark_run["tabular"].stderr
    result = json.loads((benchmark_run["results"] / "soft_policy_iteration_tabular__FrozenLake8x8-v1.json").read_text())
    assert result["kind"] == "tabular"
    for record, seed in zip(result["seeds"], (1, 2)):
        assert record["status"] == "ok"
        assert record["output"] == {"env": "FrozenLake8x8-v1", "seed": seed, "iterations": 4 + seed,
                                    "verdicts": {"lemma1_contraction": True, "lemma2_monotone_improvement": seed != 2}}
        assert run_module.flag_value(record["command"], "--env") == "FrozenLake8x8-v1"
        assert "--total-timesteps" not in record["command"] and "--env-id" not in record["command"]


def test_report_writes_tables_plots_and_summary(benchmark_run):
    base = benchmark_run["base"]
    readme, plots, summary = base / "out" / "README.md", base / "out" / "plots", base / "out" / "summary_table.md"
    main_readme = base / "main_README.md"
    main_readme.write_text("# Project\n<!-- benchmarks:start -->\nold numbers\n<!-- benchmarks:end -->\nafter\n")
    speed, ablation, findings = base / "speed.md", base / "ablation.md", base / "findings.md"
    speed.write_text("| configuration | SPS |\n| --- | ---: |\n| sac_continuous v2 | 73 |\n")
    ablation.write_text("| form | ratio |\n| --- | ---: |\n| two critic modules | 0.97x |\n")
    findings.write_text("# Findings\n\nHopper swings.\n\n## Atari\n\nAdam's eps.\n\n```bash\n# a comment\n```\n")
    done = run_tool(REPORT, "--results-dir", benchmark_run["results"], "--readme", readme, "--plots-dir", plots,
                    "--summary", summary, "--main-readme", main_readme, "--speed", speed, "--ablation", ablation,
                    "--findings", findings)
    assert done.returncode == 0, done.stderr
    embedded = main_readme.read_text()
    assert "old numbers" not in embedded and embedded.endswith("after\n")
    headline = [line for line in embedded.splitlines() if line.startswith("| `")]
    assert len(headline) == 2 and "Pendulum-v1" in headline[0]  # the HEADLINE rows that have a result file
    assert "FrozenLake8x8-v1" in headline[1] and "| 52.0 ± 1.0 |" in headline[0]
    seconds = json.loads(next(Path(benchmark_run["results"]).glob("sac_continuous*.json")).read_text())[
        "aggregate"]["wall_time_s"]["mean"]
    assert f"| {report_module.duration(seconds)} |" in headline[0]  # the mean time per seed
    assert "73 |" not in embedded  # the speed tables stay in benchmarks/README.md
    assert plots.joinpath("overview.png").read_bytes()[:8] == PNG_MAGIC

    png = plots / "sac_continuous-v1__Pendulum-v1.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.shape[1] == 1000  # the return (600 px wide) and, beside it, the temperature the seeds logged
    assert not (plots / "soft_policy_iteration_tabular__FrozenLake8x8-v1.png").exists()  # no curve, no plot

    text = readme.read_text()
    training_rows = [line for line in text.splitlines() if line.startswith("| Pendulum-v1")]
    assert len(training_rows) == 1
    row = training_rows[0]
    assert "| v1 | 2/3 | 500 | 52.0 ± 1.0 | 1,002 ± 1 |" in row
    assert "rl-zoo" in row and "-157" in row  # the reference value and its source
    assert "(plots/sac_continuous-v1__Pendulum-v1.png)" in text
    commit = json.loads(next(Path(benchmark_run["results"]).glob("sac_continuous*.json")).read_text())["git"]["commit"]
    assert f"| {commit[:7]}" in row  # the commit the seeds ran at, in the table
    assert "## Speed" in text and "| sac_continuous v2 | 73 |" in text and "| two critic modules | 0.97x |" in text
    assert "## Findings" in text and "### Atari" in text and "Adam's eps." in text  # one heading level down
    assert "\n# a comment\n" in text  # but a comment in a code block stays as it was
    tabular_rows = [line for line in text.splitlines() if line.startswith("| FrozenLake8x8-v1")]
    assert len(tabular_rows) == 1
    assert "lemma1_contraction 2/2" in tabular_rows[0] and "lemma2_monotone_improvement 1/2" in tabular_rows[0]
    assert "## Failed seeds" in text and "qf_loss is nan" in text
    assert "AMD" in text or "Intel" in text or "cores" in text  # the machine section

    summary_rows = [line for line in summary.read_text().splitlines() if line.startswith("| `")]
    assert len(summary_rows) == 2  # one row per result file


def test_merge_adds_seeds_only_from_the_same_script_content_and_flags(tmp_path):
    """A benchmark split over sessions: seeds 1 2, then seed 3 with --merge, give one file with three seeds and both
    runs; other flags or another version of the script are refused with status 2 and leave the file as it was."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "sac_continuous.py"
    script.write_text(FAKE_TRAINING_SCRIPT)
    git = ["git", "-C", str(scripts), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "fake script"]):
        subprocess.run(git + command, check=True, capture_output=True)
    results = tmp_path / "results"
    common = ["--algo", "sac_continuous", "--env-id", "Pendulum-v1", "--total-timesteps", 500, "--script-dir", scripts,
              "--results-dir", results, "--work-dir", tmp_path / "work"]
    assert run_tool(RUN, *common, "--seeds", 1, 2, "--", "--variant", "v1").returncode == 0
    path = results / "sac_continuous-v1__Pendulum-v1.json"
    done = run_tool(RUN, *common, "--seeds", 3, "--merge", "--", "--variant", "v1")
    assert done.returncode == 0, done.stderr
    result = json.loads(path.read_text())
    assert [seed["seed"] for seed in result["seeds"]] == [1, 2, 3]
    assert result["seeds_requested"] == [1, 2, 3] and [run["seeds"] for run in result["runs"]] == [[1, 2], [3]]
    assert result["aggregate"]["final_eval_return"]["mean"] == pytest.approx(500 / 10 + 2)  # seeds 1, 2, 3
    assert result["seeds"][2]["git_commit"] == result["git"]["commit"]

    before = path.read_text()
    other_flags = run_tool(RUN, *common, "--seeds", 4, "--merge", "--", "--variant", "v1", "--device", "cpu")
    assert other_flags.returncode == 2 and "other flags" in other_flags.stderr
    script.write_text(FAKE_TRAINING_SCRIPT + "\n# changed\n")
    subprocess.run(git + ["commit", "-q", "-am", "changed"], check=True, capture_output=True)
    other_script = run_tool(RUN, *common, "--seeds", 4, "--merge", "--", "--variant", "v1")
    assert other_script.returncode == 2 and "another version" in other_script.stderr
    assert path.read_text() == before


def test_merge_takes_an_explicit_budget_equal_to_the_default_steps_an_earlier_file_ran(tmp_path):
    git = {"commit": "abc", "dirty": False, "script_blob": "blob"}
    earlier = {"algo": "sac_discrete", "env_id": "CartPole-v1", "extra_args": ["--twin-q", "mean"],
               "total_timesteps_requested": None, "total_timesteps": 500, "git": git}
    (tmp_path / "sac_discrete__CartPole-v1.json").write_text(json.dumps(earlier))
    options = argparse.Namespace(results_dir=tmp_path, script_dir=tmp_path)
    entry = {"algo": "sac_discrete", "env_id": "CartPole-v1", "extra": ["--twin-q", "mean"], "tag": None}
    assert run_module.merge_problem({**entry, "total_timesteps": 500}, options, git) is None
    assert run_module.merge_problem({**entry, "total_timesteps": None}, options, git) is None
    assert "other flags or budget" in run_module.merge_problem({**entry, "total_timesteps": 600}, options, git)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_runner_records_the_peak_memory_of_a_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "MEMORY_POLL_S", 0.1)
    hold_300_mb = "import time; block = bytearray(300 * 2**20); time.sleep(1.0)"
    record = run_module.run_seed([sys.executable, "-c", hold_300_mb], 1, tmp_path / "seed1", "sac_continuous",
                                 dict(os.environ), timeout=None)
    assert 300 <= record["peak_rss_mb"] < 400
    # Kept with the seed's segments, so a seed resumed, or collected later without running, still has it.
    (segment,) = run_module.read_jsonl(tmp_path / "seed1" / "segments.jsonl")
    assert segment["peak_rss_mb"] == record["peak_rss_mb"]


def test_a_seed_collected_after_its_segments_keeps_its_command_peak_memory_and_wall_time(tmp_path):
    # A seed whose checkpoint is at its budget is collected without running: from its two segments' records.
    torch = pytest.importorskip("torch")
    (tmp_path / "seed1" / "run").mkdir(parents=True)
    torch.save({"global_step": 600}, tmp_path / "seed1" / "run" / "checkpoint.pt")
    segments = [{"from_step": 0, "to_step": 400, "wall_time_s": 10.0, "exit_code": 130, "peak_rss_mb": 500.0},
                {"from_step": 400, "to_step": 600, "wall_time_s": 5.0, "exit_code": 0, "peak_rss_mb": 300.0,
                 "command_line": "python sac_continuous.py --resume run/checkpoint.pt --total-timesteps 600"}]
    (tmp_path / "seed1" / "segments.jsonl").write_text("".join(json.dumps(segment) + "\n" for segment in segments))
    (tmp_path / "seed1" / "stderr.log").write_text("")
    command = ["python", "sac_continuous.py", "--seed", "1", "--total-timesteps", "600", "--save-buffer"]
    record = run_module.run_seed(command, 1, tmp_path / "seed1", "sac_continuous", dict(os.environ), timeout=None,
                                 resume=True)
    assert record["command"] == command and record["resumed_at_steps"] == [400]
    assert record["peak_rss_mb"] == 500.0 and record["wall_time_s"] == 15.0


def test_dry_run_prints_commands_and_writes_nothing(tmp_path):
    done = run_tool(RUN, "--suite", "quick", "--dry-run", "--results-dir", tmp_path / "results")
    assert done.returncode == 0, done.stderr
    commands = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    expected = sum(entry["seeds"] for entry in run_module.SUITES["quick"])
    assert len(commands) == expected
    scripts = {Path(command.split()[1]).stem for command in commands}
    assert scripts == {"soft_policy_iteration_tabular", "sac_continuous", "sac_discrete", "soft_q_learning"}
    assert not (tmp_path / "results").exists()


def test_suite_filters_and_overrides(tmp_path):
    done = run_tool(RUN, "--suite", "mujoco", "--algo", "sac_continuous", "--env-id", "Hopper-v5", "--seeds", 7,
                    "--total-timesteps", 1234, "--dry-run", "--", "--batch-size", 64)
    assert done.returncode == 0, done.stderr
    commands = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(commands) == 2  # v2 and v1
    for command in commands:
        assert run_module.flag_value(command, "--seed") == "7"
        assert run_module.flag_value(command, "--total-timesteps") == "1234"
        assert run_module.flag_value(command, "--batch-size") == "64"
    assert {run_module.flag_value(c, "--variant") for c in commands} == {"v1", "v2"}
    assert "== sac_continuous-v2-1m__Hopper-v5:" in done.stdout  # the papers' budget, apart from the 100k files
    retagged = run_tool(RUN, "--suite", "mujoco", "--env-id", "Hopper-v5", "--tag", "mine", "--dry-run")
    assert "== sac_continuous-mine__Hopper-v5:" in retagged.stdout  # a tag given wins


def test_missing_script_is_reported_not_crashed(tmp_path):
    done = run_tool(RUN, "--algo", "no_such_script", "--env-id", "CartPole-v1", "--script-dir", tmp_path,
                    "--results-dir", tmp_path / "results")
    assert done.returncode == 1
    assert "no_such_script.py does not exist" in done.stderr and "Traceback" not in done.stderr


def test_result_names():
    stem = run_module.result_stem
    assert stem("sac_discrete", "ALE/Pong-v5", []) == "sac_discrete__ALE-Pong-v5"
    assert stem("sac_continuous", "Hopper-v5", ["--variant", "v1"]) == "sac_continuous-v1__Hopper-v5"
    assert stem("sac_continuous", "Hopper-v5", ["--variant=v1"]) == "sac_continuous-v1__Hopper-v5"
    assert stem("sac_continuous", "Hopper-v5", ["--variant", "v1"], tag="lr3e-4") == "sac_continuous-lr3e-4__Hopper-v5"


def test_curve_band_is_mean_min_max_over_seeds_on_a_common_grid():
    result = {"seeds": [
        {"eval_curve": [[0, 0.0], [100, 10.0], [200, 20.0]]},
        {"eval_curve": [[0, 2.0], [200, 40.0]]},  # evaluated less often: interpolated at step 100
        {"eval_curve": []},  # a failed seed contributes nothing
    ]}
    grid, mean, low, high, count = report_module.curve_band(result)
    assert count == 2
    assert grid.tolist() == [0, 100, 200]
    assert mean.tolist() == pytest.approx([1.0, 15.5, 30.0])
    assert low.tolist() == pytest.approx([0.0, 10.0, 20.0])
    assert high.tolist() == pytest.approx([2.0, 21.0, 40.0])


@functools.cache
def help_flags(script: Path) -> frozenset[str]:
    """Every --flag in the script's --help (once per script: starting torch takes seconds)."""
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"--[a-z0-9][a-z0-9-]*", done.stdout))


@pytest.mark.parametrize("sweep", SWEEPS, ids=[path.stem for path in SWEEPS])
def test_sweep_parameters_are_flags_of_the_script(sweep):
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(sweep.read_text())
    assert config["metric"] == {"name": "eval/return_mean", "goal": "maximize"}
    assert config["method"] in {"grid", "random", "bayes"}
    command = config["command"]
    assert command[:3] == ["${env}", "python", "${program}"] and "${args}" in command and "--track" in command
    if sweep.stem.endswith("_seeds"):
        assert config["method"] == "grid" and config["parameters"]["seed"]["values"] == [1, 2, 3, 4, 5]
    for name, spec in config["parameters"].items():
        values = spec.get("values", [spec.get("value")])
        # tyro takes booleans as --flag / --no-flag, never --flag=True as wandb's ${args} would pass them.
        assert not any(isinstance(value, bool) for value in values), name
    script = ROOT / config["program"]
    if not script.exists():
        pytest.skip(f"{config['program']} does not exist yet")
    flags = help_flags(script)
    unknown = sorted(name for name in config["parameters"] if f"--{name}" not in flags)
    assert not unknown, f"{sweep.name}: not flags of {script.name}: {unknown}"


def test_sigterm_stops_the_running_seed_and_keeps_what_was_done(tmp_path):
    """SIGTERM to the runner reaches the running script; no new seed starts; the partial file is written."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "slow_algo.py").write_text(textwrap.dedent(
        """
        import argparse, os, sys, time
        parser = argparse.ArgumentParser()
        for flag in ("--seed", "--env-id", "--output-dir", "--device"):
            parser.add_argument(flag)
        args = parser.parse_args()
        os.makedirs(args.output_dir, exist_ok=True)
        print("training", file=sys.stderr, flush=True)
        open(os.path.join(args.output_dir, "started"), "w").close()
        time.sleep(60)
        """
    ))
    runner = subprocess.Popen(
        [sys.executable, str(RUN), "--algo", "slow_algo", "--env-id", "X-v0", "--seeds", "1", "2",
         "--script-dir", str(scripts), "--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
         "--", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    started = tmp_path / "work" / "slow_algo__X-v0" / "seed1" / "started"
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    runner.terminate()
    _, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 130, stderr
    result = json.loads((tmp_path / "results" / "slow_algo__X-v0.json").read_text())
    assert result["interrupted"] is True and result["seeds_requested"] == [1, 2]
    assert [(s["seed"], s["status"], s["exit_code"]) for s in result["seeds"]] == [(1, "failed", -15)]
    assert result["seeds"][0]["stderr_tail"] == "training"


def test_speed_configurations_pass_only_flags_their_scripts_accept():
    spec = importlib.util.spec_from_file_location("speed", ROOT / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    scripts = {script.name for _, configurations in speed.TASKS for _, script, _ in configurations}
    assert {"sac_straightforward.py", "sac_continuous.py", "sac_discrete.py", "soft_q_learning.py"} <= scripts
    for env_id, configurations in speed.TASKS:
        for name, script, extra in configurations:
            passed = {"--env-id", "--seed", "--total-timesteps", "--learning-starts", "--output-dir",
                      *speed.COMMON.get(script.name, []), *extra}
            assert {flag for flag in passed if flag.startswith("--")} <= help_flags(script), name


def test_multigoal_final_return_counts_seeds_that_reach_every_goal():
    seed = lambda ret, counts: {"status": "ok", "final_eval_return_mean": ret, "summary": {"goal_reach_counts": counts}}  # noqa: E731
    result = {"seeds": [seed(-200.0, [3, 4, 5, 6]), seed(-210.0, [10, 0, 5, 6]), seed(-190.0, [2, 9, 9, 9])]}
    assert report_module.final_return_text(result) == "-200 ± 8; all 4 goals on 2/3 seeds (rarest goal: 0 episodes)"
    reference = report_module.references_for({"algo": "soft_q_learning", "env_id": "MultiGoal"})[0]
    assert report_module.reference_text(reference, link=False) == "all 4 goals (SQL paper Fig. 2)"


def test_update_profile_counts_the_matrix_product_flops_of_one_update_by_hand():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import update_profile

    # obs 1, action 1, batch 1, one hidden layer of 2: actor 1->2->2 has 6 multiply-adds, a critic 2->2->1 has 6.
    # Forward only: next action (6) and both target critics (12); trained (forward + 2x backward): both critics (12),
    # the actor (6), both critics on fresh actions (12). Two FLOPs per multiply-add.
    expected = 2 * (6 + 12) + 2 * 3 * (12 + 6 + 12)
    assert update_profile.matmul_flops(1, 1, 1, (2,)) == expected


@pytest.mark.parametrize("suite", sorted(run_module.SUITES))
def test_suite_entries_pass_only_flags_their_scripts_accept(suite):
    for entry in run_module.SUITES[suite]:
        if entry["algo"] == run_module.TABULAR_ALGO:
            continue
        flags = help_flags(ROOT / f"{entry['algo']}.py")
        unknown = sorted(flag for flag in entry["extra"] if flag.startswith("--") and flag not in flags)
        assert not unknown, f"{suite}: {entry['algo']} does not take {unknown}"


def test_atari_rows_state_their_preprocessing_and_the_sampled_policy_return():
    seeds = [{"status": "ok", "final_eval_return_mean": greedy, "summary": {"eval_stochastic_return_mean": sampled}}
             for greedy, sampled in [(0.0, 180.0), (100.0, 220.0)]]
    result = {"env_id": "SeaquestNoFrameskip-v4", "extra_args": ["--no-clip-rewards"], "seeds": seeds}
    assert report_module.label(result) == "Atari: no sticky actions, life loss terminal, raw rewards"
    assert report_module.final_return_text(result) == "50.0 ± 50.0 (sampling π: 200 ± 20)"
    assert report_module.label({**result, "env_id": "ALE/Pong-v5", "extra_args": []}).startswith(
        "Atari: sticky actions 0.25")
    assert report_module.label({**result, "tag": "eps1e-4"}) == (
        "eps1e-4; Atari: no sticky actions, life loss terminal, raw rewards")  # a tag does not hide the preprocessing
    assert report_module.label({"env_id": "CartPole-v1", "seeds": []}) == "–"
    assert report_module.label({"env_id": "CartPole-v1", "tag": "tes089", "seeds": []}) == "tes089"


def test_a_row_at_the_papers_budget_shows_every_reference_measured_at_that_budget():
    cheetah = {"algo": "sac_continuous", "env_id": "HalfCheetah-v5", "total_timesteps": 1_000_000}
    shown = report_module.references_text(cheetah)
    assert [source in shown for source in ("SAC paper", "CleanRL", "rl-zoo", "Tianshou")] == [True] * 4
    assert "9,635 ± 1,424 @ 1M" in shown and "12,139 ± 1,049 @ 1M" in shown
    shorter = report_module.references_text({**cheetah, "total_timesteps": 100_000})
    assert shorter.startswith("≈ 11,250 @ 1M") and "CleanRL" not in shorter  # the first, the rest under References
    pong = report_module.references_text({"algo": "sac_discrete", "env_id": "Pong", "total_timesteps": 100_000})
    assert pong == "-21.0 ± 0.0 @ 100k ([Christodoulou 2019](https://arxiv.org/abs/1910.07207))"  # not CleanRL's 5M
    assert report_module.references_text({"algo": "none", "env_id": "Nowhere-v0"}) == "–"


def test_a_row_says_which_seeds_were_resumed_and_where():
    seeds = [{"seed": 3, "status": "failed", "resumed_at_steps": [300_000, 650_000]}, {"seed": 2, "status": "ok"},
             {"seed": 1, "status": "ok", "resumed_at_steps": [550_000]}]  # a merged file: seeds in the order they ran
    assert report_module.seeds_text({"seeds": seeds}) == "2/3 (resumed: seed 1 at 550k; seed 3 at 300k, 650k)"
    assert report_module.seeds_text({"seeds": seeds[1:2], "seeds_requested": [2, 4]}) == "1/2"
    stopped_by_a_signal = [{"seed": 1, "status": "ok", "resumed_at_steps": [381_269]}]
    assert report_module.seeds_text({"seeds": stopped_by_a_signal}) == "1/1 (resumed: seed 1 at 381,269)"


def test_resume_continues_each_seed_from_its_checkpoint_and_records_where(tmp_path):
    # A seed longer than a session: run to step 400, then --resume to 600 in the same work dir. The result says where
    # the seed was resumed and sums the wall time of both segments.
    flags = ["--algo", "sac_discrete", "--env-id", "CartPole-v1", "--seeds", 1, "--work-dir", tmp_path / "work",
             "--results-dir", tmp_path / "results"]
    script_flags = ["--", "--learning-starts", 100, "--eval-every", 0, "--eval-episodes", 1, "--batch-size", 16,
                    "--hidden-sizes", 16, 16, "--save-buffer"]
    assert run_tool(RUN, *flags, "--total-timesteps", 400, *script_flags).returncode == 0
    first = json.loads((tmp_path / "results" / "sac_discrete__CartPole-v1.json").read_text())["seeds"][0]
    done = run_tool(RUN, *flags, "--total-timesteps", 600, "--resume", *script_flags)
    assert done.returncode == 0, done.stderr
    (record,) = json.loads((tmp_path / "results" / "sac_discrete__CartPole-v1.json").read_text())["seeds"]
    assert record["status"] == "ok" and record["global_step"] == 600 and record["resumed_at_steps"] == [400]
    assert [s["to_step"] for s in record["segments"]] == [400, 600]
    # The record's command is the seed's own, which reproduces it; the resume's is in its segment.
    assert record["command_line"] == first["command_line"].replace("--total-timesteps 400", "--total-timesteps 600")
    assert "--resume" in record["segments"][1]["command_line"] and "command_line" not in record["segments"][0]
    assert "and the replay buffer" in record["resume_restores"]  # the first command had --save-buffer
    assert "not the replay buffer" in run_module.resume_restores(["python", "sac_discrete.py", "--seed", "1"])
    assert record["wall_time_s"] > first["wall_time_s"]
    # Resumed again once finished (a chain of seeds restarted after a stop), the seed is collected, not refused.
    again = run_tool(RUN, *flags, "--total-timesteps", 600, "--resume", *script_flags)
    assert again.returncode == 0, again.stderr
    (collected,) = json.loads((tmp_path / "results" / "sac_discrete__CartPole-v1.json").read_text())["seeds"]
    for key in ("status", "global_step", "resumed_at_steps", "segments", "wall_time_s", "final_eval_return_mean",
                "command"):
        assert collected[key] == record[key], key
