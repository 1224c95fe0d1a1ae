"""Fixtures shared across test files."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """2-core CI boxes shared with other work: one intra-op thread avoids oversubscription."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
