"""Plain-text replay report."""
from __future__ import annotations


def _parse_kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _deltas(before: str, after: str) -> list[tuple[str, int, int]]:
    b, a = _parse_kv(before), _parse_kv(after)
    return [(key, b.get(key, 0), a[key]) for key in a if a[key] != b.get(key, 0)]


def sparkline(values: list[int], width: int = 50) -> str:
    if not values:
        return ""
    ticks = " .:-=+*#%@"
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    hi = max(values) or 1
    return "".join(ticks[min(len(ticks) - 1, v * (len(ticks) - 1) // hi)] for v in values)


def replay_report(res, ram_desc: str) -> str:
    tr = res.trace
    lines = [f"linmm replay of {tr.source or 'trace'} on a {ram_desc} machine", ""]
    lines.append(f"accesses replayed   {res.accesses:,} of {len(tr):,} "
                 f"({int(tr.writes[:res.accesses].sum()):,} writes) in {res.seconds:.2f} s")
    lines.append(f"distinct pages      {len(tr.pages()):,}")
    lines.append(f"minor faults        {res.faults - res.major_faults:,}")
    lines.append(f"major faults        {res.major_faults:,}")
    lines.append(f"RSS peak            {res.rss_peak_kb:,} kB")
    lines.append(f"RSS timeline        |{sparkline([r for _, r in res.rss_timeline])}|")
    if res.signal is not None:
        lines.append(f"stopped by          {res.signal}")
    lines.append("")
    lines.append(f"address ranges mapped as a loader would have (private anonymous, rwx): "
                 f"{len(res.regions)}")
    for s, e in res.regions[:12]:
        lines.append(f"  {s:#014x}-{e:#014x}  {(e - s) >> 10:>8,} kB")
    if len(res.regions) > 12:
        lines.append(f"  ... and {len(res.regions) - 12} more")
    for title, b, a in (("/proc/meminfo changes", res.meminfo_before, res.meminfo_after),
                        ("/proc/vmstat changes", res.vmstat_before, res.vmstat_after)):
        lines.append("")
        lines.append(title)
        for key, vb, va in _deltas(b, a):
            lines.append(f"  {key:<28}{vb:>14,} -> {va:>14,}  ({va - vb:+,})")
    return "\n".join(lines) + "\n"
