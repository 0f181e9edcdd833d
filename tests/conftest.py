"""Shared test setup. On machines without CUDA, Triton kernels run in Triton's interpreter (set
before triton is imported) and mamba_ssm is made un-importable (transformers 5 binds to it on
import, with no device check). Every test starts from the same seed."""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.modules.setdefault("mamba_ssm", None)  # `import mamba_ssm` now raises ImportError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
