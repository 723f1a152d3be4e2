"""The contract every training script keeps with its user, checked the same way on all three: run it as a user would
(a subprocess with a tiny budget) and read what it leaves behind. The algorithm tests stay in each script's own file."""

import glob
import importlib.util
import json
import math
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "sac_continuous": ["--env-id", "Pendulum-v1", "--total-timesteps", "600", "--learning-starts", "300",
                       "--eval-every", "300", "--eval-episodes", "2", "--log-every", "100", "--batch-size", "32",
                       "--hidden-sizes", "32", "32"],
    "sac_discrete": ["--env-id", "CartPole-v1", "--total-timesteps", "600", "--learning-starts", "300",
                     "--eval-every", "300", "--eval-episodes", "2", "--log-every", "100", "--batch-size", "32",
                     "--hidden-sizes", "32", "32"],
    "soft_q_learning": ["--env-id", "MultiGoal", "--total-timesteps", "600", "--learning-starts", "300",
                        "--eval-every", "300", "--eval-episodes", "2", "--log-every", "100", "--batch-size", "32",
                        "--hidden-sizes", "32", "32", "--goal-episodes", "2"],
}
# A setting each script cannot survive: the losses overflow within a few hundred steps.
DIVERGENT = {
    "sac_continuous": ["--reward-scale", "1e38"],
    "sac_discrete": ["--q-lr", "1e30", "--policy-lr", "1e30"],
    "soft_q_learning": ["--reward-scale", "1e38"],
}
SCRIPTS = list(TINY)


def run(script, *flags, cwd=None, timeout=300, env=None, path=None):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **(env or {})}
    command = [sys.executable, str(path or ROOT / f"{script}.py"), *map(str, flags)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=environment)


def run_dirs(output_dir) -> list[Path]:
    return sorted(Path(p).parent for p in glob.glob(f"{output_dir}/*/args.json"))


def summary_of(output_dir) -> dict:
    (run_dir,) = run_dirs(output_dir)
    return json.loads((run_dir / "summary.json").read_text())


def events(run_dir, drop_time=True) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    if drop_time:
        for event in out:
            event.pop("wall_time")
            event.pop("charts/SPS", None)
    return out


def assert_one_line_error(completed, *expected):
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr and len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    for text in expected:
        assert text in completed.stderr, completed.stderr


