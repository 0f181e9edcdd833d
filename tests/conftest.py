"""Shared test setup: mamba_ssm is made un-importable (transformers 5 binds to it on import,
with no device check), and every test starts from the same seed."""

import sys

import pytest
import torch

sys.modules.setdefault("mamba_ssm", None)  # `import mamba_ssm` now raises ImportError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
