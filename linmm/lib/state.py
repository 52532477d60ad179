"""Per-kernel state of a subsystem that is set up on first use."""
from __future__ import annotations


def kernel_state(k, attr: str, cls):
    """k.<attr>, created as cls(k) the first time (or when something else sits there)."""
    st = getattr(k, attr, None)
    if not isinstance(st, cls):
        st = cls(k)
        setattr(k, attr, st)
    return st
