"""Settings every test shares: no network, no prompts, repeatable, and the scripts importable."""

import os
import sys
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("MPLBACKEND", "Agg")
# The scripts the tests start import tests/sitecustomize.py, which skips the last garbage collection at their exit.
TESTS = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH") else TESTS

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# One torch thread per pytest-xdist worker: the workers already fill the cores, and more threads only contend.
if "PYTEST_XDIST_WORKER" in os.environ:
    import torch

    torch.set_num_threads(1)
