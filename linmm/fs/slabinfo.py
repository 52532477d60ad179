"""/proc/slabinfo (mm/slab_common.c) and /sys/kernel/slab/<cache>/<attr>
(mm/slub.c sysfs attributes), v5.7.

    proc_slabinfo(k) -> str
    read_sys_kernel_slab(k, "/sys/kernel/slab/kmalloc-8/objects") -> str
    write_sys_kernel_slab(k, "/sys/kernel/slab/kmalloc-8/shrink", "1")
    list_sys_kernel_slab(k, "/sys/kernel/slab") -> sorted entry names
    readlink_sys_kernel_slab(k, "/sys/kernel/slab/test_cache") -> ":0000104" (None if a directory)
"""
from __future__ import annotations

import re

from ..errors import EACCES, EBUSY, EINVAL, ENOENT, ERANGE
from ..mm import slub as S
from ..mm.slab_common import (SLAB_CACHE_DMA, SLAB_CONSISTENCY_CHECKS, SLAB_FAILSLAB,
                              SLAB_HWCACHE_ALIGN, SLAB_POISON, SLAB_RECLAIM_ACCOUNT, SLAB_RED_ZONE,
                              SLAB_STORE_USER, SLAB_TRACE, SLAB_TYPESAFE_BY_RCU, _CMPXCHG_DOUBLE)

ROOT = "/sys/kernel/slab"

# ------------------------------------------------------------------ /proc/slabinfo


def get_slabinfo(s) -> dict:
    nr_slabs = sum(n.nr_slabs for n in s.node)
    nr_objs = sum(n.total_objects for n in s.node)
    nr_free = sum(p.objects - p.inuse for n in s.node for p in n.partial)
    return {"active_objs": nr_objs - nr_free, "num_objs": nr_objs, "active_slabs": nr_slabs,
            "num_slabs": nr_slabs, "objects_per_slab": s.oo[1], "cache_order": s.oo[0]}


def proc_slabinfo(k) -> str:
    """The v5.7 "slabinfo - version: 2.1" file: root caches, newest first."""
    sl = S.get_slub(k)
    lines = ["slabinfo - version: 2.1\n",
             "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
             " : tunables <limit> <batchcount> <sharedfactor>"
             " : slabdata <active_slabs> <num_slabs> <sharedavail>\n"]
    for s in reversed(sl.caches):
        i = get_slabinfo(s)
        lines.append(f"{s.name:<17s} {i['active_objs']:6d} {i['num_objs']:6d} {s.size:6d} "
                     f"{i['objects_per_slab']:4d} {1 << i['cache_order']:4d}"
                     f" : tunables {0:4d} {0:4d} {0:4d}"
                     f" : slabdata {i['active_slabs']:6d} {i['num_slabs']:6d} {0:6d}\n")
    return "".join(lines)


# ------------------------------------------------------------------ sysfs helpers
SO_ALL, SO_PARTIAL, SO_CPU, SO_OBJECTS, SO_TOTAL = 1, 2, 4, 8, 16


def show_slab_objects(sl, s, flags: int) -> str:
    total = 0
    nodes = [0] * sl.nnodes
    if flags & SO_CPU:
        for c in s.cpu_slab:
            page = c.page
            if page is None:
                continue
            if flags & SO_TOTAL:
                x = page.objects
            elif flags & SO_OBJECTS:
                x = page.inuse
            else:
                x = 1
            total += x
            nodes[page.nid] += x
            page = c.partial
            if page is not None:
                x = page.pages  # (SO_TOTAL / SO_OBJECTS: WARN_ON_ONCE, x unchanged)
                total += x
                nodes[page.nid] += x
    if flags & SO_ALL:
        for nid, n in enumerate(s.node):
            if flags & SO_TOTAL:
                x = n.total_objects
            elif flags & SO_OBJECTS:
                x = n.total_objects - sum(p.objects - p.inuse for p in n.partial)
            else:
                x = n.nr_slabs
            total += x
            nodes[nid] += x
    elif flags & SO_PARTIAL:
        for nid, n in enumerate(s.node):
            if flags & SO_TOTAL:
                x = sum(p.objects for p in n.partial)
            elif flags & SO_OBJECTS:
                x = sum(p.inuse for p in n.partial)
            else:
                x = n.nr_partial
            total += x
            nodes[nid] += x
    out = f"{total}"
    if sl.numa:
        out += "".join(f" N{nid}={v}" for nid, v in enumerate(nodes) if v)
    return out + "\n"


def slabs_cpu_partial_show(sl, s) -> str:
    objects = pages = 0
    for c in s.cpu_slab:
        if c.partial is not None:
            pages += c.partial.pages
            objects += c.partial.pobjects
    out = f"{objects}({pages})"
    if sl.smp:
        for cpu, c in enumerate(s.cpu_slab):
            if c.partial is not None:
                out += f" C{cpu}={c.partial.pobjects}({c.partial.pages})"
    return out + "\n"


def show_stat(sl, s, si: int) -> str:
    data = [c.stat[si] for c in s.cpu_slab]
    out = f"{sum(data)}"
    if sl.smp:
        out += "".join(f" C{cpu}={v}" for cpu, v in enumerate(data) if v)
    return out + "\n"


