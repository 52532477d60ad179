"""MachineConfig: the simulated machine (memory-model.md "State to model")."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
           "E": 1 << 60}


def parse_size(value: Any, what: str = "size") -> int:
    """Bytes from an int or a string like "512M", "4G", "4096"."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{what}: negative size {value}")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMGTPE]?)i?B?\s*", value, re.IGNORECASE)
        if m:
            return int(m.group(1)) * _SUFFIX[m.group(2).upper()]
    raise ConfigError(f"{what}: cannot parse size {value!r} (use bytes or e.g. '512M', '4G')")


def memparse(text: str) -> tuple[int, str]:
    """The kernel's memparse(): number (base 0) with an optional K/M/G/T/P/E suffix.

    Returns (value, rest): parsing stops at the first character it cannot use.
    """
    m = re.match(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return 0, text
    val = int(m.group(1), 0)
    rest = text[m.end():]
    if rest[:1].upper() in ("K", "M", "G", "T", "P", "E") and rest[:1]:
        val *= _SUFFIX[rest[0].upper()]
        rest = rest[1:]
    return val, rest


def parse_cmdline(cmdline: str) -> dict[str, str | None]:
    """Boot parameters as a dict; a bare word maps to None."""
    out: dict[str, str | None] = {}
    for tok in cmdline.split():
        k, eq, v = tok.partition("=")
        out[k] = v if eq else None
    return out


_ARCHES = ("x86_64", "i386", "i386-pae")
_MODELS = ("sparsemem-vmemmap", "sparsemem", "flatmem", "discontigmem")
_ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
_ZONE_NAMES_32 = ("DMA", "Normal", "HighMem", "Movable")


@dataclass
class MachineConfig:
    """A machine to boot. Sizes are bytes or strings such as "512M" / "4G".

    ``zones={...}`` (or ``nodes=[{"zones": {...}}, ...]``) gives an explicit
    layout with managed == present; otherwise the "vm" layout (the e820 map a
    KVM guest gets) is derived from ``ram``.
    """

    ram: Any = "1G"
    nodes: Any = 1
    cpus: int = 1
    memory_model: str | None = None  # x86_64: "sparsemem-vmemmap", i386: "flatmem"
    arch: str = "x86_64"
    five_level: bool = False
    phys_bits: int = 46
    kernel_image: Any = "32M"
    cmdline: str = ""
    kconfig: dict = field(default_factory=dict)
    zones: dict | None = None
    layout: Any = "vm"
    thp: str | None = None
    debug_vm: bool = True
    split_rss_counting: bool = False
    lru_pagevecs: bool = False
    trace_mm: bool = False
    swap: Any = None
    seed: int = 0
    atomic_sleep_check: str = "strict"  # or "log" (CONFIG_DEBUG_ATOMIC_SLEEP: log, don't raise)

    def __post_init__(self) -> None:
        if self.arch not in _ARCHES:
            raise ConfigError(f"arch: unknown architecture {self.arch!r} (one of {', '.join(_ARCHES)})")
        if self.memory_model is None:
            self.memory_model = "sparsemem-vmemmap" if self.arch == "x86_64" else "flatmem"
        if self.memory_model not in _MODELS:
            raise ConfigError(f"memory_model: unknown {self.memory_model!r} (one of {', '.join(_MODELS)})")
        if self.is_32bit and self.memory_model != "flatmem":
            why = "needs a 64-bit kernel" if self.memory_model == "sparsemem-vmemmap" else \
                "is not modelled on i386 (its sections are 64 MiB)"
            raise ConfigError(f"memory_model: {self.memory_model!r} {why}; i386 uses 'flatmem'")
        if self.atomic_sleep_check not in ("strict", "log"):
            raise ConfigError(f"atomic_sleep_check: 'strict' or 'log', got {self.atomic_sleep_check!r}")
        if not isinstance(self.cpus, int) or self.cpus < 1:
            raise ConfigError(f"cpus: must be a positive integer, got {self.cpus!r}")
        if not isinstance(self.cmdline, str):
            raise ConfigError("cmdline: must be a string")
        if not isinstance(self.kconfig, dict):
            raise ConfigError("kconfig: must be a dict of CONFIG_ names")
        self.kernel_image_bytes = parse_size(self.kernel_image, "kernel_image")
        if self.kernel_image_bytes % (1 << 21) or not self.kernel_image_bytes:
            raise ConfigError("kernel_image: must be a positive multiple of 2M")
        self.params = parse_cmdline(self.cmdline)
        if self.params.get("kernelcore") == "mirror":
            raise ConfigError("cmdline: kernelcore=mirror needs mirrored memory, which the model has none of")
        if self.thp is None:
            self.thp = self.params.get("transparent_hugepage") or "never"
        if self.thp not in ("always", "madvise", "never"):
            raise ConfigError(f"thp: must be 'always', 'madvise' or 'never', got {self.thp!r}")
        self.explicit = self.zones is not None or isinstance(self.nodes, list)
        if self.explicit:
            self._check_explicit()
            self.ram_bytes = sum(sum(z.values()) for z in self.node_zones)
        else:
            self.ram_bytes = parse_size(self.ram, "ram")
            if self.ram_bytes % 4096:
                raise ConfigError(f"ram: {self.ram_bytes} is not a multiple of 4096")
            if self.ram_bytes < 64 << 20:
                raise ConfigError(f"ram: {self.ram_bytes} bytes is below the 64M minimum")
            if not isinstance(self.nodes, int) or isinstance(self.nodes, bool) or self.nodes < 1:
                raise ConfigError(f"nodes: must be a positive integer or a list of nodes, got {self.nodes!r}")
            if self.layout != "vm":
                raise ConfigError("layout: only 'vm' (the default) is supported yet")
        if self.arch == "i386":
            pass  # RAM above 4 GiB is simply not used (MAX_ARCH_PFN)
        elif self.ram_bytes + (1 << 30) > 1 << self.max_physmem_bits:
            raise ConfigError(f"ram: more than 2^{self.max_physmem_bits} bytes")
        from .mm.memory_model import build_layout
        build_layout(self)  # every layout error (e.g. more nodes than sections) surfaces here
        if self.swap is not None:
            self.swap_bytes = parse_size(self.swap, "swap")
        else:
            self.swap_bytes = 0

    @property
    def max_physmem_bits(self) -> int:
        return {"i386": 32, "i386-pae": 36}.get(self.arch, 52 if self.five_level else 46)

    @property
    def is_32bit(self) -> bool:
        return self.arch != "x86_64"

    @property
    def struct_page_size(self) -> int:
        return 32 if self.is_32bit else 64

    @property
    def nr_nodes(self) -> int:
        return len(self.node_zones) if self.explicit else self.nodes

    def _check_explicit(self) -> None:
        if isinstance(self.nodes, list):
            if self.zones is not None:
                raise ConfigError("zones: give either zones= or nodes=[{...}], not both")
            specs = self.nodes
            if not specs:
                raise ConfigError("nodes: the node list is empty")
        else:
            if self.nodes != 1:
                raise ConfigError("nodes: with zones= give nodes=[{'zones': ...}, ...] for several nodes")
            specs = [{"zones": self.zones}]
        self.node_zones = []
        self.node_cpus = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or not isinstance(spec.get("zones"), dict):
                raise ConfigError(f"nodes[{i}]: expected a dict with a 'zones' dict")
            zs = {}
            for name, size in spec["zones"].items():
                names = _ZONE_NAMES_32 if self.is_32bit else _ZONE_NAMES
                if name not in names:
                    raise ConfigError(f"zones.{name}: unknown zone (one of {', '.join(names)})")
                b = parse_size(size, f"zones.{name}")
                if b % 4096:
                    raise ConfigError(f"zones.{name}: {b} is not a multiple of 4096")
                zs[name] = b
            dma_max = 4096 if self.is_32bit else 4095
            if zs.get("DMA", 0) > dma_max * 4096:
                raise ConfigError(f"zones.DMA: larger than its window ({dma_max} pages)")
            if self.is_32bit and zs.get("Normal", 0) > (229376 - 4096) * 4096:
                raise ConfigError("zones.Normal: larger than lowmem (225280 pages above DMA)")
            if zs.get("DMA32", 0) > 1044480 * 4096:
                raise ConfigError("zones.DMA32: larger than its window (1044480 pages)")
            if i > 0 and (zs.get("DMA") or zs.get("DMA32")):
                raise ConfigError(f"nodes[{i}]: only the first node may have DMA/DMA32 in an explicit layout")
            self.node_zones.append(zs)
            self.node_cpus.append(spec.get("cpus"))
        if sum(sum(z.values()) for z in self.node_zones) < 4096 * 16:
            raise ConfigError("zones: the machine needs at least 64K of RAM")
