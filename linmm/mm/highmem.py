"""High memory: page_address, kmap, kmap_atomic, vmap (mm/highmem.c,
arch/x86/mm/highmem_32.c, include/linux/highmem.h; highmem.md).

On i386 only lowmem (pfns below max_low_pfn) has a permanent kernel address
in the direct map.  A highmem page is reached through one of LAST_PKMAP
persistent kmap slots (kmap, may sleep when all are busy) or one of
KM_TYPE_NR per-CPU fixmap slots (kmap_atomic, a stack per CPU).  On x86_64
every page is in the direct map and all of this collapses to page_address().

The kernel's virtual addresses are real: ``k.kread`` / ``k.kwrite`` go through
the direct map, the pkmap and fixmap PTEs and the vmap areas, and an address
with no PTE oopses (KernelOops).
"""
from __future__ import annotations

from ..errors import KernelBug, KernelDeadlock, KernelOops
from .memory_model import PAGE_OFFSET, Page

PAGE_OFFSET_32 = 0xC0000000
KM_TYPE_NR = 20                 # atomic kmap slots per CPU (asm-generic/kmap_types.h)
FIX_KMAP_BEGIN = 132            # model default: after FIX_HOLE, DBGP, EARLYCON, APIC, 128 IO-APICs
FIXADDR_TOP_32 = 0xFFFFF000     # __FIXADDR_TOP = -PAGE_SIZE
VMALLOC_OFFSET = 8 << 20
VMALLOC_START_64, VMALLOC_END_64 = 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF
VM_MAP = 0x00000004
PAGE_KERNEL = 0x163


def fix_to_virt(idx: int) -> int:
    return FIXADDR_TOP_32 - (idx << 12)


