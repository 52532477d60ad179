"""tools/vm/slabinfo.c (v5.7) ported to Python, reading the model's /sys/kernel/slab.

    main(["-a"], k=kernel)            # prints what `slabinfo -a` prints; returns the exit code
    main(["--cmdline=slub_debug", "-r", "kmalloc-8"])   # boots a machine first

Options before the slabinfo ones that the model adds (long form with '=' only):
--ram=SIZE, --cpus=N, --cmdline=TEXT pick the machine booted when no kernel is given.
"""
from __future__ import annotations

import re
import sys

from ..errors import EACCES, ENOENT, Errno

MAX_SLABS = 500
MAX_ALIASES = 500
ROOT = "/sys/kernel/slab"
_U64 = (1 << 64) - 1

_FIELDS = ("aliases", "align", "cache_dma", "cpu_slabs", "destroy_by_rcu", "hwcache_align",
           "object_size", "objects", "objects_partial", "objects_total", "objs_per_slab", "order",
           "partial", "poison", "reclaim_account", "red_zone", "sanity_checks", "slab_size", "slabs",
           "store_user", "trace", "alloc_fastpath", "alloc_slowpath", "free_fastpath",
           "free_slowpath", "free_frozen", "free_add_partial", "free_remove_partial",
           "alloc_from_partial", "alloc_slab", "alloc_refill", "free_slab", "cpuslab_flush",
           "deactivate_full", "deactivate_empty", "deactivate_to_head", "deactivate_to_tail",
           "deactivate_remote_frees", "order_fallback", "cmpxchg_double_cpu_fail",
           "cmpxchg_double_fail", "cpu_partial_alloc", "cpu_partial_free", "alloc_node_mismatch",
           "deactivate_bypass")

USAGE = (
    "slabinfo 4/15/2011. (c) 2007 sgi/(c) 2011 Linux Foundation.\n\n"
    "slabinfo [-aABDefhilLnoPrsStTUvXz1] [N=K] [-dafzput] [slab-regexp]\n"
    "-a|--aliases           Show aliases\n"
    "-A|--activity          Most active slabs first\n"
    "-B|--Bytes             Show size in bytes\n"
    "-D|--display-active    Switch line format to activity\n"
    "-e|--empty             Show empty slabs\n"
    "-f|--first-alias       Show first alias\n"
    "-h|--help              Show usage information\n"
    "-i|--inverted          Inverted list\n"
    "-l|--slabs             Show slabs\n"
    "-L|--Loss              Sort by loss\n"
    "-n|--numa              Show NUMA information\n"
    "-N|--lines=K           Show the first K slabs\n"
    "-o|--ops               Show kmem_cache_ops\n"
    "-P|--partial\t\tSort by number of partial slabs\n"
    "-r|--report            Detailed report on single slabs\n"
    "-s|--shrink            Shrink slabs\n"
    "-S|--Size              Sort by size\n"
    "-t|--tracking          Show alloc/free information\n"
    "-T|--Totals            Show summary information\n"
    "-U|--Unreclaim         Show unreclaimable slabs only\n"
    "-v|--validate          Validate slabs\n"
    "-X|--Xtotals           Show extended summary information\n"
    "-z|--zero              Include empty slabs\n"
    "-1|--1ref              Single reference\n"
    "\n"
    "-d  | --debug          Switch off all debug options\n"
    "-da | --debug=a        Switch on all debug options (--debug=FZPU)\n"
    "\n"
    "-d[afzput] | --debug=[afzput]\n"
    "    f | F              Sanity Checks (SLAB_CONSISTENCY_CHECKS)\n"
    "    z | Z              Redzoning\n"
    "    p | P              Poisoning\n"
    "    u | U              Tracking\n"
    "    t | T              Tracing\n"
    "\nSorting options (--Loss, --Size, --Partial) are mutually exclusive\n")

LONG_OPTS = [("aliases", 0, "a"), ("activity", 0, "A"), ("Bytes", 0, "B"), ("debug", 2, "d"),
             ("display-activity", 0, "D"), ("empty", 0, "e"), ("first-alias", 0, "f"),
             ("help", 0, "h"), ("inverted", 0, "i"), ("slabs", 0, "l"), ("Loss", 0, "L"),
             ("numa", 0, "n"), ("lines", 1, "N"), ("ops", 0, "o"), ("partial", 0, "p"),
             ("report", 0, "r"), ("shrink", 0, "s"), ("Size", 0, "S"), ("tracking", 0, "t"),
             ("Totals", 0, "T"), ("Unreclaim", 0, "U"), ("validate", 0, "v"), ("Xtotals", 0, "X"),
             ("zero", 0, "z"), ("1ref", 0, "1")]
SHORT_OPTS = "aABd::DefhilLnN:oPrsStTUvXz1"


class _Fatal(Exception):
    pass


