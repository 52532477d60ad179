"""Page fragments (v5.7 mm/page_alloc.c page_frag_*, net/core/skbuff.c users).

A :class:`PageFragCache` carves fragments downward from the end of an order-3
compound page (order 0 if that fails); each fragment holds one reference on
the page, charged in bulk through ``pagecnt_bias``.  The page returns to the
buddy allocator when its last reference goes.

Model notes
- Kernel virtual addresses are direct-map addresses: page_address(pfn) =
  PAGE_OFFSET + pfn * 4096; fragment bytes live in the page frames
  (:func:`kernel_read` / :func:`kernel_write`).
- The order-3 backing page is a compound page (__GFP_COMP: the core's
  prep_compound_page); this module also remembers the order of the pages it
  backs (virt_to_head_page, compound_order).
- fragsz > nc.size: WARN and None (v5.7 would return an address before the page).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ENOSYS, KernelBug
from ..lib.state import kernel_state
from . import gfp as G
from .memory_model import PAGE_OFFSET

PAGE_SIZE = 4096
PAGE_FRAG_CACHE_MAX_SIZE = 32768
PAGE_FRAG_CACHE_MAX_ORDER = 3
SMP_CACHE_BYTES = 64
NET_SKB_PAD = 64
NET_IP_ALIGN = 0
SKB_SHINFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on x86_64
SKB_WITH_OVERHEAD_PAGE = PAGE_SIZE - SKB_SHINFO_SIZE  # 3776
_PFMEMALLOC_INDEX = (1 << 64) - 1


def SKB_DATA_ALIGN(x: int) -> int:
    return (x + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)


@dataclass(eq=False)
class PageFragCache:
    """struct page_frag_cache."""

    va: int | None = None
    offset: int = 0
    size: int = 0
    pagecnt_bias: int = 0
    pfmemalloc: bool = False
    name: str = field(default="", compare=False)


@dataclass
class FragPage:
    """A page backing fragments: its compound order and outstanding fragments."""

    order: int
    outstanding: int = 0


@dataclass
class Skb:
    """The bits of an sk_buff head the frag allocators decide."""

    head: int
    truesize_data: int
    head_frag: int
    pfmemalloc: int


class PageFragState:
    def __init__(self, k):
        self.k = k
        self.pages: dict[int, FragPage] = {}  # head pfn -> backing page
        self.caches: list[PageFragCache] = []  # every cache that ever held a page
        self.netdev_alloc_cache = [PageFragCache(name=f"netdev_alloc_cache/{c}") for c in range(k.config.cpus)]
        self.napi_alloc_cache = [PageFragCache(name=f"napi_alloc_cache/{c}") for c in range(k.config.cpus)]
        self.caches.extend(self.netdev_alloc_cache + self.napi_alloc_cache)


def _state(k) -> PageFragState:
    return kernel_state(k, "page_frag", PageFragState)


def init(k) -> PageFragState:
    """Create the per-CPU netdev/napi caches (no boot parameter, no /proc file)."""
    return _state(k)


# ---------------------------------------------------------------- addresses
def page_address(pfn: int) -> int:
    return PAGE_OFFSET + (pfn << 12)


def virt_to_pfn(k, addr: int) -> int:
    pfn = (addr - PAGE_OFFSET) >> 12
    if addr < PAGE_OFFSET or not k.pfn_valid(pfn):
        raise KernelBug(f"virt_to_page: {addr:#x} is not a direct-map address")
    return pfn


def virt_to_head_page(k, addr: int) -> int:
    """The head pfn of the (compound) fragment page holding addr."""
    st = _state(k)
    pfn = virt_to_pfn(k, addr)
    if pfn in st.pages:
        return pfn
    head = pfn & ~((1 << PAGE_FRAG_CACHE_MAX_ORDER) - 1)
    fp = st.pages.get(head)
    if fp is not None and fp.order == PAGE_FRAG_CACHE_MAX_ORDER:
        return head
    return pfn


def kernel_write(k, addr: int, data: bytes) -> None:
    """memcpy() into the direct map."""
    data = bytes(data)
    done = 0
    while done < len(data):
        a = addr + done
        pfn = virt_to_pfn(k, a)
        off = a & 0xFFF
        n = min(PAGE_SIZE - off, len(data) - done)
        k.frames.write(pfn, off, data[done:done + n])
        done += n


def kernel_read(k, addr: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        a = addr + len(out)
        pfn = virt_to_pfn(k, a)
        off = a & 0xFFF
        m = min(PAGE_SIZE - off, n - len(out))
        out += k.frames.read(pfn, off, m)
    return bytes(out)


# ---------------------------------------------------------------- core
def page_is_pfmemalloc(k, pfn: int) -> bool:
    return int(k.memmap.index[pfn]) == _PFMEMALLOC_INDEX  # set by the core (prep_new_page)


def __page_frag_cache_refill(k, nc: PageFragCache, gfp_mask: int) -> int | None:
    """Order 3 with __GFP_COMP|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC, else
    order 0 with the caller's gfp.  Returns the head pfn or None."""
    st = _state(k)
    pa = k.page_alloc
    gfp = gfp_mask
    gfp_mask |= G.__GFP_COMP | G.__GFP_NOWARN | G.__GFP_NORETRY | G.__GFP_NOMEMALLOC
    pfn = pa.alloc_pages_nodemask(gfp_mask, PAGE_FRAG_CACHE_MAX_ORDER)
    nc.size = PAGE_FRAG_CACHE_MAX_SIZE if pfn is not None else PAGE_SIZE
    order = PAGE_FRAG_CACHE_MAX_ORDER
    if pfn is None:
        order = 0
        pfn = pa.alloc_pages_nodemask(gfp, 0)
    nc.va = page_address(pfn) if pfn is not None else None
    if pfn is None:
        return None
    st.pages[pfn] = FragPage(order, 0)
    if nc not in st.caches:
        st.caches.append(nc)
    return pfn


