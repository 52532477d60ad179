"""/proc/<pid>/{maps,smaps,smaps_rollup,status,statm,pagemap} (fs/proc/task_mmu.c, array.c)."""
from __future__ import annotations

import numpy as np

from ..mm.mm_types import (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, VM_EXEC,
                           VM_LOCKED, VM_MAYSHARE, VM_READ, VM_SOFTDIRTY, VM_WRITE)
from ..mm.page import PG_dirty, PG_referenced, PG_swapbacked
from ..mm.pgtable import (pte_present, PMD_SHIFT, _PAGE_SOFT_DIRTY, pte_dirty, pte_pfn,
                          pte_special, pte_young)

_MNEMONICS = {0: "rd", 1: "wr", 2: "ex", 3: "sh", 4: "mr", 5: "mw", 6: "me", 7: "ms", 8: "gd",
              9: "um", 10: "pf", 11: "dw", 12: "uw", 13: "lo", 14: "io", 15: "sr", 16: "rr",
              17: "dc", 18: "de", 19: "??", 20: "ac", 21: "nr", 22: "ht", 23: "sf", 24: "ar",
              25: "wf", 26: "dd", 27: "sd", 28: "mm", 29: "hg", 30: "nh", 31: "mg"}
PSS_SHIFT = 12
PM_SOFT_DIRTY, PM_MMAP_EXCLUSIVE = 1 << 55, 1 << 56
PM_FILE, PM_SWAP, PM_PRESENT = 1 << 61, 1 << 62, 1 << 63
_STATE = {"R": "R (running)", "S": "S (sleeping)", "Z": "Z (zombie)", "X": "X (dead)"}


def vma_name(mm, vma) -> str | None:
    if vma.vm_file is not None:
        return getattr(vma.vm_file, "path", "?")
    if vma.shmem is not None:
        return "/dev/zero (deleted)"
    if vma.vm_start <= mm.brk and vma.vm_end >= mm.start_brk:
        return "[heap]"
    if vma.vm_start <= mm.start_stack <= vma.vm_end:
        return "[stack]"
    return None


def map_line(mm, vma) -> str:
    f = vma.vm_flags
    pgoff = vma.vm_pgoff << 12 if (vma.vm_file is not None or vma.shmem is not None) else 0
    ino = vma.shmem.ino if vma.shmem is not None else 0
    line = (f"{vma.vm_start:08x}-{vma.vm_end:08x} "
            f"{'r' if f & VM_READ else '-'}{'w' if f & VM_WRITE else '-'}"
            f"{'x' if f & VM_EXEC else '-'}{'s' if f & VM_MAYSHARE else 'p'} "
            f"{pgoff:08x} 00:{1 if vma.shmem is not None else 0:02x} {ino} ")
    name = vma_name(mm, vma)
    if name is None:
        return line + "\n"
    line = line[:-1]
    return line + " " * max(0, _pad(mm) - len(line)) + " " + name + "\n"


def _pad(mm) -> int:
    """seq_pad() column of show_map_vma(): 25 + sizeof(void *) * 6 - 1."""
    return 48 if mm.task_size <= 1 << 32 else 72


def proc_pid_maps(k, task) -> str:
    mm = task.mm
    if mm is None:
        return ""
    return "".join(map_line(mm, v) for v in mm.vmas)


def _ptes(mm, vma):
    """(addresses, pte values) of the non-none PTEs of vma."""
    addrs, vals = [], []
    a = vma.vm_start
    while a < vma.vm_end:
        nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, vma.vm_end)
        t = mm.pte_tables.get(a >> PMD_SHIFT)
        if t is not None:
            i0 = (a >> 12) & 511
            ents = t.entries[i0:i0 + ((nxt - a) >> 12)]
            nz = np.flatnonzero(ents)
            addrs.extend((a + (nz << 12)).tolist())
            vals.extend(ents[nz].tolist())
        a = nxt
    return addrs, vals