class _Slab:
    def __init__(self):
        self.name = ""
        self.alias = 0
        self.refs = 0
        for f in _FIELDS:
            setattr(self, f, 0)
        self.numa: dict[int, int] = {}
        self.numa_partial: dict[int, int] = {}


class _Alias:
    def __init__(self, name: str, ref: str):
        self.name = name
        self.ref = ref
        self.slab: _Slab | None = None


def bre_to_python(pat: str) -> str:
    """A POSIX basic regular expression (regcomp without REG_EXTENDED) as a Python one."""
    out = []
    i = 0
    while i < len(pat):
        ch = pat[i]
        if ch == "\\" and i + 1 < len(pat):
            nx = pat[i + 1]
            out.append(nx if nx in "(){}|+?" else "\\" + nx)
            i += 2
            continue
        if ch in "(){}|+?":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _clong(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


class SlabInfo:
    def __init__(self, k, out, err):
        self.k = k
        self.out = out
        self.err = err
        self.page_size = 4096
        self.slabinfo: list[_Slab] = []
        self.aliasinfo: list[_Alias] = []
        self.slabs = self.actual_slabs = self.aliases = self.alias_targets = 0
        self.highest_node = 0
        self.show_empty = self.show_report = self.show_alias = self.show_slab = 0
        self.skip_zero = 1
        self.show_numa = self.show_track = self.show_first_alias = self.validate = 0
        self.shrink = self.show_inverted = self.show_single_ref = self.show_totals = 0
        self.sort_size = self.sort_active = self.set_debug = self.show_ops = 0
        self.sort_partial = self.show_activity = 0
        self.output_lines = -1
        self.sort_loss = self.extended_totals = self.show_bytes = self.unreclaim_only = 0
        self.sanity = self.redzone = self.poison = self.tracking = self.tracing = 0
        self.line = 0
        self.pattern = None

    # ---------------------------------------------------------------- io
    def printf(self, text: str) -> None:
        self.out.write(text)

    def fatal(self, text: str):
        self.err.write(text)
        raise _Fatal()

    def _read(self, path: str) -> str:
        from ..fs.slabinfo import read_sys_kernel_slab
        try:
            return read_sys_kernel_slab(self.k, path)
        except (Errno, KeyError):
            return ""

    def get_obj_and_str(self, path: str) -> tuple[int, str | None]:
        buf = self._read(path).split("\n", 1)[0]
        if not buf:
            return 0, None
        m = re.match(r"\s*([+-]?\d+)", buf)
        res = int(m.group(1)) & _U64 if m else 0
        rest = buf[m.end():] if m else buf
        rest = rest.lstrip(" ")
        return res, (rest or None)

    def get_obj(self, path: str) -> int:
        buf = self._read(path).split("\n", 1)[0]
        m = re.match(r"\s*([+-]?\d+)", buf)
        return int(m.group(1)) if m else 0

    def set_obj(self, s: _Slab, name: str, n: int) -> None:
        from ..fs.slabinfo import write_sys_kernel_slab
        path = f"{ROOT}/{s.name}/{name}"
        try:
            write_sys_kernel_slab(self.k, path, f"{n}\n")
        except (ENOENT, EACCES):
            self.fatal(f"Cannot write to {s.name}/{name}\n")
        except Errno:
            pass  # the write error surfaces at fclose(), which the tool ignores

    def read_slab_obj(self, s: _Slab, name: str) -> str:
        return self._read(f"{ROOT}/{s.name}/{name}")[:4096]

    # ---------------------------------------------------------------- helpers
    def store_size(self, value: int) -> str:
        value &= _U64
        divisor, trailer = 1, ""
        if not self.show_bytes:
            if value > 1000000000:
                divisor, trailer = 100000000, "G"
            elif value > 1000000:
                divisor, trailer = 100000, "M"
            elif value > 1000:
                divisor, trailer = 100, "K"
        value //= divisor
        buf = f"{_clong(value)}"
        if divisor != 1:
            buf = buf[:-1] + "." + buf[-1]
        return buf + trailer

    def decode_numa_list(self, t: str | None) -> dict[int, int]:
        numa: dict[int, int] = {}
        if not t:
            return numa
        while t.startswith("N"):
            m = re.match(r"N(\d*)", t)
            node = int(m.group(1) or 0)
            t = t[m.end():]
            if t.startswith("="):
                m = re.match(r"=(\d*)", t)
                numa[node] = int(m.group(1) or 0)
                t = t[m.end():]
                if node > self.highest_node:
                    self.highest_node = node
            t = t.lstrip(" ")
        return numa

    def slab_validate(self, s):
        if s.name == "*":
            return
        self.set_obj(s, "validate", 1)

    def slab_shrink(self, s):
        if s.name == "*":
            return
        self.set_obj(s, "shrink", 1)

    def first_line(self):
        if self.show_activity:
            self.printf("Name                   Objects      Alloc       Free   %Fast Fallb O CmpX   UL\n")
        else:
            self.printf(f"Name                   Objects Objsize           "
                        f"{' Loss' if self.sort_loss else 'Space'} "
                        f"Slabs/Part/Cpu  O/S O %Fr %Ef Flg\n")

    def find_one_alias(self, find):
        best = None
        for a in self.aliasinfo:
            if a.slab is find and (best is None or len(best.name) < len(a.name)):
                best = a
                if a.name.startswith("kmall"):
                    return best
        return best

    def slab_size(self, s) -> int:
        return (s.slabs * (self.page_size << s.order)) & _U64

    @staticmethod
    def slab_activity(s) -> int:
        return s.alloc_fastpath + s.free_fastpath + s.alloc_slowpath + s.free_slowpath

    def slab_waste(self, s) -> int:
        return (self.slab_size(s) - s.objects * s.object_size) & _U64

    def slab_numa(self, s, mode):
        if s.name == "*":
            return
        if not self.highest_node:
            self.printf(f"\n{s.name}: No NUMA information available.\n")
            return
        if self.skip_zero and not s.slabs:
            return
        if not self.line:
            self.printf("\n%-21s:" % ("NUMA nodes" if mode else "Slab"))
            for node in range(self.highest_node + 1):
                self.printf(" %4d" % node)
            self.printf("\n----------------------")
            for node in range(self.highest_node + 1):
                self.printf("-----")
            self.printf("\n")
        self.printf("%-21s " % ("All slabs" if mode else s.name))
        for node in range(self.highest_node + 1):
            self.printf(" %4s" % self.store_size(s.numa.get(node, 0)))
        self.printf("\n")
        if mode:
            self.printf("%-21s " % "Partial slabs")
            for node in range(self.highest_node + 1):
                self.printf(" %4s" % self.store_size(s.numa_partial.get(node, 0)))
            self.printf("\n")
        self.line += 1

    def show_tracking(self, s):
        self.printf(f"\n{s.name}: Kernel object allocation\n")
        self.printf("-----------------------------------------------------------------------\n")
        buf = self.read_slab_obj(s, "alloc_calls")
        self.printf(buf if buf else "No Data\n")
        self.printf(f"\n{s.name}: Kernel object freeing\n")
        self.printf("------------------------------------------------------------------------\n")
        buf = self.read_slab_obj(s, "free_calls")
        self.printf(buf if buf else "No Data\n")

    def ops(self, s):
        if s.name == "*":
            return
        buf = self.read_slab_obj(s, "ops")
        if buf:
            self.printf(f"\n{s.name}: kmem_cache operations\n")
            self.printf("--------------------------------------------\n")
            self.printf(buf)
        else:
            self.printf(f"\n{s.name} has no kmem_cache operations\n")

    @staticmethod
    def onoff(x) -> str:
        return "On " if x else "Off"

    def slab_stats(self, s):
        if not s.alloc_slab:
            return
        total_alloc = s.alloc_fastpath + s.alloc_slowpath
        total_free = s.free_fastpath + s.free_slowpath
        if not total_alloc:
            return
        p = self.printf

        def pct(a, t):
            return a * 100 // t if t else 0
        p("\n")
        p("Slab Perf Counter       Alloc     Free %Al %Fr\n")
        p("--------------------------------------------------\n")
        p("Fastpath             %8d %8d %3d %3d\n" % (s.alloc_fastpath, s.free_fastpath,
                                                     pct(s.alloc_fastpath, total_alloc),
                                                     pct(s.free_fastpath, total_free)))
        p("Slowpath             %8d %8d %3d %3d\n" % (total_alloc - s.alloc_fastpath, s.free_slowpath,
                                                     pct(total_alloc - s.alloc_fastpath, total_alloc),
                                                     pct(s.free_slowpath, total_free)))
        p("Page Alloc           %8d %8d %3d %3d\n" % (s.alloc_slab, s.free_slab,
                                                     pct(s.alloc_slab, total_alloc),
                                                     pct(s.free_slab, total_free)))
        p("Add partial          %8d %8d %3d %3d\n" % (s.deactivate_to_head + s.deactivate_to_tail,
                                                     s.free_add_partial,
                                                     pct(s.deactivate_to_head + s.deactivate_to_tail,
                                                         total_alloc),
                                                     pct(s.free_add_partial, total_free)))
        p("Remove partial       %8d %8d %3d %3d\n" % (s.alloc_from_partial, s.free_remove_partial,
                                                     pct(s.alloc_from_partial, total_alloc),
                                                     pct(s.free_remove_partial, total_free)))
        p("Cpu partial list     %8d %8d %3d %3d\n" % (s.cpu_partial_alloc, s.cpu_partial_free,
                                                     pct(s.cpu_partial_alloc, total_alloc),
                                                     pct(s.cpu_partial_free, total_free)))
        p("RemoteObj/SlabFrozen %8d %8d %3d %3d\n" % (s.deactivate_remote_frees, s.free_frozen,
                                                     pct(s.deactivate_remote_frees, total_alloc),
                                                     pct(s.free_frozen, total_free)))
        p("Total                %8d %8d\n\n" % (total_alloc, total_free))
        if s.cpuslab_flush:
            p("Flushes %8d\n" % s.cpuslab_flush)
        total = (s.deactivate_full + s.deactivate_empty + s.deactivate_to_head
                 + s.deactivate_to_tail + s.deactivate_bypass)
        if total:
            p("\nSlab Deactivation             Occurrences %\n")
            p("-------------------------------------------------\n")
            for label, v in (("Slab full                    ", s.deactivate_full),
                             ("Slab empty                   ", s.deactivate_empty),
                             ("Moved to head of partial list", s.deactivate_to_head),
                             ("Moved to tail of partial list", s.deactivate_to_tail),
                             ("Deactivation bypass          ", s.deactivate_bypass),
                             ("Refilled from foreign frees  ", s.alloc_refill),
                             ("Node mismatch                ", s.alloc_node_mismatch)):
                p("%s %7d  %3d%%\n" % (label, v, v * 100 // total))
        if s.cmpxchg_double_fail or s.cmpxchg_double_cpu_fail:
            p("\nCmpxchg_double Looping\n------------------------\n")
            p("Locked Cmpxchg Double redos   %d\nUnlocked Cmpxchg Double redos %d\n"
              % (s.cmpxchg_double_fail, s.cmpxchg_double_cpu_fail))

    def report(self, s):
        if s.name == "*":
            return
        p = self.printf
        ps = self.page_size << s.order
        p("\nSlabcache: %-15s  Aliases: %2d Order : %2d Objects: %d\n"
          % (s.name, s.aliases, s.order, s.objects))
        if s.hwcache_align:
            p("** Hardware cacheline aligned\n")
        if s.cache_dma:
            p("** Memory is allocated in a special DMA zone\n")
        if s.destroy_by_rcu:
            p("** Slabs are destroyed via RCU\n")
        if s.reclaim_account:
            p("** Reclaim accounting active\n")
        p("\nSizes (bytes)     Slabs              Debug                Memory\n")
        p("------------------------------------------------------------------------\n")
        p("Object : %7d  Total  : %7d   Sanity Checks : %s  Total: %7d\n"
          % (s.object_size, s.slabs, self.onoff(s.sanity_checks), s.slabs * ps))
        p("SlabObj: %7d  Full   : %7d   Redzoning     : %s  Used : %7d\n"
          % (s.slab_size, _clong(s.slabs - s.partial - s.cpu_slabs), self.onoff(s.red_zone),
             s.objects * s.object_size))
        p("SlabSiz: %7d  Partial: %7d   Poisoning     : %s  Loss : %7d\n"
          % (ps, s.partial, self.onoff(s.poison), _clong(s.slabs * ps - s.objects * s.object_size)))
        p("Loss   : %7d  CpuSlab: %7d   Tracking      : %s  Lalig: %7d\n"
          % (s.slab_size - s.object_size, s.cpu_slabs, self.onoff(s.store_user),
             (s.slab_size - s.object_size) * s.objects))
        p("Align  : %7d  Objects: %7d   Tracing       : %s  Lpadd: %7d\n"
          % (s.align, s.objs_per_slab, self.onoff(s.trace),
             _clong((ps - s.objs_per_slab * s.slab_size) * s.slabs)))
        self.ops(s)
        self.show_tracking(s)
        self.slab_numa(s, 1)
        self.slab_stats(s)

    def slabcache(self, s):
        if s.name == "*":
            return
        if self.unreclaim_only and s.reclaim_account:
            return
        if self.actual_slabs == 1:
            self.report(s)
            return
        if self.skip_zero and not self.show_empty and not s.slabs:
            return
        if self.show_empty and s.slabs:
            return
        size_str = self.store_size(self.slab_size(s) if self.sort_loss == 0 else self.slab_waste(s))
        dist_str = f"{_clong(s.slabs - s.cpu_slabs) & _U64}/{s.partial}/{s.cpu_slabs}"[:39]
        if not self.line:
            self.first_line()
        self.line += 1
        flags = ""
        if s.aliases:
            flags += "*"
        if s.cache_dma:
            flags += "d"
        if s.hwcache_align:
            flags += "A"
        if s.poison:
            flags += "P"
        if s.reclaim_account:
            flags += "a"
        if s.red_zone:
            flags += "Z"
        if s.sanity_checks:
            flags += "F"
        if s.store_user:
            flags += "U"
        if s.trace:
            flags += "T"
        if self.show_activity:
            total_alloc = s.alloc_fastpath + s.alloc_slowpath
            total_free = s.free_fastpath + s.free_slowpath
            self.printf("%-21s %8d %10d %10d %3d %3d %5d %1d %4d %4d\n" % (
                s.name, s.objects, total_alloc, total_free,
                s.alloc_fastpath * 100 // total_alloc if total_alloc else 0,
                s.free_fastpath * 100 // total_free if total_free else 0,
                s.order_fallback, s.order, s.cmpxchg_double_fail, s.cmpxchg_double_cpu_fail))
        else:
            ps = self.page_size << s.order
            self.printf("%-21s %8d %7d %15s %14s %4d %1d %3d %3d %s\n" % (
                s.name, s.objects, s.object_size, size_str, dist_str, s.objs_per_slab, s.order,
                s.partial * 100 // s.slabs if s.slabs else 100,
                s.objects * s.object_size * 100 // (s.slabs * ps) if s.slabs else 100, flags))

    # ---------------------------------------------------------------- debug
    def debug_opt_scan(self, opt: str | None) -> int:
        if not opt or opt == "-":
            return 1
        if opt.lower() == "a":
            self.sanity = self.poison = self.redzone = self.tracking = 1
            return 1
        for ch in opt:
            attr = {"f": "sanity", "p": "poison", "z": "redzone", "u": "tracking",
                    "t": "tracing"}.get(ch.lower())
            if attr is None or getattr(self, attr):
                return 0
            setattr(self, attr, 1)
        return 1

    def slab_empty(self, s) -> int:
        if s.objects > 0:
            return 0
        if s.slabs != 0:
            self.set_obj(s, "shrink", 1)
        return 1

    def slab_debug(self, s):
        if s.name == "*":
            return
        e = self.err.write
        if self.sanity and not s.sanity_checks:
            self.set_obj(s, "sanity_checks", 1)
        if not self.sanity and s.sanity_checks:
            if self.slab_empty(s):
                self.set_obj(s, "sanity_checks", 0)
            else:
                e(f"{s.name} not empty cannot disable sanity checks\n")
        if self.redzone and not s.red_zone:
            if self.slab_empty(s):
                self.set_obj(s, "red_zone", 1)
            else:
                e(f"{s.name} not empty cannot enable redzoning\n")
        if not self.redzone and s.red_zone:
            if self.slab_empty(s):
                self.set_obj(s, "red_zone", 0)
            else:
                e(f"{s.name} not empty cannot disable redzoning\n")
        if self.poison and not s.poison:
            if self.slab_empty(s):
                self.set_obj(s, "poison", 1)
            else:
                e(f"{s.name} not empty cannot enable poisoning\n")
        if not self.poison and s.poison:
            if self.slab_empty(s):
                self.set_obj(s, "poison", 0)
            else:
                e(f"{s.name} not empty cannot disable poisoning\n")
        if self.tracking and not s.store_user:
            if self.slab_empty(s):
                self.set_obj(s, "store_user", 1)
            else:
                e(f"{s.name} not empty cannot enable tracking\n")
        if not self.tracking and s.store_user:
            if self.slab_empty(s):
                self.set_obj(s, "store_user", 0)
            else:
                e(f"{s.name} not empty cannot disable tracking\n")
        if self.tracing and not s.trace:
            if self.slabs == 1:
                self.set_obj(s, "trace", 1)
            else:
                e(f"{s.name} can only enable trace for one slab at a time\n")
        if not self.tracing and s.trace:
            self.set_obj(s, "trace", 1)

    # ---------------------------------------------------------------- totals
    def totals(self):
        used_slabs = 0
        big = 1 << 63
        mn = dict(objsize=big, partial=big, slabs=big, size=big, used=big, waste=big, objects=big,
                  objwaste=big, memobj=big, ppart=100, partobj=big, ppartobj=100)
        mx = dict.fromkeys(mn, 0)
        tot = dict(partial=0, slabs=0, size=0, used=0, waste=0, objects=0, objwaste=0, objsize=0,
                   ppart=0, partobj=0, ppartobj=0)
        for s in self.slabinfo[:self.slabs]:
            if not s.slabs or not s.objects:
                continue
            used_slabs += 1
            size = self.slab_size(s)
            used = s.objects * s.object_size
            wasted = (size - used) & _U64
            objwaste = s.slab_size - s.object_size
            pps = min(s.partial * 100 // s.slabs, 100)
            ppo = min(s.objects_partial * 100 // s.objects, 100)
            vals = dict(objsize=s.object_size, partial=s.partial, slabs=s.slabs, size=size,
                        waste=wasted, objwaste=objwaste, objects=s.objects, used=used,
                        partobj=s.objects_partial, ppart=pps, ppartobj=ppo, memobj=s.slab_size)
            for key, v in vals.items():
                if v < mn[key]:
                    mn[key] = v
                if v > mx[key]:
                    mx[key] = v
            tot["partial"] += s.partial
            tot["slabs"] += s.slabs
            tot["size"] += size
            tot["waste"] += wasted
            tot["objects"] += s.objects
            tot["used"] += used
            tot["partobj"] += s.objects_partial
            tot["ppart"] += pps
            tot["ppartobj"] += ppo
            tot["objwaste"] += s.objects * objwaste
            tot["objsize"] += s.objects * s.slab_size
        p = self.printf
        if not tot["objects"]:
            p("No objects\n")
            return
        if not used_slabs:
            p("No slabs\n")
            return
        avg_partial = tot["partial"] // used_slabs
        avg_slabs = tot["slabs"] // used_slabs
        avg_size = tot["size"] // used_slabs
        avg_waste = tot["waste"] // used_slabs
        avg_objects = tot["objects"] // used_slabs
        avg_used = tot["used"] // used_slabs
        avg_ppart = tot["ppart"] // used_slabs
        avg_ppartobj = tot["ppartobj"] // used_slabs
        avg_objsize = tot["used"] // tot["objects"]
        avg_objwaste = tot["objwaste"] // tot["objects"]
        avg_partobj = tot["partobj"] * 100 // tot["objects"]
        avg_memobj = tot["objsize"] // tot["objects"]
        ss = self.store_size
        p("Slabcache Totals\n")
        p("----------------\n")
        p("Slabcaches : %15d   Aliases  : %11d->%-3d  Active:    %3d\n"
          % (self.slabs, self.aliases, self.alias_targets, used_slabs))
        p("Memory used: %15s   # Loss   : %15s   MRatio:%6s%%\n"
          % (ss(tot["size"]), ss(tot["waste"]), ss(tot["waste"] * 100 // tot["used"])))
        p("# Objects  : %15s   # PartObj: %15s   ORatio:%6s%%\n"
          % (ss(tot["objects"]), ss(tot["partobj"]), ss(tot["partobj"] * 100 // tot["objects"])))
        p("\n")
        p("Per Cache         Average              Min              Max            Total\n")
        p("---------------------------------------------------------------------------\n")

        def row(label, a, b, c, d=None, pct=False):
            if pct:
                p("%s%15s%% %15s%% %15s%% %15s%%\n" % (label, ss(a), ss(b), ss(c), ss(d)))
            elif d is None:
                p("%s  %15s  %15s  %15s\n" % (label, ss(a), ss(b), ss(c)))
            else:
                p("%s  %15s  %15s  %15s  %15s\n" % (label, ss(a), ss(b), ss(c), ss(d)))
        row("#Objects", avg_objects, mn["objects"], mx["objects"], tot["objects"])
        row("#Slabs  ", avg_slabs, mn["slabs"], mx["slabs"], tot["slabs"])
        row("#PartSlab", avg_partial, mn["partial"], mx["partial"], tot["partial"])
        row("%PartSlab", avg_ppart, mn["ppart"], mx["ppart"],
            tot["partial"] * 100 // tot["slabs"], pct=True)
        row("PartObjs", avg_partobj, mn["partobj"], mx["partobj"], tot["partobj"])
        row("% PartObj", avg_ppartobj, mn["ppartobj"], mx["ppartobj"],
            tot["partobj"] * 100 // tot["objects"], pct=True)
        row("Memory  ", avg_size, mn["size"], mx["size"], tot["size"])
        row("Used    ", avg_used, mn["used"], mx["used"], tot["used"])
        row("Loss    ", avg_waste, mn["waste"], mx["waste"], tot["waste"])
        p("\n")
        p("Per Object        Average              Min              Max\n")
        p("-----------------------------------------------------------\n")
        row("Memory  ", avg_memobj, mn["memobj"], mx["memobj"])
        row("User    ", avg_objsize, mn["objsize"], mx["objsize"])
        row("Loss    ", avg_objwaste, mn["objwaste"], mx["objwaste"])

    # ---------------------------------------------------------------- sorting and aliases
    def sort_slabs(self):
        a = self.slabinfo
        n = self.slabs
        for i in range(n):
            for j in range(i + 1, n):
                s1, s2 = a[i], a[j]
                if self.sort_size:
                    result = 1 if self.slab_size(s1) < self.slab_size(s2) else 0
                elif self.sort_active:
                    result = 1 if self.slab_activity(s1) < self.slab_activity(s2) else 0
                elif self.sort_loss:
                    result = 1 if self.slab_waste(s1) < self.slab_waste(s2) else 0
                elif self.sort_partial:
                    result = 1 if s1.partial < s2.partial else 0
                else:
                    x, y = s1.name.lower(), s2.name.lower()
                    result = (x > y) - (x < y)
                if self.show_inverted:
                    result = -result
                if result > 0:
                    a[i], a[j] = a[j], a[i]

    def sort_aliases(self):
        a = self.aliasinfo
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                n1, n2 = a[i].name, a[j].name
                if self.show_alias and not self.show_inverted:
                    n1, n2 = a[i].ref, a[j].ref
                if n1.lower() > n2.lower():
                    a[i], a[j] = a[j], a[i]

    def link_slabs(self):
        for a in self.aliasinfo:
            for s in self.slabinfo[:self.slabs]:
                if a.ref == s.name:
                    a.slab = s
                    s.refs += 1
                    break
            else:
                self.fatal(f"Unresolved alias {a.ref}\n")

    def alias(self):
        self.sort_aliases()
        self.link_slabs()
        active = None
        for a in self.aliasinfo:
            if not self.show_single_ref and a.slab.refs == 1:
                continue
            if not self.show_inverted:
                if active is not None and a.slab.name == active:
                    self.printf(f" {a.name}")
                    continue
                self.printf("\n%-12s <- %s" % (a.slab.name, a.name))
                active = a.slab.name
            else:
                self.printf("%-15s -> %s\n" % (a.name, a.slab.name))
        if active is not None:
            self.printf("\n")

    def rename_slabs(self):
        for s in self.slabinfo[:self.slabs]:
            if not s.name.startswith(":"):
                continue
            if s.refs > 1 and not self.show_first_alias:
                continue
            a = self.find_one_alias(s)
            if a is not None:
                s.name = a.name
            else:
                s.name = "*"
                self.actual_slabs -= 1

    def slab_mismatch(self, name: str) -> bool:
        return self.pattern.search(name) is None

    def read_slab_dir(self):
        from ..fs.slabinfo import sys_kernel_slab_entries
        try:
            entries = sys_kernel_slab_entries(self.k)
        except Errno:
            self.fatal("SYSFS support for SLUB not active\n")
        for name, typ, target in entries:
            if name.startswith(".") or (not name.startswith(":") and self.slab_mismatch(name)):
                continue
            if typ == "link":
                p = target.rsplit("/", 1)[-1]
                self.aliasinfo.append(_Alias(name, p))
                continue
            s = _Slab()
            s.name = name
            d = f"{ROOT}/{name}/"
            for f in _FIELDS:
                if f in ("partial", "slabs"):
                    continue
                setattr(s, f, self.get_obj(d + f))
            s.partial, t = self.get_obj_and_str(d + "partial")
            s.numa_partial = self.decode_numa_list(t)
            s.slabs, t = self.get_obj_and_str(d + "slabs")
            s.numa = self.decode_numa_list(t)
            if name.startswith(":"):
                self.alias_targets += 1
            self.slabinfo.append(s)
        self.slabs = len(self.slabinfo)
        self.actual_slabs = self.slabs
        self.aliases = len(self.aliasinfo)
        if self.slabs > MAX_SLABS:
            self.fatal("Too many slabs\n")
        if self.aliases > MAX_ALIASES:
            self.fatal("Too many aliases\n")

    def output_slabs(self):
        lines = self.output_lines
        for s in self.slabinfo[:self.slabs]:
            if lines == 0:
                break
            if s.alias:
                continue
            if lines != -1:
                lines -= 1
            if self.show_numa:
                self.slab_numa(s, 0)
            elif self.show_track:
                self.show_tracking(s)
            elif self.validate:
                self.slab_validate(s)
            elif self.shrink:
                self.slab_shrink(s)
            elif self.set_debug:
                self.slab_debug(s)
            elif self.show_ops:
                self.ops(s)
            elif self.show_slab:
                self.slabcache(s)
            elif self.show_report:
                self.report(s)

    def _xtotals(self, heading, underline, loss, size, partial):
        self.printf(heading + underline)
        self.line = 0
        self.sort_loss, self.sort_size, self.sort_partial = loss, size, partial
        self.sort_slabs()
        self.output_slabs()

    def xtotals(self):
        self.totals()
        self.link_slabs()
        self.rename_slabs()
        self._xtotals("\nSlabs sorted by size\n", "--------------------\n", 0, 1, 0)
        self._xtotals("\nSlabs sorted by loss\n", "--------------------\n", 1, 0, 0)
        self._xtotals("\nSlabs sorted by number of partial slabs\n",
                      "---------------------------------------\n", 0, 0, 1)
        self.printf("\n")

    # ---------------------------------------------------------------- getopt_long
    def getopt(self, argv: list[str]):
        """GNU getopt_long(argc, argv, SHORT_OPTS, opts): [(opt, arg)], operands."""
        opts, operands = [], []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                operands.extend(argv[i + 1:])
                break
            if arg.startswith("--"):
                name, eq, val = arg[2:].partition("=")
                exact = [o for o in LONG_OPTS if o[0] == name]
                cands = exact or [o for o in LONG_OPTS if o[0].startswith(name)]
                if len(cands) != 1:
                    kind = "unrecognized" if not cands else "ambiguous"
                    self.err.write(f"slabinfo: option '--{name}' is {kind}\n" if kind == "ambiguous"
                                   else f"slabinfo: unrecognized option '--{name}'\n")
                    opts.append(("?", "\0"))
                    i += 1
                    continue
                lname, has_arg, ch = cands[0]
                if has_arg == 0 and eq:
                    self.err.write(f"slabinfo: option '--{lname}' doesn't allow an argument\n")
                    opts.append(("?", "\0"))
                elif has_arg == 1 and not eq:
                    if i + 1 < len(argv):
                        opts.append((ch, argv[i + 1]))
                        i += 1
                    else:
                        self.err.write(f"slabinfo: option '--{lname}' requires an argument\n")
                        opts.append(("?", "\0"))
                else:
                    opts.append((ch, val if eq else None))
                i += 1
                continue
            if arg.startswith("-") and len(arg) > 1:
                j = 1
                while j < len(arg):
                    ch = arg[j]
                    pos = SHORT_OPTS.find(ch) if ch != ":" else -1
                    if pos < 0:
                        self.err.write(f"slabinfo: invalid option -- '{ch}'\n")
                        opts.append(("?", ch))
                        j += 1
                        continue
                    spec = SHORT_OPTS[pos + 1:pos + 3]
                    if spec.startswith("::"):
                        opts.append((ch, arg[j + 1:] or None))
                        break
                    if spec.startswith(":"):
                        if arg[j + 1:]:
                            opts.append((ch, arg[j + 1:]))
                        elif i + 1 < len(argv):
                            opts.append((ch, argv[i + 1]))
                            i += 1
                        else:
                            self.err.write(f"slabinfo: option requires an argument -- '{ch}'\n")
                            opts.append(("?", ch))
                        break
                    opts.append((ch, None))
                    j += 1
                i += 1
                continue
            operands.append(arg)
            i += 1
        return opts, operands

    def run(self, argv: list[str]) -> int:
        opts, operands = self.getopt(argv)
        for c, optarg in opts:
            if c == "a":
                self.show_alias = 1
            elif c == "A":
                self.sort_active = 1
            elif c == "B":
                self.show_bytes = 1
            elif c == "d":
                self.set_debug = 1
                if not self.debug_opt_scan(optarg):
                    self.fatal(f"Invalid debug option '{optarg}'\n")
            elif c == "D":
                self.show_activity = 1
            elif c == "e":
                self.show_empty = 1
            elif c == "f":
                self.show_first_alias = 1
            elif c == "h":
                self.printf(USAGE)
                return 0
            elif c == "i":
                self.show_inverted = 1
            elif c == "l":
                self.show_slab = 1
            elif c == "L":
                self.sort_loss = 1
            elif c == "n":
                self.show_numa = 1
            elif c == "N":
                if optarg:
                    m = re.match(r"\s*[+-]?\d+", optarg)
                    self.output_lines = int(m.group(0)) if m else 0
                    if self.output_lines < 1:
                        self.output_lines = 1
            elif c == "o":
                self.show_ops = 1
            elif c == "r":
                self.show_report = 1
            elif c == "P":
                self.sort_partial = 1
            elif c == "s":
                self.shrink = 1
            elif c == "S":
                self.sort_size = 1
            elif c == "t":
                self.show_track = 1
            elif c == "T":
                self.show_totals = 1
            elif c == "U":
                self.unreclaim_only = 1
            elif c == "v":
                self.validate = 1
            elif c == "X":
                if self.output_lines == -1:
                    self.output_lines = 1
                self.extended_totals = 1
                self.show_bytes = 1
            elif c == "z":
                self.skip_zero = 0
            elif c == "1":
                self.show_single_ref = 1
            else:
                optopt = optarg if c == "?" and optarg and optarg != "\0" else "\0"
                self.fatal(f"slabinfo: Invalid option '{optopt}'\n")
        if not (self.show_slab or self.show_alias or self.show_track or self.show_report
                or self.validate or self.shrink or self.set_debug or self.show_ops):
            self.show_slab = 1
        pattern_source = operands[0] if operands else ".*"
        try:
            self.pattern = re.compile(bre_to_python(pattern_source), re.IGNORECASE)
        except re.error:
            self.fatal(f"slabinfo: Invalid pattern '{pattern_source}' code 1\n")
        self.read_slab_dir()
        if self.show_alias:
            self.alias()
        elif self.extended_totals:
            self.xtotals()
        elif self.show_totals:
            self.totals()
        else:
            self.link_slabs()
            self.rename_slabs()
            self.sort_slabs()
            self.output_slabs()
        return 0


def main(argv: list[str] | None = None, k=None, out=None, err=None) -> int:
    """Run slabinfo with argv (without the program name) against kernel k."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    machine = {}
    while argv and re.match(r"--(ram|cpus|cmdline)=", argv[0]):
        key, _, val = argv.pop(0)[2:].partition("=")
        machine[key] = val
    if k is None:
        from ..config import MachineConfig
        from ..kernel import Kernel
        k = Kernel(MachineConfig(ram=machine.get("ram", "256M"), cpus=int(machine.get("cpus", 1)),
                                 cmdline=machine.get("cmdline", "")))
    from ..mm.slub import get_slub
    get_slub(k)
    tool = SlabInfo(k, out, err)
    try:
        return tool.run(argv)
    except _Fatal:
        return 1


if __name__ == "__main__":
    sys.exit(main())