def page_frag_cache_refill(k, nc: PageFragCache, gfp: int):
    """__page_frag_cache_refill() -> the backing Page or None (no bias set up)."""
    pfn = __page_frag_cache_refill(k, nc, gfp)
    return None if pfn is None else k.pfn_to_page(pfn)


def _page_of_cache(k, nc: PageFragCache) -> int:
    return virt_to_pfn(k, nc.va)


def page_frag_alloc(k, nc: PageFragCache, fragsz: int, gfp_mask: int) -> int | None:
    """page_frag_alloc(): the fragment's kernel virtual address, or None."""
    st = _state(k)
    mm = k.memmap
    if fragsz < 0:
        raise KernelBug("page_frag_alloc: negative fragsz")
    size = PAGE_SIZE
    if nc.va is None:
        pfn = __page_frag_cache_refill(k, nc, gfp_mask)
        if pfn is None:
            return None
        size = nc.size
        mm.refcount[pfn] += PAGE_FRAG_CACHE_MAX_SIZE  # page_ref_add()
        nc.pfmemalloc = page_is_pfmemalloc(k, pfn)
        nc.pagecnt_bias = PAGE_FRAG_CACHE_MAX_SIZE + 1
        nc.offset = size
    offset = nc.offset - fragsz
    if offset < 0:
        pfn = _page_of_cache(k, nc)
        rc = int(mm.refcount[pfn]) - nc.pagecnt_bias
        mm.refcount[pfn] = rc
        if rc:  # fragments still out: the page lives on until they are freed
            if rc < 0:
                raise KernelBug(f"page_frag_alloc: pfn {pfn:#x} refcount went negative")
            nc.va = None
            nc.pagecnt_bias = 0
            return page_frag_alloc(k, nc, fragsz, gfp_mask)
        size = nc.size
        st.pages[pfn].outstanding = 0
        mm.refcount[pfn] = PAGE_FRAG_CACHE_MAX_SIZE + 1  # set_page_count()
        nc.pagecnt_bias = PAGE_FRAG_CACHE_MAX_SIZE + 1
        nc.offset = size
        offset = size - fragsz
    if offset < 0:  # fragsz > nc.size: v5.7 would hand out memory before the page
        k.printk(f"WARNING: CPU: {k.current_cpu()} PID: {k.current_ctx().pid} at mm/page_alloc.c:4982 "
                 f"page_frag_alloc: fragsz {fragsz} > size {nc.size}")
        return None
    nc.pagecnt_bias -= 1
    nc.offset = offset
    st.pages[_page_of_cache(k, nc)].outstanding += 1
    return nc.va + offset