class Highmem:
    """The kernel's virtual address space for kernel-side page access."""

    def __init__(self, k):
        self.k = k
        cfg = k.config
        lay = k.layout
        self.enabled = cfg.is_32bit
        ncpu = cfg.cpus
        if self.enabled:
            pae = cfg.arch == "i386-pae"
            self.LAST_PKMAP = 512 if pae else 1024
            self.PKMAP_BASE = 0xFFA00000 if pae else 0xFF800000
            self.page_offset = PAGE_OFFSET_32
            self.max_low_pfn = lay.max_low_pfn
            self.high_memory = PAGE_OFFSET_32 + (lay.max_low_pfn << 12)
            self.vmalloc_start = self.high_memory + VMALLOC_OFFSET
            self.vmalloc_end = self.PKMAP_BASE - 2 * 4096
            self.fix_kmap_end = FIX_KMAP_BEGIN + KM_TYPE_NR * ncpu - 1
        else:
            self.LAST_PKMAP = 0
            self.PKMAP_BASE = 0
            self.page_offset = PAGE_OFFSET
            self.max_low_pfn = 1 << 60
            self.high_memory = PAGE_OFFSET + (1 << 46)  # the direct map covers all RAM
            self.vmalloc_start, self.vmalloc_end = VMALLOC_START_64, VMALLOC_END_64
        self.pkmap_count = [0] * self.LAST_PKMAP
        self.pkmap_page: list[int | None] = [None] * self.LAST_PKMAP  # pkmap_page_table PTEs
        self.page_virtual: dict[int, int] = {}  # page_address_htable: pfn -> pkmap address
        self.last_pkmap_nr = 0
        self.pkmap_waiters: list = []           # contexts asleep in map_new_virtual()
        self.kmap_atomic_idx = [0] * ncpu       # __kmap_atomic_idx per CPU
        self.fixmap: dict[int, int] = {}        # kmap_atomic slot address -> pfn
        self.vmap_areas: dict[int, list[int]] = {}  # start -> pfns (a guard page follows)
        self.stats = {"pkmap_flushes": 0, "atomic_high_water": [0] * ncpu}

    # ------------------------------------------------------------ page_address
    def PageHighMem(self, pfn: int) -> bool:
        return self.enabled and pfn >= self.max_low_pfn

    def lowmem_page_address(self, pfn: int) -> int:
        return self.page_offset + (pfn << 12)

    def page_address(self, pfn: int) -> int | None:
        if not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        return self.page_virtual.get(pfn)

    # ------------------------------------------------------------ kmap (persistent)
    def kmap(self, pfn: int) -> int:
        self.k.might_sleep("arch/x86/mm/highmem_32.c", 9)
        if not self.PageHighMem(pfn):
            return self.lowmem_page_address(pfn)
        return self.kmap_high(pfn)

    def kmap_high(self, pfn: int) -> int:
        vaddr = self.page_virtual.get(pfn)
        if vaddr is None:
            vaddr = self.map_new_virtual(pfn)
        nr = (vaddr - self.PKMAP_BASE) >> 12
        self.pkmap_count[nr] += 1
        return vaddr

    def map_new_virtual(self, pfn: int) -> int:
        """Scan on from last_pkmap_nr for a free slot; the wrap to 0 flushes the
        unused ones; a whole circle with none free sleeps until a kunmap."""
        n = self.LAST_PKMAP
        start_nr = self.last_pkmap_nr
        while True:  # start:
            count = n
            slept = False
            while True:
                self.last_pkmap_nr = (self.last_pkmap_nr + 1) & (n - 1)
                if self.last_pkmap_nr == 0:
                    self.flush_all_zero_pkmaps()
                    count = n
                if not self.pkmap_count[self.last_pkmap_nr]:
                    break  # found a usable entry
                count -= 1
                if count:
                    continue
                self.sleep_on_pkmap_wait(start_nr)
                if pfn in self.page_virtual:  # somebody mapped it while we slept
                    return self.page_virtual[pfn]
                slept = True
                break
            if slept:
                continue
            nr = self.last_pkmap_nr
            vaddr = self.PKMAP_BASE + (nr << 12)
            self.pkmap_page[nr] = pfn  # set_pte_at(pkmap_page_table[nr])
            self.pkmap_count[nr] = 1
            self.page_virtual[pfn] = vaddr
            return vaddr

    def sleep_on_pkmap_wait(self, start_nr: int) -> None:
        """TASK_UNINTERRUPTIBLE on pkmap_map_wait until kunmap_high wakes us.  Only a
        kernel thread started with ``k.kthread_run(..., may_sleep=True)`` can sleep in
        the model; anywhere else nobody could ever wake the caller."""
        k = self.k
        ctx = k.current_ctx()
        if ctx.preempt_count or ctx.held_locks:
            raise KernelBug(f"BUG: scheduling while atomic: {ctx.comm}/{ctx.pid}")
        sleeper = getattr(ctx, "lockstep", None)
        if sleeper is None:  # the failed call leaves the pool as it found it
            self.last_pkmap_nr = start_nr
            raise KernelDeadlock(f"kmap: all {self.LAST_PKMAP} pkmap slots are in use and "
                                 f"{ctx.comm}/{ctx.pid} cannot sleep until a kunmap")
        self.pkmap_waiters.append(ctx)
        sleeper.sleep()  # returns once woken and scheduled again

    def flush_all_zero_pkmaps(self) -> None:
        need_flush = False
        for i in range(self.LAST_PKMAP):
            if self.pkmap_count[i] != 1:
                continue
            self.pkmap_count[i] = 0
            pfn = self.pkmap_page[i]
            if pfn is None:
                raise KernelBug(f"flush_all_zero_pkmaps: slot {i} has no PTE")
            self.pkmap_page[i] = None
            del self.page_virtual[pfn]
            need_flush = True
        if need_flush:  # flush_tlb_kernel_range(PKMAP_ADDR(0), PKMAP_ADDR(LAST_PKMAP))
            self.stats["pkmap_flushes"] += 1

    def kunmap(self, pfn: int) -> None:
        if not self.PageHighMem(pfn):
            return
        vaddr = self.page_virtual.get(pfn)
        if vaddr is None:
            raise KernelBug(f"kernel BUG at mm/highmem.c:kunmap_high: pfn {pfn:#x} is not kmapped")
        nr = (vaddr - self.PKMAP_BASE) >> 12
        if self.pkmap_count[nr] <= 1:
            raise KernelBug(f"kernel BUG at mm/highmem.c:kunmap_high: pkmap_count[{nr}] would drop to 0")
        self.pkmap_count[nr] -= 1
        if self.pkmap_count[nr] == 1 and self.pkmap_waiters:
            waiters, self.pkmap_waiters = self.pkmap_waiters, []
            for ctx in waiters:  # wake_up(pkmap_map_wait)
                self.k.wake_up_process(ctx)

    # ------------------------------------------------------------ kmap_atomic
    def kmap_atomic_pfn(self, pfn: int) -> int:
        ctx = self.k.current_ctx()
        if not self.PageHighMem(pfn):
            ctx.preempt_count += 1
            ctx.pagefault_disabled += 1
            return self.lowmem_page_address(pfn)
        cpu = self.k.current_cpu()
        typ = self.kmap_atomic_idx[cpu]
        if typ >= KM_TYPE_NR:  # kmap_atomic_idx_push() BUG_ON(idx >= KM_TYPE_NR)
            raise KernelBug(f"kernel BUG at include/linux/highmem.h: kmap_atomic_idx_push: "
                            f"{KM_TYPE_NR} atomic kmaps already nested on CPU {cpu}")
        vaddr = fix_to_virt(FIX_KMAP_BEGIN + typ + KM_TYPE_NR * cpu)
        if vaddr in self.fixmap:
            raise KernelBug(f"kernel BUG at arch/x86/mm/highmem_32.c: kmap_atomic slot {typ} "
                            f"of CPU {cpu} is not empty")
        ctx.preempt_count += 1
        ctx.pagefault_disabled += 1
        self.kmap_atomic_idx[cpu] = typ + 1
        hw = self.stats["atomic_high_water"]
        hw[cpu] = max(hw[cpu], typ + 1)
        self.fixmap[vaddr] = pfn
        return vaddr

    def kunmap_atomic(self, vaddr: int) -> None:
        if isinstance(vaddr, Page):
            raise TypeError("kunmap_atomic() takes the address kmap_atomic() returned, not a page")
        k = self.k
        ctx = k.current_ctx()
        if ctx.preempt_count <= 0 or ctx.pagefault_disabled <= 0:
            raise KernelBug("kunmap_atomic: preempt_count underflow (no kmap_atomic is active)")
        vaddr &= ~0xFFF
        cpu = k.current_cpu()
        if self.enabled and fix_to_virt(self.fix_kmap_end) <= vaddr <= fix_to_virt(FIX_KMAP_BEGIN):
            typ = self.kmap_atomic_idx[cpu] - 1
            if typ < 0:
                raise KernelBug("kunmap_atomic: no atomic kmap on this CPU")
            top = fix_to_virt(FIX_KMAP_BEGIN + typ + KM_TYPE_NR * cpu)
            if vaddr != top:  # DEBUG_HIGHMEM WARN_ON_ONCE; the top slot is cleared anyway
                k.printk_once(f"WARNING: CPU: {cpu} PID: {ctx.pid} at arch/x86/mm/highmem_32.c "
                              "__kunmap_atomic: kunmap_atomic: unbalanced nesting")
            self.fixmap.pop(top, None)  # kpte_clear_flush()
            self.kmap_atomic_idx[cpu] = typ
        elif not self.page_offset <= vaddr < self.high_memory:
            raise KernelBug(f"kunmap_atomic: {vaddr:#x} is not a kmap_atomic address")
        ctx.pagefault_disabled -= 1
        ctx.preempt_count -= 1

    # ------------------------------------------------------------ vmap
    def vmap(self, pfns: list[int]) -> int | None:
        """First fit in the vmalloc area: count pages plus a guard page."""
        if not pfns:
            return None
        size = (len(pfns) + 1) << 12
        addr = self.vmalloc_start
        for start in sorted(self.vmap_areas):
            if start - addr >= size:
                break
            addr = max(addr, start + ((len(self.vmap_areas[start]) + 1) << 12))
        if addr + size > self.vmalloc_end:
            return None
        self.vmap_areas[addr] = list(pfns)
        return addr

    def vunmap(self, addr: int) -> None:
        if addr not in self.vmap_areas:
            raise KernelBug(f"Trying to vunmap() nonexistent vm area ({addr:#x})")
        del self.vmap_areas[addr]

    # ------------------------------------------------------------ kernel virtual -> pfn
    def virt_to_pfn(self, vaddr: int, write: bool, allow_stale: bool = False) -> int:
        """Walk the kernel page tables; an address without a PTE oopses."""
        k = self.k
        if self.page_offset <= vaddr < self.high_memory:
            pfn = (vaddr - self.page_offset) >> 12
            if k.pfn_valid(pfn):
                return pfn
        elif self.enabled and self.PKMAP_BASE <= vaddr < self.PKMAP_BASE + (self.LAST_PKMAP << 12):
            nr = (vaddr - self.PKMAP_BASE) >> 12
            pfn = self.pkmap_page[nr]
            if pfn is not None and (self.pkmap_count[nr] > 1 or allow_stale):
                return pfn
        elif self.enabled and vaddr >= fix_to_virt(self.fix_kmap_end):
            pfn = self.fixmap.get(vaddr & ~0xFFF)
            if pfn is not None:
                return pfn
        elif self.vmalloc_start <= vaddr < self.vmalloc_end:
            for start, pfns in self.vmap_areas.items():
                i = (vaddr - start) >> 12
                if 0 <= i < len(pfns) and vaddr >= start:
                    return pfns[i]
        self.oops(vaddr, write)

    def oops(self, vaddr: int, write: bool) -> None:
        k = self.k
        w = 16 if not self.enabled else 8
        k.printk(f"BUG: unable to handle page fault for address: {vaddr:0{w}x}")
        k.printk(f"#PF: supervisor {'write' if write else 'read'} access in kernel mode")
        k.printk(f"#PF: error_code({0x2 if write else 0:#06x}) - not-present page")
        raise KernelOops(f"BUG: unable to handle page fault for address: {vaddr:0{w}x}")

    def kread(self, vaddr: int, n: int, allow_stale: bool = False) -> bytes:
        out = bytearray()
        while n > 0:
            off = vaddr & 0xFFF
            chunk = min(n, 4096 - off)
            pfn = self.virt_to_pfn(vaddr, False, allow_stale)
            out += self.k.frames.read(pfn, off, chunk)
            vaddr += chunk
            n -= chunk
        return bytes(out)

    def kwrite(self, vaddr: int, data: bytes) -> None:
        data = bytes(data)
        pos = 0
        pfns = []
        a = vaddr
        while pos < len(data):  # translate every page first: a fault writes nothing
            off = a & 0xFFF
            chunk = min(len(data) - pos, 4096 - off)
            pfns.append((self.virt_to_pfn(a, True), off, pos, chunk))
            a += chunk
            pos += chunk
        for pfn, off, p, chunk in pfns:
            self.k.frames.write(pfn, off, data[p:p + chunk])

    def check(self) -> None:
        for i, c in enumerate(self.pkmap_count):
            pfn = self.pkmap_page[i]
            if (c == 0) != (pfn is None):
                raise KernelBug(f"pkmap slot {i}: count {c} but PTE {pfn}")
            if pfn is not None and self.page_virtual.get(pfn) != self.PKMAP_BASE + (i << 12):
                raise KernelBug(f"pkmap slot {i}: page {pfn:#x} does not point back at it")
        if len(self.page_virtual) != sum(1 for p in self.pkmap_page if p is not None):
            raise KernelBug("page_address_htable holds pages with no pkmap slot")