def smaps_gather(k, mm, vma, mss: dict) -> None:
    memmap = k.memmap
    addrs, vals = _ptes(mm, vma)
    locked = bool(vma.vm_flags & VM_LOCKED)
    for addr, pte in zip(addrs, vals):
        if not pte_present(pte):
            mss["swap"] += 4096
            continue
        if pte_special(pte):
            continue
        pfn = pte_pfn(pte)
        anon = bool(int(memmap.mapping[pfn]) & 1)
        dirty = pte_dirty(pte) or memmap.test(pfn, PG_dirty)
        if anon:
            mss["anonymous"] += 4096
            if not memmap.test(pfn, PG_swapbacked) and not dirty:
                mss["lazyfree"] += 4096
        mss["resident"] += 4096
        if pte_young(pte) or memmap.test(pfn, PG_referenced):
            mss["referenced"] += 4096
        if int(memmap.refcount[pfn]) == 1:
            mss["private_dirty" if dirty else "private_clean"] += 4096
            pss = 4096 << PSS_SHIFT
        else:
            mc = memmap.page_mapcount(pfn)
            if mc >= 2:
                mss["shared_dirty" if dirty else "shared_clean"] += 4096
                pss = (4096 << PSS_SHIFT) // mc
            else:
                mss["private_dirty" if dirty else "private_clean"] += 4096
                pss = 4096 << PSS_SHIFT
        mss["pss"] += pss
        key = "pss_anon" if anon else ("pss_shmem" if memmap.test(pfn, PG_swapbacked) else "pss_file")
        mss[key] += pss
        if locked:
            mss["pss_locked"] += pss


def _new_mss() -> dict:
    return dict.fromkeys(("resident", "pss", "pss_anon", "pss_file", "pss_shmem", "shared_clean",
                          "shared_dirty", "private_clean", "private_dirty", "referenced",
                          "anonymous", "lazyfree", "swap", "swap_pss", "pss_locked"), 0)


def _smaps_block(mss: dict, rollup: bool) -> str:
    def d(label: str, v: int) -> str:
        return f"{label}{v >> 10:8d} kB\n"
    out = d("Rss:            ", mss["resident"]) + d("Pss:            ", mss["pss"] >> PSS_SHIFT)
    if rollup:
        out += (d("Pss_Anon:       ", mss["pss_anon"] >> PSS_SHIFT)
                + d("Pss_File:       ", mss["pss_file"] >> PSS_SHIFT)
                + d("Pss_Shmem:      ", mss["pss_shmem"] >> PSS_SHIFT))
    out += (d("Shared_Clean:   ", mss["shared_clean"]) + d("Shared_Dirty:   ", mss["shared_dirty"])
            + d("Private_Clean:  ", mss["private_clean"]) + d("Private_Dirty:  ", mss["private_dirty"])
            + d("Referenced:     ", mss["referenced"]) + d("Anonymous:      ", mss["anonymous"])
            + d("LazyFree:       ", mss["lazyfree"]) + d("AnonHugePages:  ", 0)
            + d("ShmemPmdMapped: ", 0) + d("FilePmdMapped: ", 0) + d("Shared_Hugetlb: ", 0)
            + f"Private_Hugetlb: {0:7d} kB\n" + d("Swap:           ", mss["swap"])
            + d("SwapPss:        ", mss["swap_pss"] >> PSS_SHIFT)
            + d("Locked:         ", mss["pss_locked"] >> PSS_SHIFT))
    return out


def proc_pid_smaps(k, task) -> str:
    mm = task.mm
    if mm is None:
        return ""
    out = []
    for v in mm.vmas:
        mss = _new_mss()
        smaps_gather(k, mm, v, mss)
        out.append(map_line(mm, v))
        out.append(f"Size:           {(v.vm_end - v.vm_start) >> 10:8d} kB\n"
                   f"KernelPageSize: {4:8d} kB\nMMUPageSize:    {4:8d} kB\n")
        out.append(_smaps_block(mss, False))
        out.append(f"THPeligible:\t\t{int(k.thp_vma_eligible(v))}\n")
        out.append("VmFlags: " + "".join(_MNEMONICS[b] + " " for b in range(32)
                                         if v.vm_flags >> b & 1) + "\n")
    return "".join(out)


