"""linmm: the Linux v5.7 memory-management subsystem as an executable model.

    import linmm
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    t = k.spawn("a")
    a = t.mmap(0, 1 << 20, linmm.PROT_READ | linmm.PROT_WRITE,
               linmm.MAP_PRIVATE | linmm.MAP_ANONYMOUS)
    t.write(a, b"hello"); t.read(a, 5)
    print(k.read_file("/proc/meminfo"))
"""
from . import errors
from .config import MachineConfig
from .errors import ConfigError, Errno, KernelBug, Signal
from .kernel import Kernel
from .mm import gfp as _gfp
from .mm.memory_model import MAX_ORDER, PAGE_SHIFT, PAGE_SIZE, Page, pageblock_order  # noqa: F401
from .mm.mmu_notifier import (MMU_NOTIFIER_RANGE_BLOCKABLE, MMU_NOTIFY_CLEAR,  # noqa: F401
                              MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_PROTECTION_VMA,
                              MMU_NOTIFY_RELEASE, MMU_NOTIFY_SOFT_DIRTY, MMU_NOTIFY_UNMAP,
                              MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifier,
                              MmuNotifierOps, MmuNotifierRange)
from .mm.memremap import (MEMORY_DEVICE_DEVDAX, MEMORY_DEVICE_FS_DAX,  # noqa: F401
                          MEMORY_DEVICE_PCI_P2PDMA, MEMORY_DEVICE_PRIVATE, DevPagemap, DevPagemapOps)
from .resource import Resource  # noqa: F401
from .task import Task
from .uapi import *  # noqa: F401,F403

# every GFP flag (GFP_KERNEL, __GFP_ZERO ...) and migratetype, under its kernel name
globals().update({_n: _v for _n, _v in vars(_gfp).items()
                  if _n.startswith(("GFP_", "__GFP_", "MIGRATE_"))})

__version__ = "0.1.0"