def _put_frag_page(k, pfn: int, count: int, what: str) -> None:
    st = _state(k)
    mm = k.memmap
    rc = int(mm.refcount[pfn])
    if rc <= 0 or rc < count:
        raise KernelBug(f"page:{k.pfn_to_page(pfn).address:#x} refcount:{rc} mapcount:0 "
                        f"mapping:0000000000000000 index:0x0 pfn:{pfn:#x}\n"
                        f"page dumped because: VM_BUG_ON_PAGE(page_ref_count(page) == 0) ({what})")
    mm.refcount[pfn] = rc - count
    if rc - count == 0:
        fp = st.pages.pop(pfn, None)
        order = fp.order if fp is not None else 0
        for nc in st.caches:  # a cache whose bias was consumed by bogus frees
            if nc.va is not None and virt_to_pfn(k, nc.va) == pfn:
                nc.va = None
                nc.pagecnt_bias = 0
        k.page_alloc.free_the_page(pfn, order)


def page_frag_free(k, addr: int) -> None:
    """page_frag_free(): drop the fragment's reference; free the page at zero."""
    st = _state(k)
    pfn = virt_to_head_page(k, addr)
    fp = st.pages.get(pfn)
    if fp is None or int(k.memmap.refcount[pfn]) <= 0:
        raise KernelBug(f"page_frag_free: {addr:#x} is not inside a live fragment page "
                        f"(pfn {pfn:#x} refcount {int(k.memmap.refcount[pfn])}): "
                        f"VM_BUG_ON_PAGE(page_ref_count(page) == 0)")
    fp.outstanding -= 1
    try:
        _put_frag_page(k, pfn, 1, "page_frag_free")
    except KernelBug:
        fp.outstanding += 1
        raise


def page_frag_cache_drain(k, page, count: int) -> None:
    """__page_frag_cache_drain(page, count): drop count references at once; a
    cache whose whole bias this drains is torn down (the driver's nc->va = NULL)."""
    st = _state(k)
    pfn = page.pfn if hasattr(page, "pfn") else int(page)
    torn = [nc for nc in st.caches if nc.va is not None and virt_to_pfn(k, nc.va) == pfn
            and nc.pagecnt_bias == count]
    _put_frag_page(k, pfn, count, "__page_frag_cache_drain")
    for nc in torn[:1]:
        nc.va = None
        nc.pagecnt_bias = 0


# ---------------------------------------------------------------- network users
def netdev_alloc_frag(k, fragsz: int, context: str = "irq", cpu: int | None = None) -> int | None:
    """v5.7.x __netdev_alloc_frag(): netdev cache in hard-IRQ / IRQs-off context,
    the napi cache (softirqs disabled) otherwise."""
    st = _state(k)
    cpu = k.current_cpu() if cpu is None else cpu
    fragsz = SKB_DATA_ALIGN(fragsz)
    if context in ("irq", "irqs_off"):
        nc = st.netdev_alloc_cache[cpu]
    elif context == "process":
        nc = st.napi_alloc_cache[cpu]
    else:
        raise ValueError(f"netdev_alloc_frag: unknown context {context!r}")
    return page_frag_alloc(k, nc, fragsz, G.GFP_ATOMIC)


def napi_alloc_frag(k, fragsz: int, context: str = "softirq", cpu: int | None = None) -> int | None:
    """napi_alloc_frag(): softirq context (or BH disabled) only."""
    if context not in ("softirq", "bh_disabled"):
        raise KernelBug("WARNING: suspicious RCU usage / lockdep: napi_alloc_frag() called from "
                        f"{context} context without BH disabled")
    st = _state(k)
    cpu = k.current_cpu() if cpu is None else cpu
    return page_frag_alloc(k, st.napi_alloc_cache[cpu], SKB_DATA_ALIGN(fragsz), G.GFP_ATOMIC)


def _alloc_skb_kmalloc(k, length: int, gfp: int) -> Skb:
    """__alloc_skb(): the head from kmalloc (needs the slab allocator)."""
    size = SKB_DATA_ALIGN(length) + SKB_SHINFO_SIZE
    kmalloc = getattr(k, "kmalloc", None)
    if kmalloc is None:
        raise ENOSYS(f"__alloc_skb: kmalloc({size}) needs the slab allocator, not modelled here")
    head = kmalloc(size, gfp)
    if head is None:
        return None
    return Skb(head=head, truesize_data=size, head_frag=0, pfmemalloc=0)


