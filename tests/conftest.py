"""Settings every test shares: no network, no prompts, repeatable, and the scripts importable."""

import os
import sys
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

