"""Settings every test shares: no network, no prompts, repeatable, and the scripts importable."""

import os
import sys
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def float64_default():
    """Networks built inside the test are float64, so compiled and eager updates can be compared to 1e-9."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def eager_random_in_compiled_code():
    """Compiled code draws the same random numbers as eager code. torch's own config.patch, not monkeypatch: pytest 9
    cannot undo a setattr on torch._inductor.config, whose values live outside the module's __dict__."""
    with torch._inductor.config.patch(fallback_random=True):
        yield