def netdev_alloc_skb(k, length: int, gfp: int = G.GFP_ATOMIC, context: str = "irq",
                     cpu: int | None = None) -> Skb | None:
    """__netdev_alloc_skb(dev, len, gfp) head buffer."""
    st = _state(k)
    cpu = k.current_cpu() if cpu is None else cpu
    length += NET_SKB_PAD
    if length > SKB_WITH_OVERHEAD_PAGE or gfp & (G.__GFP_DIRECT_RECLAIM | G.GFP_DMA):
        return _alloc_skb_kmalloc(k, length, gfp)
    length = SKB_DATA_ALIGN(length + SKB_SHINFO_SIZE)
    nc = st.netdev_alloc_cache[cpu] if context in ("irq", "irqs_off") else st.napi_alloc_cache[cpu]
    data = page_frag_alloc(k, nc, length, gfp)
    if data is None:
        return None
    return Skb(head=data, truesize_data=length, head_frag=1, pfmemalloc=int(nc.pfmemalloc))


def napi_alloc_skb(k, length: int, gfp: int = G.GFP_ATOMIC, cpu: int | None = None) -> Skb | None:
    """__napi_alloc_skb(napi, len, gfp) head buffer (softirq context)."""
    st = _state(k)
    cpu = k.current_cpu() if cpu is None else cpu
    length += NET_SKB_PAD + NET_IP_ALIGN
    if length > SKB_WITH_OVERHEAD_PAGE or gfp & (G.__GFP_DIRECT_RECLAIM | G.GFP_DMA):
        return _alloc_skb_kmalloc(k, length, gfp)
    length = SKB_DATA_ALIGN(length + SKB_SHINFO_SIZE)
    nc = st.napi_alloc_cache[cpu]
    data = page_frag_alloc(k, nc, length, gfp)
    if data is None:
        return None
    return Skb(head=data, truesize_data=length, head_frag=1, pfmemalloc=int(nc.pfmemalloc))


def skb_free_frag(k, skb: Skb) -> None:
    if skb.head_frag:
        page_frag_free(k, skb.head)
    else:
        kfree = getattr(k, "kfree", None)
        if kfree is not None:
            kfree(skb.head)


# ---------------------------------------------------------------- inspection
def page_frag_caches(k) -> list[tuple]:
    """(cpu, kind, va, offset, size, pagecnt_bias, page refcount or None) for every
    per-CPU network cache."""
    st = _state(k)
    out = []
    for kind, lst in (("netdev", st.netdev_alloc_cache), ("napi", st.napi_alloc_cache)):
        for cpu, nc in enumerate(lst):
            rc = int(k.memmap.refcount[virt_to_pfn(k, nc.va)]) if nc.va is not None else None
            out.append((cpu, kind, nc.va, nc.offset, nc.size, nc.pagecnt_bias, rc))
    return out


def check(k) -> None:
    """refcount == bias (if cached) + outstanding fragments; no cached or
    fragment page is free."""
    st = getattr(k, "page_frag", None)
    if not isinstance(st, PageFragState):
        return
    mm = k.memmap
    bias = {}
    for nc in st.caches:
        if nc.va is None:
            continue
        pfn = virt_to_pfn(k, nc.va)
        if pfn in bias:
            raise KernelBug(f"check: page_frag: two caches share pfn {pfn:#x}")
        bias[pfn] = nc.pagecnt_bias
        if pfn not in st.pages:
            raise KernelBug(f"check: page_frag: cache {nc.name or id(nc)} holds untracked pfn {pfn:#x}")
    pcp = {p for z in k.all_zones() for pc in z.pageset for lst in pc.lists for p in lst}
    for pfn, fp in st.pages.items():
        rc = int(mm.refcount[pfn])
        want = bias.get(pfn, 0) + fp.outstanding
        if rc != want:
            raise KernelBug(f"check: page_frag: pfn {pfn:#x} refcount {rc} != bias {bias.get(pfn, 0)} "
                            f"+ {fp.outstanding} outstanding fragments")
        if mm.PageBuddy(pfn) or pfn in pcp or rc <= 0:
            raise KernelBug(f"check: page_frag: fragment page pfn {pfn:#x} is on a free list")
