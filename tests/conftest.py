import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one intra-op thread avoids OpenMP hand-off costs on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