def kstrtoul(text: str, limit: int = (1 << 64) - 1) -> int:
    t = text[:-1] if text.endswith("\n") else text
    if not re.fullmatch(r"\+?[0-9]+", t):
        raise EINVAL(f"not a number: {text!r}")
    v = int(t)
    if v > limit:
        raise ERANGE(f"{text!r} out of range")
    return v


def kstrtouint(text: str) -> int:
    return kstrtoul(text, 0xFFFFFFFF)


def _flag(s, f: int) -> str:
    return f"{1 if s.flags & f else 0}\n"


def _set_flag(s, f: int, text: str, cmpxchg: bool = True) -> None:
    s.flags &= ~f
    if text[:1] == "1":
        if cmpxchg:
            s.flags &= ~_CMPXCHG_DOUBLE
        s.flags |= f


# ------------------------------------------------------------------ attribute stores
def order_store(sl, s, text):
    order = kstrtouint(text)
    if order > sl.slub_max_order or order < sl.slub_min_order:
        raise EINVAL(f"order {order} outside {sl.slub_min_order}..{sl.slub_max_order}")
    sl.calculate_sizes(s, order)


def min_partial_store(sl, s, text):
    sl.set_min_partial(s, kstrtoul(text))


def cpu_partial_store(sl, s, text):
    objects = kstrtouint(text)
    if objects and s.flags & S.SLAB_DEBUG_FLAGS:
        raise EINVAL("cpu_partial: a debug cache has no cpu partial lists")
    s.cpu_partial = objects
    sl.flush_all(s)


def reclaim_account_store(sl, s, text):
    s.flags &= ~SLAB_RECLAIM_ACCOUNT
    if text[:1] == "1":
        s.flags |= SLAB_RECLAIM_ACCOUNT


def shrink_store(sl, s, text):
    if text[:1] != "1":
        raise EINVAL("shrink: write 1")
    sl.kmem_cache_shrink(s)


def sanity_checks_store(sl, s, text):
    _set_flag(s, SLAB_CONSISTENCY_CHECKS, text)


def trace_store(sl, s, text):
    if s.refcount > 1:
        raise EINVAL("trace: merged cache")
    _set_flag(s, SLAB_TRACE, text)


def _layout_store(flag):
    def store(sl, s, text):
        if sl.any_slab_objects(s):
            raise EBUSY("the cache has objects")
        _set_flag(s, flag, text, cmpxchg=flag != SLAB_RED_ZONE)
        sl.calculate_sizes(s, -1)
    return store


def validate_store(sl, s, text):
    if text[:1] != "1":
        raise EINVAL("validate: write 1")
    sl.validate_slab_cache(s)


def failslab_store(sl, s, text):
    if s.refcount > 1:
        raise EINVAL("failslab: merged cache")
    s.flags &= ~SLAB_FAILSLAB
    if text[:1] == "1":
        s.flags |= SLAB_FAILSLAB


def remote_node_defrag_ratio_store(sl, s, text):
    ratio = kstrtouint(text)
    if ratio > 100:
        raise ERANGE("remote_node_defrag_ratio: 0..100")
    s.remote_node_defrag_ratio = ratio * 10


def _stat_show(si):
    def show(sl, s):
        return show_stat(sl, s, si)
    return show


def _stat_store(si):
    def store(sl, s, text):
        if text[:1] != "0":
            raise EINVAL("write 0 to clear")
        for c in s.cpu_slab:
            c.stat[si] = 0
    return store


def _ctor_show(sl, s):
    if not s.ctor:
        return ""
    name = getattr(s.ctor, "__name__", "ctor")
    return sl.syms.pS(sl.syms.addr_of(name, 0, 0x40)) + "\n"


def _attrs(sl) -> dict:
    """name -> (show(sl, s) -> str, store(sl, s, text) or None), v5.7 slab_attrs[]."""
    a = getattr(sl, "_sysfs_attrs", None)
    if a is None:
        a = sl._sysfs_attrs = _make_attrs(sl)
    return a


