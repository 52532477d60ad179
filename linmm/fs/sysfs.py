"""/sys/devices/system/memory (drivers/base/memory.c), read-only view of the
boot-time memory blocks, and /proc/<pid>/clear_refs (fs/proc/task_mmu.c)."""
from __future__ import annotations

import re

import numpy as np

from ..errors import EINVAL, ENOENT
from ..mm.memory_model import PFN_SECTION_SHIFT, SECTION_IS_ONLINE, SECTION_MARKED_PRESENT
from ..mm.mm_types import VM_SOFTDIRTY
from ..mm.mmu_notifier import MMU_NOTIFY_SOFT_DIRTY, MmuNotifierRange
from ..mm.page import PG_referenced
from ..mm.pgtable import _PAGE_ACCESSED, _PAGE_RW, _PAGE_SOFT_DIRTY, pte_present, pte_special

MEM = "/sys/devices/system/memory"


def memory_blocks(k) -> list[int]:
    """memory_dev_init() and add_memory(): a block for every run of sections with a
    present one; ZONE_DEVICE sections get none."""
    spb = k.memory_block_size >> (PFN_SECTION_SHIFT + 12)
    device = k.memremap.device_sections() if k.memremap.pgmaps else set()
    present = [i for i in np.flatnonzero(k.section_flags & SECTION_MARKED_PRESENT).tolist()
               if i not in device]
    return sorted({s // spb for s in present})


def _block_pfns(k, nr: int) -> range:
    npages = k.memory_block_size >> 12
    return range(nr * npages, (nr + 1) * npages)


def block_nid(k, nr: int) -> int:
    """The node of a block's first present memory."""
    pfns = _block_pfns(k, nr)
    for s, e, nid in k.layout.memory:
        if s < pfns.stop and e > pfns.start:
            return nid
    return 0


def valid_zones(k, nr: int) -> str:
    """An online block: its zone, or "none" when its System RAM spans several zones."""
    pfns = _block_pfns(k, nr)
    zones = set()
    for s, e, _ in k.layout.memory:
        lo, hi = max(s, pfns.start), min(e, pfns.stop)
        if lo < hi:
            zones.add(k.page_zone_of(lo).name)
            zones.add(k.page_zone_of(hi - 1).name)
    return (zones.pop() if len(zones) == 1 else "none") + "\n"


def read_sysfs(k, path: str) -> str:
    if k.config.memory_model in ("flatmem", "discontigmem"):
        raise ENOENT(path)  # memory blocks exist only with SPARSEMEM
    if path == f"{MEM}/block_size_bytes":
        return f"{k.memory_block_size:x}\n"
    if path == f"{MEM}/auto_online_blocks":
        t = k.memory_hotplug.default_online_type
        return ("offline", "online", "online_kernel", "online_movable")[t] + "\n"
    m = re.fullmatch(rf"{MEM}/memory(\d+)/(state|phys_index|phys_device|removable|valid_zones)", path)
    if m and int(m.group(1)) in memory_blocks(k):
        nr, f = int(m.group(1)), m.group(2)
        if f == "state":
            spb = k.memory_block_size >> (PFN_SECTION_SHIFT + 12)
            online = any(k.section_flags[s] & SECTION_IS_ONLINE
                         for s in range(nr * spb, min((nr + 1) * spb, len(k.section_flags))))
            return "online\n" if online else "offline\n"
        if f == "phys_index":
            return f"{nr:08x}\n"
        if f == "valid_zones":
            if read_sysfs(k, f"{MEM}/memory{nr}/state") == "offline\n":
                return k.memory_hotplug.valid_zones(nr)
            return valid_zones(k, nr)
        return "0\n" if f == "phys_device" else "1\n"
    raise ENOENT(path)


def write_sysfs(k, path: str, text: str) -> None:
    if k.config.memory_model in ("flatmem", "discontigmem"):
        raise ENOENT(path)
    if path == f"{MEM}/probe" and k.config.kconfig.get("ARCH_MEMORY_PROBE"):
        k.memory_hotplug.probe(text)
        return
    if path == f"{MEM}/auto_online_blocks":
        from ..mm.memory_hotplug import _ONLINE_TYPES
        word = text.strip()
        if word != "offline" and word not in _ONLINE_TYPES:
            from ..errors import EINVAL
            raise EINVAL(f"auto_online_blocks: {word!r}")
        k.memory_hotplug.default_online_type = _ONLINE_TYPES.get(word, 0)
        return
    m = re.fullmatch(rf"{MEM}/memory(\d+)/state", path)
    if m and int(m.group(1)) in memory_blocks(k) and k.config.memory_model not in ("flatmem",
                                                                                    "discontigmem"):
        k.memory_hotplug.write_state(int(m.group(1)), text)
        return
    raise ENOENT(path)


def listdir(k, path: str) -> list[str]:
    path = path.rstrip("/")
    if path.startswith("/sys/kernel/slab"):
        from .slabinfo import list_sys_kernel_slab
        return list_sys_kernel_slab(k, path)
    if path.startswith(MEM) and k.config.memory_model in ("flatmem", "discontigmem"):
        raise ENOENT(path)
    if path == MEM:
        probe = ["probe"] if k.config.kconfig.get("ARCH_MEMORY_PROBE") else []
        return ["auto_online_blocks", "block_size_bytes"] + [f"memory{n}" for n in memory_blocks(k)] \
            + probe
    m = re.fullmatch(rf"{MEM}/memory(\d+)", path)
    if m and int(m.group(1)) in memory_blocks(k):
        return ["phys_device", "phys_index", "removable", "state", "valid_zones"]
    if path == "/sys/devices/system/node":
        return (["has_cpu", "has_memory", "has_normal_memory", "online", "possible"]
                + [f"node{pg.node_id}" for pg in k.pgdats])
    m = re.fullmatch(r"/sys/devices/system/node/node(\d+)", path)
    if m and int(m.group(1)) < len(k.pgdats):
        nid = int(m.group(1))
        blocks = [f"memory{b}" for b in memory_blocks(k) if block_nid(k, b) == nid] \
            if k.config.memory_model not in ("flatmem", "discontigmem") else []
        return ["cpulist", "distance", "meminfo"] + blocks
    if path == "/proc":
        return sorted(str(p) for p in k.tasks) + ["buddyinfo", "iomem", "kpagecount", "kpageflags",
                                                   "meminfo", "pagetypeinfo", "slabinfo", "sys",
                                                   "vmstat", "zoneinfo"]
    raise ENOENT(path)


def clear_refs_write(k, task, text: str) -> None:
    """1 all, 2 anon, 3 mapped: clear referenced; 4 soft-dirty; 5 reset VmHWM."""
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        raise EINVAL("clear_refs: not an integer")
    typ = int(t)
    if typ < 1 or typ > 5:
        raise EINVAL("clear_refs: type out of range")
    mm = task.mm
    if mm is None:
        return
    if typ == 5:
        mm.hiwater_rss = mm.get_mm_rss()
        return
    rng = None
    if typ == 4:
        for v in mm.vmas:
            v.vm_flags &= ~VM_SOFTDIRTY
        rng = MmuNotifierRange(MMU_NOTIFY_SOFT_DIRTY, 0, None, mm, 0, (1 << 64) - 1)
        k.mmu_notifiers.invalidate_range_start(rng)
    pgt = k.pgt
    for v in list(mm.vmas):
        is_file = v.vm_file is not None or v.shmem is not None
        if (typ == 2 and is_file) or (typ == 3 and not is_file):
            continue
        a = v.vm_start
        while a < v.vm_end:
            nxt = min(((a >> 21) + 1) << 21, v.vm_end)
            tbl = mm.pte_tables.get(a >> 21)
            if tbl is not None:
                ptl = k.memory._ptl(mm, tbl)
                pgt.spin_lock(ptl)
                for i in range((a >> 12) & 511, ((a >> 12) & 511) + ((nxt - a) >> 12)):
                    pte = int(tbl.entries[i])
                    if not pte_present(pte):
                        continue
                    addr = tbl.base + (i << 12)
                    if typ == 4:
                        new = pte & ~(_PAGE_RW | _PAGE_SOFT_DIRTY)
                    else:
                        if pte_special(pte):
                            continue
                        new = pte & ~_PAGE_ACCESSED
                        k.memmap.clear((pte >> 12) & ((1 << 40) - 1), PG_referenced)
                    if new != pte:
                        pgt.set_entry(tbl, i, new, "ptep_modify_prot_commit", addr)
                pgt.spin_unlock(ptl)
            a = nxt
    if rng is not None:
        k.mmu_notifiers.invalidate_range_end(rng)
    k.flush_tlb_mm_range(mm, 0, 1 << 64, False)