def proc_pid_smaps_rollup(k, task) -> str:
    from ..errors import ESRCH
    mm = task.mm
    if mm is None:
        raise ESRCH("smaps_rollup: no mm")
    mss = _new_mss()
    for v in mm.vmas:
        smaps_gather(k, mm, v, mss)
    start = mm.vmas[0].vm_start if mm.vmas else 0
    end = mm.vmas[-1].vm_end if mm.vmas else 0
    head = f"{start:08x}-{end:08x} ---p 00000000 00:00 0"
    return head + " " * max(0, _pad(mm) - len(head)) + " [rollup]\n" + _smaps_block(mss, True)


def proc_pid_status(k, task) -> str:
    mm = task.mm
    ppid = task.parent.pid if getattr(task, "parent", None) is not None else (0 if task.is_kthread else 1)
    uid = getattr(task, "uid", 0)
    out = [f"Name:\t{task.comm}\n"]
    if not task.is_kthread:
        out.append("Umask:\t0022\n")
    out.append(f"State:\t{_STATE.get(task.state, task.state)}\nTgid:\t{task.tgid}\nNgid:\t0\n"
               f"Pid:\t{task.pid}\nPPid:\t{ppid}\nTracerPid:\t0\n"
               f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
               f"FDSize:\t{0 if task.is_kthread else 64}\nGroups:\t \n"
               f"NStgid:\t{task.tgid}\nNSpid:\t{task.pid}\nNSpgid:\t{task.tgid}\nNSsid:\t{task.tgid}\n")
    if mm is not None and not task.is_kthread:
        anon, file, shmem = (mm.rss_stat[MM_ANONPAGES], mm.rss_stat[MM_FILEPAGES],
                             mm.rss_stat[MM_SHMEMPAGES])
        rss = anon + file + shmem
        text = min(((mm.end_code + 4095) & ~4095) - (mm.start_code & ~4095), mm.exec_vm << 12)
        lib = (mm.exec_vm << 12) - text

        def kb(label: str, v: int) -> str:
            return f"{label}\t{v:8d} kB\n"
        out.append(kb("VmPeak:", max(mm.total_vm, mm.hiwater_vm) << 2) + kb("VmSize:", mm.total_vm << 2)
                   + kb("VmLck:", mm.locked_vm << 2) + kb("VmPin:", mm.pinned_vm << 2)
                   + kb("VmHWM:", max(rss, mm.hiwater_rss) << 2) + kb("VmRSS:", rss << 2)
                   + kb("RssAnon:", anon << 2) + kb("RssFile:", file << 2)
                   + kb("RssShmem:", shmem << 2) + kb("VmData:", mm.data_vm << 2)
                   + kb("VmStk:", mm.stack_vm << 2) + kb("VmExe:", text >> 10)
                   + kb("VmLib:", lib >> 10) + kb("VmPTE:", mm.pgtables_bytes >> 10)
                   + kb("VmSwap:", mm.rss_stat[MM_SWAPENTS] << 2) + kb("HugetlbPages:", 0)
                   + "CoreDumping:\t0\n" + "THP_enabled:\t1\n")
    ncpu = k.config.cpus
    mask = (1 << ncpu) - 1
    cpus = "0" if ncpu == 1 else f"0-{ncpu - 1}"
    nodes = "0" if len(k.pgdats) == 1 else f"0-{len(k.pgdats) - 1}"
    out.append("Threads:\t1\nSigQ:\t0/0\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"
               "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n")
    cap = "000001ffffffffff" if uid == 0 else "0000000000000000"
    out.append(f"CapInh:\t0000000000000000\nCapPrm:\t{cap}\nCapEff:\t{cap}\n"
               f"CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
               f"Seccomp:\t0\nSpeculation_Store_Bypass:\tthread vulnerable\n"
               f"Cpus_allowed:\t{mask:x}\nCpus_allowed_list:\t{cpus}\n"
               f"Mems_allowed:\t00000000,{(1 << len(k.pgdats)) - 1:08x}\n"
               f"Mems_allowed_list:\t{nodes}\nvoluntary_ctxt_switches:\t0\n"
               f"nonvoluntary_ctxt_switches:\t0\n")
    return "".join(out)


