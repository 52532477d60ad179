"""test_hmm, the "dmirror" device (lib/test_hmm.c, v5.8.1 as hmm.md pins it): a device
with its own page table that mirrors a process through hmm_range_fault() and an
mmu_interval_notifier, and 256 MiB chunks of device-private ZONE_DEVICE memory.

Modelled so far: module load (two devices, one chunk each), open/close, and the
READ and WRITE commands (the mirror's copies go to and from the CPU pages its table
points at).  MIGRATE and SNAPSHOT wait for migrate_vma and device-private entries.

    tm = TestHmm(k)
    m = tm.devices[0].open(t)
    r = m.read(addr, 16)        # ReadResult(data, cpages, faults)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EINVAL, Errno, KernelBug, WouldBlock, from_errno
from ..mm import gfp as G
from ..mm.hmm import (HMM_PFN_FLAGS, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_WRITE,
                      HmmRange)
from ..mm.memremap import MEMORY_DEVICE_PRIVATE, DevPagemap, DevPagemapOps
from ..mm.mmu_notifier import MMU_NOTIFIER_RANGE_BLOCKABLE, MmuIntervalNotifier, MmuIntervalNotifierOps

DMIRROR_NDEVICES = 2
DEVMEM_CHUNK_SIZE = 256 << 20
DMIRROR_RANGE_FAULT_PIECE = 64  # pages per hmm_range_fault() call
HMM_DMIRROR_MAJOR = 254          # the top of the dynamic char major range on a fresh machine
_RETRY_BOUND = 1000              # HMM_RANGE_DEFAULT_TIMEOUT: the clock does not move in an ioctl


@dataclass
class ReadResult:
    data: bytes
    cpages: int
    faults: int


@dataclass
class WriteResult:
    cpages: int
    faults: int


class TestHmm:
    """modprobe test_hmm: two devices with one 256 MiB device-private chunk each."""

    __test__ = False  # not a pytest class

    def __init__(self, k):
        self.k = k
        self.devices = [DmirrorDevice(k, unit) for unit in range(DMIRROR_NDEVICES)]
        self.zero_page = k.alloc_pages(G.GFP_KERNEL | G._GFP_ZERO, 0)  # allocated, never used
        k.printk("HMM test module loaded. This is only for testing HMM.")


class DmirrorDevice:
    def __init__(self, k, unit: int):
        self.k = k
        self.unit = unit
        self.chunks: list[tuple[int, int]] = []
        self.pgmaps: list[DevPagemap] = []
        self.free_pages: list[int] = []
        self.calloc = self.cfree = 0
        self._mirrors: dict[int, Dmirror] = {}
        self.dmirror_allocate_chunk()

    def dmirror_allocate_chunk(self) -> None:
        k = self.k
        res = k.request_free_mem_region(DEVMEM_CHUNK_SIZE, "hmm_dmirror")
        if isinstance(res, int):
            raise from_errno(res, "test_hmm: no free physical range for a chunk")
        ops = DevPagemapOps(page_free=self.dmirror_devmem_free, migrate_to_ram=self.dmirror_devmem_fault)
        pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, res, ops, owner=self)
        ret = k.memremap_pages(pgmap, k.numa_node_id())
        if ret < 0:
            k.release_mem_region(res.start, res.size())
            raise from_errno(ret, "test_hmm: memremap_pages failed")
        first, last = pgmap.pfn_first(), pgmap.pfn_end()
        self.pgmaps.append(pgmap)
        self.chunks.append((first, last))
        self.free_pages.extend(range(first, last))  # pushed in order: the last one pops first
        n = len(self.chunks)
        k.printk(f"added new 256 MB chunk (total {n} chunks, {n * 256} MB) PFNs [{first:#x} {last:#x})")

    def dmirror_devmem_free(self, page) -> None:
        self.cfree += 1
        self.free_pages.append(page.pfn)

    def dmirror_devmem_fault(self, vmf) -> int:
        raise KernelBug("test_hmm: device-private pages are never mapped yet (no migrate_vma)")

    # ------------------------------------------------------------ opens
    def open(self, task) -> "Dmirror":
        return Dmirror(self, task)

    def _mirror(self, task) -> "Dmirror":
        m = self._mirrors.get(task.pid)
        if m is None:
            m = self._mirrors[task.pid] = self.open(task)
        return m

    def read(self, task, addr: int, npages: int) -> ReadResult:
        return self._mirror(task).read(addr, npages)

    def write(self, task, addr: int, data: bytes) -> WriteResult:
        return self._mirror(task).write(addr, data)


class Dmirror:
    """One open file: a device page table (vpn -> (pfn, writable)) kept coherent with the
    opener's mm by an interval notifier over the whole address space."""

    def __init__(self, dev: DmirrorDevice, task):
        self.dev = dev
        self.k = dev.k
        self.task = task
        self.mm = task.mm
        self.pt: dict[int, tuple[int, bool]] = {}
        self.locked = False  # dmirror->mutex
        self.notifier = MmuIntervalNotifier()
        ops = MmuIntervalNotifierOps(invalidate=self.dmirror_interval_invalidate)
        ret = self.k.mmu_interval_notifier_insert(self.notifier, self.mm, 0,
                                                  0xFFFFFFFFFFFFF000, ops)
        if ret:
            raise from_errno(ret, "dmirror: mmu_interval_notifier_insert failed")
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.k.mmu_interval_notifier_remove(self.notifier)
            self.pt.clear()
            self.closed = True

    # ------------------------------------------------------------ invalidation
    def dmirror_interval_invalidate(self, sub, rng, cur_seq: int) -> bool:
        if self.locked:
            if not rng.flags & MMU_NOTIFIER_RANGE_BLOCKABLE:
                return False  # mutex_trylock failed
            raise WouldBlock("dmirror: the invalidation would wait for the mirror's mutex")
        sub.invalidate_seq = cur_seq  # mmu_interval_set_seq()
        first, last = rng.start >> 12, rng.end >> 12  # v5.8: the page at `end` goes too
        for vpn in [v for v in self.pt if first <= v <= last]:
            del self.pt[vpn]
        return True

    # ------------------------------------------------------------ faults
    def dmirror_fault(self, start: int, end: int, write: bool) -> int:
        if self.mm.mm_users <= 0:
            raise WouldBlock("dmirror_fault: the mm has no users (v5.8 would loop forever)")
        flags = HMM_PFN_REQ_FAULT | (HMM_PFN_REQ_WRITE if write else 0)
        for a in range(start, end, DMIRROR_RANGE_FAULT_PIECE << 12):
            nxt = min(end, a + (DMIRROR_RANGE_FAULT_PIECE << 12))
            rng = HmmRange(self.notifier, a, nxt, default_flags=flags, dev_private_owner=self.dev)
            ret = self.dmirror_range_fault(rng, write)
            if ret:
                return ret
        return 0

    def dmirror_range_fault(self, rng: HmmRange, write: bool) -> int:
        """hmm.md op 2: read_begin, hmm_range_fault, then program the mirror under the lock
        unless an invalidation came in between."""
        k = self.k
        if not k.mmget_not_zero(self.mm):
            return 0
        try:
            for _ in range(_RETRY_BOUND):
                rng.notifier_seq = k.mmu_interval_read_begin(self.notifier)
                rng.hmm_pfns = [0] * ((rng.end - rng.start) >> 12)
                ret = k.hmm_range_fault(rng)
                if ret == -16:  # -EBUSY
                    continue
                if ret:
                    return ret
                self.locked = True
                try:
                    if k.mmu_interval_read_retry(self.notifier, rng.notifier_seq):
                        continue
                    return self.dmirror_do_fault(rng, write)
                finally:
                    self.locked = False
            return -16
        finally:
            k.mmput(self.mm)

    def dmirror_do_fault(self, rng: HmmRange, write: bool) -> int:
        for i, e in enumerate(rng.hmm_pfns):
            if write and not e & HMM_PFN_WRITE:
                return -14  # -EFAULT
            self.pt[(rng.start >> 12) + i] = (e & ~HMM_PFN_FLAGS & 0xFFFFFFFFFFFFFFFF,
                                              bool(e & HMM_PFN_WRITE))
        return 0

    # ------------------------------------------------------------ commands
    def _check(self, addr: int, npages: int) -> int:
        if addr & 0xFFF:
            raise EINVAL("dmirror: unaligned address")
        end = addr + (npages << 12)
        if npages <= 0 or end > 1 << 64 or addr >= end:
            raise EINVAL("dmirror: empty or wrapping range")
        return end

    def read(self, addr: int, npages: int) -> ReadResult:
        """HMM_DMIRROR_READ: copy the mirrored pages, faulting what the mirror lacks."""
        bounce = bytearray(npages << 12)

        def copy(pfn: int, off: int) -> None:
            bounce[off:off + 4096] = self.k.frames.read(pfn)
        cpages, faults = self._copy_loop(addr, npages, False, copy)
        return ReadResult(bytes(bounce), cpages, faults)

    def write(self, addr: int, data: bytes) -> WriteResult:
        """HMM_DMIRROR_WRITE: store into the mirrored pages (write access), faulting them in."""
        data = bytes(data)
        if len(data) % 4096:
            raise EINVAL("dmirror: write length must be whole pages")

        def copy(pfn: int, off: int) -> None:
            self.k.frames.write(pfn, 0, data[off:off + 4096])
        return WriteResult(*self._copy_loop(addr, len(data) >> 12, True, copy))

    def _copy_loop(self, addr: int, npages: int, write: bool, copy) -> tuple[int, int]:
        """dmirror_read()/dmirror_write(): copy while the mirror has (writable) entries,
        fault the rest with dmirror_fault() and go on; (cpages, faults)."""
        end = self._check(addr, npages)
        self.k.sched.run_on_cpu(self.task)
        cpages = faults = 0
        while True:
            start = addr + (cpages << 12)
            for vpn in range(start >> 12, end >> 12):
                ent = self.pt.get(vpn)
                if ent is None or (write and not ent[1]):
                    break
                copy(ent[0], (vpn << 12) - addr)
                cpages += 1
            else:
                return cpages, faults
            ret = self.dmirror_fault(addr + (cpages << 12), end, write)
            if ret:
                raise self._error(ret, cpages, faults)
            faults += 1

    @staticmethod
    def _error(ret: int, cpages: int, faults: int) -> Errno:
        e = from_errno(ret, f"dmirror: {'EFAULT' if ret == -14 else ret}")
        e.cpages, e.faults = cpages, faults
        return e

