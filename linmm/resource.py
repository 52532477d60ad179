"""The iomem resource tree (kernel/resource.c) and /proc/iomem.

Boot registers the e820 ranges ("Reserved", "System RAM" with the kernel
image nested in it); memory hot-add registers "System RAM"; drivers claim
device ranges, e.g. with request_free_mem_region() for ZONE_DEVICE.
"""
from __future__ import annotations

from .errors import ENOMEM, ERANGE

IORESOURCE_MEM = 0x00000200
IORESOURCE_BUSY = 0x80000000
IORESOURCE_SYSRAM = 0x01000000
IORESOURCE_SYSTEM_RAM = IORESOURCE_MEM | IORESOURCE_SYSRAM

# enum of include/linux/ioport.h (v5.7)
IORES_DESC_NONE, IORES_DESC_CRASH_KERNEL, IORES_DESC_ACPI_TABLES = 0, 1, 2
IORES_DESC_ACPI_NV_STORAGE, IORES_DESC_PERSISTENT_MEMORY = 3, 4
IORES_DESC_PERSISTENT_MEMORY_LEGACY, IORES_DESC_DEVICE_PRIVATE_MEMORY = 5, 6
IORES_DESC_RESERVED, IORES_DESC_SOFT_RESERVED = 7, 8

REGION_DISJOINT, REGION_INTERSECTS, REGION_MIXED = 0, 1, 2
PA_SECTION_SHIFT = 27


class Resource:
    """struct resource: [start, end] inclusive, as the kernel keeps it."""

    __slots__ = ("start", "end", "name", "flags", "desc", "parent", "children")

    def __init__(self, start: int, end: int, name: str = "", flags: int = IORESOURCE_MEM,
                 desc: int = IORES_DESC_NONE):
        self.start, self.end, self.name, self.flags, self.desc = start, end, name, flags, desc
        self.parent: Resource | None = None
        self.children: list[Resource] = []

    def __repr__(self) -> str:
        return f"<resource [mem {self.start:#010x}-{self.end:#010x}] {self.name!r}>"

    def size(self) -> int:
        """resource_size()."""
        return self.end - self.start + 1


def request_resource_conflict(root: Resource, new: Resource) -> Resource | None:
    """__request_resource(): insert new under root; the conflicting resource, or None."""
    if new.end < new.start or new.start < root.start or new.end > root.end:
        return root
    for c in root.children:
        if c.start <= new.end and new.start <= c.end:
            return c
    root.children.append(new)
    root.children.sort(key=lambda r: r.start)
    new.parent = root
    return None


def release_resource(old: Resource) -> None:
    if old.parent is not None:
        old.parent.children.remove(old)
        old.parent = None


def request_region(parent: Resource, start: int, n: int, name: str,
                   flags: int = IORESOURCE_MEM | IORESOURCE_BUSY,
                   desc: int = IORES_DESC_NONE) -> Resource | None:
    """__request_region(): descend into non-busy conflicts; None when busy."""
    res = Resource(start, start + n - 1, name, flags, desc)
    while True:
        conflict = request_resource_conflict(parent, res)
        if conflict is None:
            return res
        if conflict is parent or conflict.flags & IORESOURCE_BUSY:
            return None
        if not (conflict.start <= res.start and res.end <= conflict.end):
            return None
        parent = conflict


def find_region(root: Resource, start: int, n: int) -> Resource | None:
    """The resource registered at exactly [start, start + n), at any depth."""
    stack = list(root.children)
    while stack:
        r = stack.pop()
        if r.start == start and r.end == start + n - 1:
            return r
        stack.extend(r.children)
    return None


def release_mem_region(root: Resource, start: int, n: int) -> None:
    """__release_region() of a range registered with request_region()."""
    r = find_region(root, start, n)
    if r is not None:
        release_resource(r)


def region_intersects(root: Resource, start: int, size: int, flags: int, desc: int) -> int:
    """REGION_DISJOINT / INTERSECTS / MIXED of [start, start+size) against the
    top-level resources whose flags include ``flags`` (and desc, unless NONE)."""
    end = start + size - 1
    type_hits = other = 0
    for p in root.children:
        if p.start <= end and start <= p.end:
            if (p.flags & flags) == flags and (desc == IORES_DESC_NONE or desc == p.desc):
                type_hits += 1
            else:
                other += 1
    if not type_hits:
        return REGION_DISJOINT
    return REGION_INTERSECTS if not other else REGION_MIXED