def proc_pid_statm(k, task) -> str:
    mm = task.mm
    if mm is None:
        return "0 0 0 0 0 0 0\n"
    file_shmem = mm.rss_stat[MM_FILEPAGES] + mm.rss_stat[MM_SHMEMPAGES]
    resident = file_shmem + mm.rss_stat[MM_ANONPAGES]
    text = (((mm.end_code + 4095) & ~4095) - (mm.start_code & ~4095)) >> 12
    data = mm.data_vm + mm.stack_vm
    return f"{mm.total_vm} {resident} {file_shmem} {text} 0 {data} 0\n"


def pagemap_read(k, task, offset: int, size: int | None, show_pfn: bool) -> bytes:
    """64-bit entries, one per virtual page: PFN, soft-dirty, exclusive, file, swap, present."""
    from ..errors import EINVAL
    mm = task.mm
    if mm is None:
        return b""
    task_size = mm.task_size
    total = (task_size >> 12) * 8
    if size is None:
        size = total - offset
    if offset % 8 or size % 8:
        raise EINVAL("pagemap: offset and size must be multiples of 8")
    if size <= 0 or offset >= total:
        return b""
    size = min(size, total - offset)
    first = offset // 8
    n = size // 8
    out = np.zeros(n, np.uint64)
    start, end = first << 12, (first + n) << 12
    memmap = k.memmap
    for vma in k.mmap.vmas_in(mm, start, end):
        s, e = max(start, vma.vm_start), min(end, vma.vm_end)
        if vma.vm_flags & VM_SOFTDIRTY:
            out[(s >> 12) - first:(e >> 12) - first] = np.uint64(PM_SOFT_DIRTY)
        a = s
        while a < e:
            nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, e)
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            if t is not None:
                i0 = (a >> 12) & 511
                ents = t.entries[i0:i0 + ((nxt - a) >> 12)]
                for off in np.flatnonzero(ents).tolist():
                    pte = int(ents[off])
                    if not pte_present(pte):
                        continue
                    v = int(out[(a >> 12) - first + off]) | PM_PRESENT
                    if pte & _PAGE_SOFT_DIRTY:
                        v |= PM_SOFT_DIRTY
                    pfn = pte_pfn(pte)
                    if show_pfn:
                        v |= pfn
                    if not pte_special(pte):
                        if not int(memmap.mapping[pfn]) & 1:
                            v |= PM_FILE
                        if memmap.page_mapcount(pfn) == 1:
                            v |= PM_MMAP_EXCLUSIVE
                    out[(a >> 12) - first + off] = v
            a = nxt
    return out.tobytes()


def proc_pid_stat(k, task) -> str:
    """/proc/<pid>/stat (fs/proc/array.c do_task_stat): 52 fields; times in clock ticks."""
    mm = task.mm
    kthread = task.is_kthread
    state = task.state if task.state in "RSDZTX" else "R"
    ppid = task.parent.pid if getattr(task, "parent", None) is not None else (0 if kthread else 1)
    vsize = mm.total_vm << 12 if mm is not None and not kthread else 0
    rss = mm.get_mm_rss() if mm is not None and not kthread else 0
    flags = 0x00208040 if kthread else 0x00400000  # PF_KTHREAD|PF_NOFREEZE|..., PF_RANDOMIZE
    f = [task.pid, f"({task.comm})", state, ppid, task.pid, task.pid, 0, -1, flags,
         getattr(task, "min_flt", 0), getattr(task, "cmin_flt", 0),
         getattr(task, "maj_flt", 0), getattr(task, "cmaj_flt", 0), 0, 0, 0, 0, 20, 0, 1, 0,
         getattr(task, "start_ticks", 0), vsize, rss, (1 << 64) - 1]
    if mm is not None and not kthread:
        f += [mm.start_code, mm.end_code, mm.start_stack]
    else:
        f += [0, 0, 0]
    f += [0, 0, 0, 0, 0, 0, 0, 0, 0, 17, task.cpu, 0, 0, 0, 0, 0]
    if mm is not None and not kthread:
        f += [mm.start_data, mm.end_data, mm.start_brk, 0, 0, 0, 0]
    else:
        f += [0] * 7
    f.append(task.exit_code or 0 if task.state in "ZX" else 0)
    return " ".join(str(x) for x in f) + "\n"
