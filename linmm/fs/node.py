"""/sys/devices/system/node (drivers/base/node.c) and /proc/iomem (kernel/resource.c)."""
from __future__ import annotations

import re

from ..errors import ENOENT
from ..lib.bitmap import bitmap_list

NODE = "/sys/devices/system/node"


def node_meminfo(k, pg) -> str:
    n = pg.node_id
    zones = pg.node_zones
    zs = {item: sum(z.vm_stat[item] for z in zones) for item in zones[0].vm_stat}
    ns = pg.vm_stat
    total = sum(z.managed_pages for z in zones)
    free = zs["nr_free_pages"]
    rows = [("MemTotal", total), ("MemFree", free), ("MemUsed", total - free),
            ("Active", ns["nr_active_anon"] + ns["nr_active_file"]),
            ("Inactive", ns["nr_inactive_anon"] + ns["nr_inactive_file"]),
            ("Active(anon)", ns["nr_active_anon"]), ("Inactive(anon)", ns["nr_inactive_anon"]),
            ("Active(file)", ns["nr_active_file"]), ("Inactive(file)", ns["nr_inactive_file"]),
            ("Unevictable", ns["nr_unevictable"]), ("Mlocked", zs["nr_mlock"]),
            ("Dirty", ns["nr_dirty"]), ("Writeback", ns["nr_writeback"]),
            ("FilePages", ns["nr_file_pages"]), ("Mapped", ns["nr_mapped"]),
            ("AnonPages", ns["nr_anon_pages"]), ("Shmem", ns["nr_shmem"])]
    out = "".join(f"Node {n} {label + ':':<15} {v * 4:8d} kB\n" for label, v in rows)
    out += f"Node {n} {'KernelStack:':<15} {zs['nr_kernel_stack']:8d} kB\n"
    rows = [("PageTables", zs["nr_page_table_pages"]), ("NFS_Unstable", ns["nr_unstable"]),
            ("Bounce", zs["nr_bounce"]), ("WritebackTmp", ns["nr_writeback_temp"]),
            ("KReclaimable", ns["nr_slab_reclaimable"] + ns["nr_kernel_misc_reclaimable"]),
            ("Slab", ns["nr_slab_reclaimable"] + ns["nr_slab_unreclaimable"]),
            ("SReclaimable", ns["nr_slab_reclaimable"]), ("SUnreclaim", ns["nr_slab_unreclaimable"]),
            ("AnonHugePages", ns["nr_anon_transparent_hugepages"] * 512),
            ("ShmemHugePages", ns["nr_shmem_hugepages"] * 512),
            ("ShmemPmdMapped", ns["nr_shmem_pmdmapped"] * 512)]
    out += "".join(f"Node {n} {label + ':':<15} {v * 4:8d} kB\n" for label, v in rows)
    out += (f"Node {n} FileHugePages: {ns['nr_file_hugepages'] * 2048:8d} kB\n"
            f"Node {n} FilePmdMapped: {ns['nr_file_pmdmapped'] * 2048:8d} kB\n"
            f"Node {n} HugePages_Total: {0:5d}\nNode {n} HugePages_Free:  {0:5d}\n"
            f"Node {n} HugePages_Surp:  {0:5d}\n")
    return out


def read_node(k, path: str) -> str:
    nodes = [pg.node_id for pg in k.pgdats]
    with_mem = [pg.node_id for pg in k.pgdats if any(z.present_pages for z in pg.node_zones)]
    normal = [pg.node_id for pg in k.pgdats if any(z.present_pages for z in pg.node_zones[:3])]
    with_cpu = [pg.node_id for pg in k.pgdats if pg.cpus]
    simple = {"possible": nodes, "online": nodes, "has_memory": with_mem,
              "has_normal_memory": normal, "has_cpu": with_cpu}
    m = re.fullmatch(rf"{NODE}/(\w+)", path)
    if m and m.group(1) in simple:
        return bitmap_list(simple[m.group(1)]) + "\n"
    m = re.fullmatch(rf"{NODE}/node(\d+)/(cpulist|distance|meminfo)", path)
    if m and int(m.group(1)) in nodes:
        pg = k.pgdats[int(m.group(1))]
        what = m.group(2)
        if what == "cpulist":
            return bitmap_list(pg.cpus) + "\n"
        if what == "distance":
            return " ".join(str(k.node_distance(pg.node_id, o)) for o in nodes) + "\n"
        return node_meminfo(k, pg)
    raise ENOENT(path)


def proc_iomem(k) -> str:
    """/proc/iomem: the resource tree (kernel/resource.c r_show)."""
    from ..resource import proc_iomem as render
    return render(k.iomem_resource)
