"""Shared pytest set-up. Qt tests run without a display."""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (pytest-xdist already runs two workers on two cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