def request_free_mem_region(base: Resource, size: int, name: str,
                            max_physmem_bits: int = 46) -> Resource:
    """The highest free section-aligned range under ``base`` (for device private
    memory): size is rounded up to 128 MiB; ERANGE when nothing is free."""
    size = (size + (1 << PA_SECTION_SHIFT) - 1) & ~((1 << PA_SECTION_SHIFT) - 1)
    end = min(base.end, (1 << max_physmem_bits) - 1)
    addr = end - size + 1
    while addr > size and addr >= base.start:
        if region_intersects(base, addr, size, 0, IORES_DESC_NONE) == REGION_DISJOINT:
            res = request_region(base, addr, size, name)
            if res is None:  # the claim itself failed
                raise ENOMEM(f"request_free_mem_region: cannot claim {addr:#x}")
            res.desc = IORES_DESC_DEVICE_PRIVATE_MEMORY
            return res
        addr -= size
    raise ERANGE(f"request_free_mem_region: no free {size:#x}-byte range")


def proc_iomem(root: Resource, privileged: bool = True) -> str:
    """r_show(): two spaces per level, at least 8 hex digits; readers without
    CAP_SYS_ADMIN see zeros."""
    out: list[str] = []
    width = 4 if root.end < 0x10000 else 8

    def walk(r: Resource, depth: int) -> None:
        for c in r.children:
            s, e = (c.start, c.end) if privileged else (0, 0)
            out.append(f"{'':{depth * 2}}{s:0{width}x}-{e:0{width}x} : {c.name}\n")
            walk(c, depth + 1)

    walk(root, 0)
    return "".join(out)


def e820_reserve_resources(layout, phys_bits: int, mem_limit: int | None = None) -> Resource:
    """Boot: the iomem root with the e820 table (after trim_bios_range and mem=, which
    removes the RAM above its limit) and the kernel image nested in its System RAM
    (arch/x86/kernel/e820.c, setup.c)."""
    root = Resource(0, (1 << phys_bits) - 1, "PCI mem", IORESOURCE_MEM)
    limit = root.end + 1 if mem_limit is None else min(mem_limit, root.end + 1)
    busy = IORESOURCE_BUSY
    entries = []
    if layout.e820_bios:
        entries.append((0, 0x1000, "Reserved", IORESOURCE_MEM | busy))
        entries += [(e.start, e.end, "Reserved", IORESOURCE_MEM | busy)
                    for e in layout.e820_bios if e.type == "reserved"]
        entries += [(max(e.start, 0x1000), min(e.end, limit), "System RAM", IORESOURCE_SYSTEM_RAM | busy)
                    for e in layout.e820_bios if e.type == "usable"
                    and min(e.end, limit) > max(e.start, 0x1000)
                    and e.end - 1 <= root.end]  # 32-bit resource_size_t: nothing above 4 GiB
    else:
        entries += [(s << 12, e << 12, "System RAM", IORESOURCE_SYSTEM_RAM | busy)
                    for s, e, _ in layout.memory]
    for s, e, name, flags in sorted(entries):
        request_resource_conflict(root, Resource(s, e - 1, name, flags))
    parts = layout.image_parts
    if parts:
        base = 16 << 20
        code_end = base + (parts["code"] << 12)
        ro_end = code_end + (parts["rodata"] << 12)
        data_end = ro_end + (parts["rwdata"] << 12)
        bss_start = data_end + (parts["init"] << 12)
        for s, e, name in ((base, code_end, "Kernel code"), (code_end, ro_end, "Kernel rodata"),
                           (ro_end, data_end, "Kernel data"),
                           (bss_start, bss_start + (parts["bss"] << 12), "Kernel bss")):
            ram = next((r for r in root.children if r.name == "System RAM"
                        and r.start <= s and e - 1 <= r.end), None)
            if ram is not None:
                request_resource_conflict(ram, Resource(s, e - 1, name, IORESOURCE_SYSTEM_RAM | busy))
    return root
