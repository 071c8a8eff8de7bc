import pytest
import torch

# The tests run many tiny tensor operations, for which thread start-up costs more than it saves
# (and on a loaded 2-core machine, OpenMP contention makes them many times slower).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)