# ---------------------------------------------------------------- a run and its files
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_run_leaves_its_files_and_the_same_seed_gives_the_same_metrics(script, tmp_path):
    for name in ("first", "second"):
        completed = run(script, *TINY[script], "--output-dir", tmp_path / name)
        assert completed.returncode == 0, completed.stderr
    summary = summary_of(tmp_path / "first")
    assert summary["global_step"] == 600 and summary["episodes"] >= 1 and summary["train_sps"] > 0
    assert math.isfinite(summary["eval_return_mean"]) and summary["interrupted"] is False
    (first,), (second,) = run_dirs(tmp_path / "first"), run_dirs(tmp_path / "second")
    assert json.loads((first / "args.json").read_text())["seed"] == 1
    assert (first / "checkpoint.pt").exists()
    if importlib.util.find_spec("matplotlib"):  # the run's own picture: returns, critic, temperature
        height, width, _ = __import__("matplotlib.image").image.imread(first / "curves.png").shape
        assert (height, width) == (288, 1200)
    assert events(first) == events(second), "same seed on CPU, different metrics"
    loss_steps = [e["global_step"] for e in events(first, drop_time=False) if "charts/SPS" in e]
    assert loss_steps == [100, 200, 300, 400, 500, 600]
    assert str(second) in completed.stderr  # the closing line names the run directory
    assert "learning not started" in completed.stderr and "SPS 0," not in completed.stderr  # not a broken-looking 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_two_runs_started_in_the_same_second_get_their_own_directories(script, tmp_path):
    command = [sys.executable, str(ROOT / f"{script}.py"), *TINY[script], "--output-dir", str(tmp_path)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    processes = [subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert all(process.wait(timeout=300) == 0 for process in processes)
    directories = run_dirs(tmp_path)
    assert len(directories) == 2
    assert events(directories[0]) == events(directories[1])


@pytest.fixture
def background():
    """Start a script in the background; whatever a test leaves running is killed when it ends, pass or fail."""
    processes = []

    def start(script, *flags):
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        processes.append(subprocess.Popen([sys.executable, str(ROOT / f"{script}.py"), *map(str, flags)],
                                          env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return processes[-1]
    yield start
    for process in processes:
        process.kill()


def wait_for(text, run_dir_glob, process, seconds=120):
    deadline = time.time() + seconds
    while text not in "".join(Path(p).read_text() for p in glob.glob(f"{run_dir_glob}/metrics.jsonl")):
        assert time.time() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
        time.sleep(0.1)


# ---------------------------------------------------------------- stop, resume, evaluate
@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_saves_a_checkpoint_and_the_summary_then_exits_130(script, tmp_path, background):
    process = background(script, *TINY[script], "--total-timesteps", "1000000", "--eval-every", "0", "--output-dir",
                         tmp_path)
    wait_for('"global_step": 400', f"{tmp_path}/*", process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    summary = summary_of(tmp_path)
    assert summary["interrupted"] and 400 <= summary["global_step"] < 1_000_000
    (run_dir,) = run_dirs(tmp_path)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"] == summary["global_step"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_continues_in_the_run_directory_with_the_checkpoints_settings(script, tmp_path):
    assert run(script, *TINY[script], "--output-dir", tmp_path, "--total-timesteps", "400").returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    (run_dir / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # left by a run killed while writing
    # Only the length changes: every other flag comes from the checkpoint, as the README's resume example says.
    completed = run(script, "--resume", run_dir / "checkpoint.pt", "--total-timesteps", "600")
    assert completed.returncode == 0, completed.stderr
    assert run_dirs(tmp_path) == [run_dir] and not (run_dir / "checkpoint.pt.tmp").exists()
    assert json.loads((run_dir / "args.json").read_text())["batch_size"] == 32
    assert summary_of(tmp_path)["global_step"] == 600
    assert [e["global_step"] for e in events(run_dir) if "losses/qf_loss" in e][-1] == 600


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_refuses_a_flag_that_would_change_what_is_learned(script, tmp_path):
    assert run(script, *TINY[script], "--output-dir", tmp_path, "--total-timesteps", "400").returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    assert_one_line_error(run(script, "--resume", run_dir / "checkpoint.pt", "--batch-size", "48"), "--batch-size")
    other_env = {"sac_continuous": "MountainCarContinuous-v0", "sac_discrete": "CartPole-v0",
                 "soft_q_learning": "Pendulum-v1"}[script]
    assert_one_line_error(run(script, "--resume", run_dir / "checkpoint.pt", "--env-id", other_env), "--env-id")


@pytest.mark.parametrize("script", SCRIPTS)
def test_eval_only_prints_one_json_line_and_writes_no_run(script, tmp_path):
    assert run(script, *TINY[script], "--output-dir", tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    completed = run(script, "--eval-only", run_dir / "checkpoint.pt", "--eval-episodes", "2", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert math.isfinite(result["eval_return_mean"]) and result["global_step"] == 600
    assert run_dirs(tmp_path) == [run_dir] and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- faults
class Payload:
    """Unpickling this object creates a file: what a crafted checkpoint would do with a less harmless call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_diverging_run_exits_1_naming_the_loss_and_keeps_no_bad_checkpoint(script, tmp_path):
    completed = run(script, *TINY[script], *DIVERGENT[script], "--checkpoint-every", "50", "--output-dir", tmp_path)
    assert completed.returncode == 1, completed.stderr
    assert "at step" in completed.stderr and "Traceback" not in completed.stderr
    assert "at step" in summary_of(tmp_path)["error"]  # the summary is written however a run ends
    for checkpoint in glob.glob(f"{tmp_path}/*/checkpoint.pt"):
        state = torch.load(checkpoint, weights_only=True)
        bad = [name for name, value in state["agent"].items() if torch.is_tensor(value) and value.is_floating_point()
               and not torch.isfinite(value).all()] if isinstance(state["agent"], dict) else []
        assert not bad, f"a checkpoint with non-finite {bad} was written"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_crafted_checkpoint_cannot_run_code(script, tmp_path):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "checkpoint.pt"
    torch.save({"script": script, "args": {}, "payload": Payload(marker)}, crafted)
    for flag in ("--eval-only", "--resume"):
        assert_one_line_error(run(script, flag, crafted, "--output-dir", tmp_path / "out"), str(crafted))
    assert not marker.exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_checkpoints_that_are_missing_corrupt_or_foreign_are_refused(script, tmp_path):
    corrupt, foreign, no_args = tmp_path / "corrupt.pt", tmp_path / "foreign.pt", tmp_path / "no_args.pt"
    corrupt.write_bytes(b"not a checkpoint")
    other = "sac_discrete" if script != "sac_discrete" else "sac_continuous"
    torch.save({"script": other, "args": {}}, foreign)
    torch.save({"script": script}, no_args)
    cases = [(tmp_path / "missing.pt", "no such file"), (corrupt, "not a readable checkpoint"),
             (foreign, f"{other}.py"), (no_args, str(no_args))]
    for path, expected in cases:
        assert_one_line_error(run(script, "--eval-only", path), expected)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags, expected", [
    (["--gamma", "-0.5"], "--gamma"),
    (["--batch-size", "512", "--buffer-size", "100"], "--batch-size"),
    (["--total-timesteps", "0"], "--total-timesteps"),
    (["--learning-starts", "5000", "--total-timesteps", "1000"], "--learning-starts"),
    (["--env-id", "NoSuchEnv-v0"], "--env-id"),
    (["--buffer-size", "10000000000"], "--buffer-size"),
    (["--threads", "-1"], "--threads"),
])
def test_bad_input_is_one_line_and_exit_2(script, flags, expected, tmp_path):
    assert_one_line_error(run(script, *flags, "--output-dir", tmp_path), expected)
    assert not run_dirs(tmp_path), "a refused run left a run directory behind"


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_output_dir_that_cannot_be_written_is_refused_before_any_work(script, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert_one_line_error(run(script, "--output-dir", a_file), "--output-dir")
    assert_one_line_error(run(script, "--output-dir", "/proc/no-such-dir"), "--output-dir")


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_without_credentials_exits_2_instead_of_prompting(script, tmp_path):
    pytest.importorskip("wandb")
    env = {"HOME": str(tmp_path), "WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "none")}
    assert_one_line_error(run(script, *TINY[script], "--track", "--output-dir", tmp_path, env=env), "wandb login")


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_that_cannot_reach_wandb_is_one_line_not_a_hang(script, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()  # a wandb whose init fails as it does when its timeout runs out without a network
    (shadow / "wandb.py").write_text("class Settings:\n    def __init__(self, **settings):\n        pass\n\n\n"
                                     "def init(**kwargs):\n    raise TimeoutError('no network')\n")
    env = {"PYTHONPATH": str(shadow), "WANDB_API_KEY": "x" * 40, "WANDB_MODE": ""}
    assert_one_line_error(run(script, *TINY[script], "--track", "--output-dir", tmp_path, env=env), "--track")


@pytest.mark.parametrize("script", SCRIPTS)
def test_capture_video_without_moviepy_is_refused_before_training(script, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "moviepy.py").write_text("raise ImportError('moviepy is not installed here')\n")
    completed = run(script, *TINY[script], "--capture-video", "--output-dir", tmp_path, env={"PYTHONPATH": str(shadow)})
    assert_one_line_error(completed, "pip install moviepy")
    assert not run_dirs(tmp_path)


# ---------------------------------------------------------------- copied alone
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_script_runs_alone_in_an_empty_folder_even_on_a_terminal_without_tqdm_or_matplotlib(script, tmp_path):
    copy = tmp_path / f"{script}.py"
    shutil.copy(ROOT / f"{script}.py", copy)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for package in ("tqdm", "matplotlib"):
        (shadow / f"{package}.py").write_text(f"raise ImportError('{package} is not installed here')\n")
    leader, follower = pty.openpty()  # stderr is a terminal: the path that draws a progress bar
    try:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(shadow)}
        completed = subprocess.run([sys.executable, str(copy), *TINY[script]], cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=follower, env=environment, timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert completed.returncode == 0
    assert summary_of(tmp_path / "runs")["global_step"] == 600
    assert not list((tmp_path / "runs").glob("*/curves.png"))  # no matplotlib, no picture, and no error


@pytest.mark.parametrize("script", SCRIPTS)
def test_deterministic_mode_sets_the_cublas_workspace_before_any_cuda_call(script, monkeypatch):
    module = __import__(script)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        module.seed_everything(module.Args(seed=1, torch_deterministic=True))
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        torch.use_deterministic_algorithms(False)


# ---------------------------------------------------------------- resume, signals and faults, by the rules a user meets
OWN_ENV = {"sac_continuous": "fixed_start:FixedStartBox-v0", "sac_discrete": "fixed_start:FixedStartDiscrete-v0",
           "soft_q_learning": "fixed_start:FixedStartDiscrete-v0"}
TESTS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_run_split_at_an_episode_boundary_and_resumed_is_the_uninterrupted_run(script, tmp_path):
    # A resumed run starts new episodes; where every episode starts alike (tests/fixed_start.py, 100 steps) and the
    # split falls on an episode boundary, everything else (networks, optimizers, the buffer, torch's random numbers,
    # the update schedule) must be restored exactly.
    flags = [*TINY[script], "--env-id", OWN_ENV[script], "--save-buffer", "--checkpoint-every", "0"]
    assert run(script, *flags, "--output-dir", tmp_path / "straight", env=TESTS_ON_PATH).returncode == 0
    assert run(script, *flags, "--total-timesteps", "400", "--output-dir", tmp_path / "split",
               env=TESTS_ON_PATH).returncode == 0
    (split,) = run_dirs(tmp_path / "split")
    resumed = run(script, "--resume", split / "checkpoint.pt", "--total-timesteps", "600", env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stderr
    (straight,) = run_dirs(tmp_path / "straight")
    # The split run also evaluated at its first stop (step 400); everything else must be identical.
    assert [e for e in events(split) if not (e["global_step"] == 400 and "eval/return_mean" in e)] == events(straight)


def test_sigterm_during_an_evaluation_saves_within_two_seconds_and_exits(tmp_path, background):
    process = background("sac_discrete", *TINY["sac_discrete"], "--eval-episodes", "100000", "--output-dir", tmp_path)
    wait_for('"global_step": 300, "wall_time"', f"{tmp_path}/*", process)  # the evaluation at step 300 begins
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    sent = time.time()
    assert process.wait(timeout=30) == 130  # the 100,000 episodes would take minutes
    (run_dir,) = run_dirs(tmp_path)
    # summary.json is the script's last write; after it, Python's own teardown of torch takes 1.5-2 s on this machine.
    assert (run_dir / "summary.json").stat().st_mtime - sent < 2.0
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"] == 300
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is True


def test_a_signal_during_the_final_evaluation_does_not_make_a_finished_run_interrupted(tmp_path, background):
    process = background("sac_discrete", *TINY["sac_discrete"], "--eval-every", "0", "--eval-episodes", "100000",
                         "--output-dir", tmp_path)
    wait_for('"global_step": 600, "wall_time"', f"{tmp_path}/*", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    summary = summary_of(tmp_path)
    assert summary["global_step"] == 600 and summary["interrupted"] is False


def test_a_second_ctrl_c_stops_at_once_and_the_checkpoint_loads(tmp_path, background):
    process = background("sac_discrete", *TINY["sac_discrete"], "--total-timesteps", "1000000", "--checkpoint-every",
                         "100", "--eval-every", "0", "--output-dir", tmp_path)
    wait_for('"global_step": 400', f"{tmp_path}/*", process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    assert "Traceback" not in process.stderr.read()
    (run_dir,) = run_dirs(tmp_path)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"] >= 400
    assert not list(run_dir.glob("*.tmp")) and json.loads((run_dir / "summary.json").read_text())["interrupted"]


def test_a_second_process_cannot_resume_a_run_that_is_running(tmp_path, background):
    assert run("sac_discrete", *TINY["sac_discrete"], "--total-timesteps", "400", "--output-dir", tmp_path
               ).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    first = background("sac_discrete", "--resume", run_dir / "checkpoint.pt", "--total-timesteps", "1000000")
    wait_for('"global_step": 500', run_dir, first)
    assert_one_line_error(run("sac_discrete", "--resume", run_dir / "checkpoint.pt", "--total-timesteps", "2000000"),
                          "another process is running this run")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=30) == 130


def test_resume_mistakes_are_refused_and_a_default_value_still_counts(tmp_path, background):
    assert run("sac_discrete", *TINY["sac_discrete"], "--total-timesteps", "400", "--output-dir", tmp_path
               ).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    checkpoint = run_dir / "checkpoint.pt"
    assert_one_line_error(run("sac_discrete", "--resume", checkpoint), "pass a larger --total-timesteps")
    assert_one_line_error(run("sac_discrete", "--resume", checkpoint, "--total-timesteps", "300"), "at step 400")
    # 30000 is the script's default: given on the command line, it counts.
    process = background("sac_discrete", "--resume", checkpoint, "--total-timesteps", "30000")
    wait_for('"global_step": 500', run_dir, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert json.loads((run_dir / "args.json").read_text())["total_timesteps"] == 30000


@pytest.mark.parametrize("script", SCRIPTS)
def test_eval_only_names_its_environment_and_refuses_settings_that_are_not_the_checkpoints(script, tmp_path):
    assert run(script, *TINY[script], "--total-timesteps", "400", "--output-dir", tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    checkpoint = run_dir / "checkpoint.pt"
    assert_one_line_error(run(script, "--eval-only", checkpoint, "--hidden-sizes", "64", "64"), "--hidden-sizes")
    completed = run(script, "--eval-only", checkpoint, "--eval-episodes", "1", "--total-timesteps", "400")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1])["env_id"] == TINY[script][1]
    state = torch.load(checkpoint, weights_only=True)
    state["args"]["hidden_sizes"] = [64, 64]  # settings that no longer fit the weights
    torch.save(state, tmp_path / "mismatched.pt")
    for flags in (["--eval-only", tmp_path / "mismatched.pt"], ["--resume", tmp_path / "mismatched.pt",
                                                                "--total-timesteps", "800"]):
        assert_one_line_error(run(script, *flags), "do not fit its settings")


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        flags = [*TINY["sac_continuous"], "--save-buffer", "--total-timesteps", "400"]
        assert run("sac_continuous", *flags, "--output-dir", disk).returncode == 0
        (run_dir,) = run_dirs(disk)
        (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 16 * 1024))  # room for logs only
        completed = run("sac_continuous", "--resume", run_dir / "checkpoint.pt", "--total-timesteps", "600")
        assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
        (line,) = completed.stderr.strip().splitlines()[-1:]
        assert "No space left on device" in line and "last good checkpoint" in line
        assert not list(run_dir.glob("*.tmp"))
        assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"] == 400
        assert "No space left" in json.loads((run_dir / "summary.json").read_text())["error"]
    finally:
        subprocess.run(["umount", str(disk)])


def test_a_saved_replay_buffer_holds_only_its_filled_rows(tmp_path):
    # Saving a slice of a preallocated tensor writes the whole tensor: 39 MB for Pendulum at step 600, not 3 MB.
    flags = [*TINY["sac_continuous"], "--hidden-sizes", "256", "256", "--save-buffer", "--output-dir", tmp_path]
    assert run("sac_continuous", *flags).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    assert (run_dir / "checkpoint.pt").stat().st_size < 5 * 2**20


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags, expected", [
    (["--exp-name", "../escaped"], "--exp-name"),
    (["--hidden-sizes", "100000", "100000"], "--hidden-sizes"),
    (["--batch-size", "1000000", "--buffer-size", "2000000", "--total-timesteps", "600"], "--batch-size"),
    (["--env-id", "nosuchmodule:Env-v0"], "nosuchmodule"),
])
def test_names_and_sizes_that_cannot_work_are_one_line_and_exit_2(script, flags, expected, tmp_path):
    assert_one_line_error(run(script, *flags, "--output-dir", tmp_path / "runs", cwd=tmp_path), expected)
    assert not list(tmp_path.rglob("*.json")), "a refused run left files behind"
