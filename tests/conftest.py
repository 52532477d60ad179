import pytest

import linmm


@pytest.fixture
def k():
    """A small default machine (256 MiB, vm layout)."""
    return linmm.Kernel(linmm.MachineConfig(ram="256M"))


@pytest.fixture
def machine_a():
    """balance.md Machine A: DMA 0, DMA32 1 GiB, Normal 3 GiB, explicit layout."""
    return linmm.Kernel(linmm.MachineConfig(zones={"DMA": 0, "DMA32": "1G", "Normal": "3G"}))