def _make_attrs(sl) -> dict:
    a = {
        "slab_size": (lambda sl, s: f"{s.size}\n", None),
        "object_size": (lambda sl, s: f"{s.object_size}\n", None),
        "objs_per_slab": (lambda sl, s: f"{s.oo[1]}\n", None),
        "order": (lambda sl, s: f"{s.oo[0]}\n", order_store),
        "min_partial": (lambda sl, s: f"{s.min_partial}\n", min_partial_store),
        "cpu_partial": (lambda sl, s: f"{s.cpu_partial}\n", cpu_partial_store),
        "objects": (lambda sl, s: show_slab_objects(sl, s, SO_ALL | SO_OBJECTS), None),
        "objects_partial": (lambda sl, s: show_slab_objects(sl, s, SO_PARTIAL | SO_OBJECTS), None),
        "partial": (lambda sl, s: show_slab_objects(sl, s, SO_PARTIAL), None),
        "cpu_slabs": (lambda sl, s: show_slab_objects(sl, s, SO_CPU), None),
        "ctor": (_ctor_show, None),
        "aliases": (lambda sl, s: f"{0 if s.refcount < 0 else s.refcount - 1}\n", None),
        "align": (lambda sl, s: f"{s.align}\n", None),
        "hwcache_align": (lambda sl, s: _flag(s, SLAB_HWCACHE_ALIGN), None),
        "reclaim_account": (lambda sl, s: _flag(s, SLAB_RECLAIM_ACCOUNT), reclaim_account_store),
        "destroy_by_rcu": (lambda sl, s: _flag(s, SLAB_TYPESAFE_BY_RCU), None),
        "shrink": (lambda sl, s: "", shrink_store),
        "slabs_cpu_partial": (slabs_cpu_partial_show, None),
        "total_objects": (lambda sl, s: show_slab_objects(sl, s, SO_ALL | SO_TOTAL), None),
        "slabs": (lambda sl, s: show_slab_objects(sl, s, SO_ALL), None),
        "sanity_checks": (lambda sl, s: _flag(s, SLAB_CONSISTENCY_CHECKS), sanity_checks_store),
        "trace": (lambda sl, s: _flag(s, SLAB_TRACE), trace_store),
        "red_zone": (lambda sl, s: _flag(s, SLAB_RED_ZONE), _layout_store(SLAB_RED_ZONE)),
        "poison": (lambda sl, s: _flag(s, SLAB_POISON), _layout_store(SLAB_POISON)),
        "store_user": (lambda sl, s: _flag(s, SLAB_STORE_USER), _layout_store(SLAB_STORE_USER)),
        "validate": (lambda sl, s: "", validate_store),
        "alloc_calls": (lambda sl, s: sl.list_locations(s, S.TRACK_ALLOC), None),
        "free_calls": (lambda sl, s: sl.list_locations(s, S.TRACK_FREE), None),
        "cache_dma": (lambda sl, s: _flag(s, SLAB_CACHE_DMA), None),
        "usersize": (lambda sl, s: f"{s.usersize}\n", None),
    }
    if sl.numa:
        a["remote_node_defrag_ratio"] = (lambda sl, s: f"{s.remote_node_defrag_ratio // 10}\n",
                                         remote_node_defrag_ratio_store)
    if sl.stats_on:
        for si, name in enumerate(S.STAT_ITEMS):
            a[name] = (_stat_show(si), _stat_store(si))
    a["failslab"] = (lambda sl, s: _flag(s, SLAB_FAILSLAB), failslab_store)
    return a


def _split(path: str) -> tuple[str | None, str | None]:
    path = path.rstrip("/")
    if path == ROOT:
        return None, None
    if not path.startswith(ROOT + "/"):
        raise ENOENT(path)
    parts = path[len(ROOT) + 1:].split("/")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ENOENT(path)


def _cache(sl, name: str, path: str):
    s = sl.sysfs_lookup(name)
    if s is None:
        raise ENOENT(path)
    return s


def read_sys_kernel_slab(k, path: str) -> str:
    sl = S.get_slub(k)
    name, attr = _split(path)
    if attr is None:
        raise ENOENT(f"{path}: is a directory")  # EISDIR in the kernel
    s = _cache(sl, name, path)
    ent = _attrs(sl).get(attr)
    if ent is None:
        raise ENOENT(path)
    return ent[0](sl, s)


def write_sys_kernel_slab(k, path: str, text) -> None:
    sl = S.get_slub(k)
    if isinstance(text, bytes):
        text = text.decode()
    text = str(text)
    name, attr = _split(path)
    if attr is None:
        raise ENOENT(path)
    s = _cache(sl, name, path)
    ent = _attrs(sl).get(attr)
    if ent is None:
        raise ENOENT(path)
    if ent[1] is None:
        raise EACCES(f"{path} is read-only")
    if not text:
        return
    ent[1](sl, s, text)


def list_sys_kernel_slab(k, path: str = ROOT) -> list[str]:
    sl = S.get_slub(k)
    name, attr = _split(path)
    if attr is not None:
        raise ENOENT(path)
    if name is None:
        return sorted(set(sl.sysfs_dirs) | set(sl.sysfs_links))
    _cache(sl, name, path)
    return sorted(_attrs(sl))


def readlink_sys_kernel_slab(k, path: str) -> str | None:
    """The target of an alias symlink (":0000104"), None for a directory; ENOENT otherwise."""
    sl = S.get_slub(k)
    name, attr = _split(path)
    if name is None or attr is not None:
        raise ENOENT(path)
    if name in sl.sysfs_links:
        return sl.sysfs_links[name]
    if name in sl.sysfs_dirs:
        return None
    raise ENOENT(path)


def sys_kernel_slab_entries(k) -> list[tuple[str, str, str | None]]:
    """readdir(/sys/kernel/slab): (name, "dir" | "link", link target); by name."""
    sl = S.get_slub(k)
    out = [(n, "dir", None) for n in sl.sysfs_dirs] + [(n, "link", t) for n, t in sl.sysfs_links.items()
                                                       if n not in sl.sysfs_dirs]
    return sorted(out)
