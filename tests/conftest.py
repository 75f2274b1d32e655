import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_DIR", str(ROOT / ".cache" / "wandb"))
os.environ.setdefault("WANDB_CONFIG_DIR", str(ROOT / ".cache" / "wandb-config"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["DVC_NO_ANALYTICS"] = "1"


@pytest.fixture(scope="session")
def humaneval():
    from emergence.data.pairs import load_humaneval
    from emergence.stages.raw import humaneval_source
    return load_humaneval(humaneval_source())
