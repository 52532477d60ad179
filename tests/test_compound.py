"""Compound pages (mm/page_alloc.c prep_compound_page, free_tail_pages_check) and how
/proc/kpageflags shows them (KPF_COMPOUND_HEAD 15, KPF_COMPOUND_TAIL 16)."""
import numpy as np
import pytest

import linmm
from linmm import GFP_KERNEL, __GFP_COMP
from linmm.errors import KernelBug

HEAD, TAIL, SLAB = 1 << 15, 1 << 16, 1 << 7


def kpageflags(k, pfn, n):
    return np.frombuffer(k.read_file("/proc/kpageflags", pfn * 8, n * 8), np.uint64).tolist()


def test_gfp_comp_makes_a_compound_page_and_freeing_undoes_it():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    p = k.alloc_pages(GFP_KERNEL | __GFP_COMP, 3)
    f = kpageflags(k, p.pfn, 8)
    assert f[0] & HEAD and not f[0] & TAIL
    assert all(x & TAIL and not x & HEAD for x in f[1:])
    assert k.memmap.compound_head_pfn(p.pfn + 5) == p.pfn and p.refcount == 1
    assert int(k.memmap.refcount[p.pfn + 1]) == 0
    k.check()
    k.free_pages(p, 3)
    assert not any(x & (HEAD | TAIL) for x in kpageflags(k, p.pfn, 8))
    k.check()
    q = k.alloc_pages(GFP_KERNEL, 3)  # no __GFP_COMP: eight plain pages
    assert not any(x & (HEAD | TAIL) for x in kpageflags(k, q.pfn, 8))
    k.free_pages(q, 3)
    k.check()


def test_freeing_a_compound_page_wrongly_is_a_bug():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    p = k.alloc_pages(GFP_KERNEL | __GFP_COMP, 2)
    with pytest.raises(KernelBug, match="order 2, freed as order 1"):
        k.page_alloc.free_the_page(p.pfn, 1)
    with pytest.raises(KernelBug, match="tail"):
        k.page_alloc.free_the_page(p.pfn + 1, 0)
    k.memmap.mapping[p.pfn + 2] = 0  # a scribbled tail
    with pytest.raises(KernelBug, match="corrupted compound tail"):
        k.free_pages(p, 2)


def test_slab_and_kmalloc_large_pages_are_compound():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    s = k.kmem_cache_create("big", 2048)  # 1 CPU: min_objects 8, so order-2 slabs
    obj = k.kmem_cache_alloc(s, GFP_KERNEL)
    head = (obj - 0xFFFF888000000000) >> 12
    head = k.memmap.compound_head_pfn(head)
    order = int(k.memmap.compound_order[head])
    assert order == 2
    f = kpageflags(k, head, 1 << order)
    assert f[0] & HEAD and f[0] & SLAB and all(x & TAIL and x & SLAB for x in f[1:])
    big = k.kmalloc(5 * 4096, GFP_KERNEL)  # kmalloc_order(): order 3, compound, not PG_slab
    bh = (big - 0xFFFF888000000000) >> 12
    fb = kpageflags(k, bh, 8)
    assert fb[0] & HEAD and not fb[0] & SLAB and fb[7] & TAIL
    k.check()
    k.kfree(big)
    k.kmem_cache_free(s, obj)
    k.kmem_cache_destroy(s)
    assert not np.flatnonzero(k.memmap.compound_head).size
    k.check()
