"""lib/bitmap.c: the "%*pbl" list format."""
from __future__ import annotations

from collections.abc import Iterable


def bitmap_list(bits: Iterable[int]) -> str:
    """Set bits as ranges, e.g. "0-3,5" (bitmap_print_to_pagebuf with list=true)."""
    bits = sorted(bits)
    out = []
    i = 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        out.append(str(bits[i]) if i == j else f"{bits[i]}-{bits[j]}")
        i = j + 1
    return ",".join(out)
