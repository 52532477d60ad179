"""End-to-end: a task maps, writes, forks, COWs, unmaps and exits; bytes survive."""
import numpy as np

import linmm
from linmm import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE


def test_fork_cow_keeps_bytes(k):
    t = k.spawn("a")
    a = t.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    data = bytes(range(256)) * 16
    t.write(a, data)
    k.check()
    c = t.fork()
    k.check()
    c.write(a, b"CHILD")
    k.check()
    assert t.read(a, 4096) == data
    assert c.read(a, 5) == b"CHILD" and c.read(a + 5, 4091) == data[5:]
    c.exit()
    k.check()
    t.munmap(a, 1 << 20)
    k.check()
    t.exit()
    k.check()


def test_demo_trace_replays(k):
    from linmm.workload import load_trace
    from linmm.workload.replay import replay
    import importlib.resources as r
    with r.as_file(r.files("linmm") / "data" / "demo.npz") as p:
        tr = load_trace(str(p))
    res = replay(k, tr, progress=False)
    assert res.accesses == len(tr)
    assert res.faults >= len(tr.pages())
    k.check()
