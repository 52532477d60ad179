"""The `linmm` command: demo, replay, record."""
from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from .config import MachineConfig
from .errors import ConfigError


def _kernel(args):
    from .kernel import Kernel
    return Kernel(MachineConfig(ram=args.ram, cpus=args.cpus, cmdline=args.cmdline))


def _replay(args, path: str) -> int:
    from .report.text import replay_report
    from .workload import TraceError, load_trace
    from .workload.replay import replay
    try:
        trace = load_trace(path)
    except (TraceError, OSError) as e:
        print(f"linmm: {e}", file=sys.stderr)
        return 2
    if args.limit:
        from .workload.trace import Trace
        trace = Trace(trace.addresses[:args.limit], trace.writes[:args.limit],
                      trace.kinds[:args.limit], trace.source)
    k = _kernel(args)
    res = replay(k, trace, progress=args.progress)
    sys.stdout.write(replay_report(res, args.ram))
    return 0


def cmd_demo(args) -> int:
    path = resources.files("linmm") / "data" / "demo.npz"
    with resources.as_file(path) as p:
        return _replay(args, str(p))


def cmd_replay(args) -> int:
    return _replay(args, args.trace)


def cmd_synth(args) -> int:
    from .report.text import replay_report
    from .workload import sequential, uniform, zipf
    from .workload.replay import replay
    from .workload.scenarios import fork_and_write
    k = _kernel(args)
    if args.kind == "fork-and-write":
        r = fork_and_write(k, pages=args.pages, children=args.children, seed=args.seed)
        print(f"fork-and-write: {r.pages} pages, {r.children} children")
        print(f"  parent first-touch faults  {r.parent_faults}")
        print(f"  child COW faults           {', '.join(map(str, r.child_faults))}")
        print(f"  pages copied on write      {r.cow_copies}")
        print(f"  parent data intact         {'yes' if r.checksum_ok else 'NO'}")
        return 0 if r.checksum_ok else 1
    length = args.pages << 12
    gen = {"sequential": lambda: sequential(args.n, length=length, write_ratio=0.3, seed=args.seed),
           "uniform": lambda: uniform(args.n, length=length, seed=args.seed),
           "zipf": lambda: zipf(args.n, length=length, seed=args.seed)}[args.kind]
    trace = gen()
    res = replay(k, trace, progress=args.progress)
    sys.stdout.write(replay_report(res, args.ram))
    return 0


def cmd_record(args) -> int:
    from .workload import RecordError, record
    cmd = args.command
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("linmm record: give the program to run after --", file=sys.stderr)
        return 2
    try:
        tr = record(cmd, args.output)
    except RecordError as e:
        print(f"linmm record: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(tr):,} accesses, {len(tr.pages()):,} pages")
    return 0


def cmd_diff(args) -> int:
    from .live.diff import main_diff
    return main_diff(args.diff_args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["page-owner-sort"]:  # tools/vm/page_owner_sort
        from .tools.page_owner_sort import main as pos_main
        return pos_main(argv[1:])
    if argv[:1] == ["slabinfo"]:  # tools/vm/slabinfo's own options
        from .tools.slabinfo import main as slabinfo_main
        return slabinfo_main(argv[1:])
    if argv[:1] == ["diff"]:  # its own options (--model-only, -v, --list)
        from .live.diff import main_diff
        try:
            return main_diff(argv[1:])
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    p = argparse.ArgumentParser(prog="linmm", description="The Linux v5.7 memory manager, modelled.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def machine_opts(sp):
        sp.add_argument("--ram", default="256M", help="RAM of the simulated machine (default 256M)")
        sp.add_argument("--cpus", type=int, default=1)
        sp.add_argument("--cmdline", default="", help="kernel command line")
        sp.add_argument("--limit", type=int, default=0, help="replay only the first N accesses")
        sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")
    sp = sub.add_parser("demo", help="replay the shipped trace of a real program (GNU sort)")
    machine_opts(sp)
    sp.set_defaults(fn=cmd_demo)
    sp = sub.add_parser("replay", help="replay a trace (lackey text, .npy, .npz)")
    sp.add_argument("trace")
    machine_opts(sp)
    sp.set_defaults(fn=cmd_replay)
    sp = sub.add_parser("synth", help="a synthetic workload: sequential, uniform, zipf, fork-and-write")
    sp.add_argument("kind", choices=["sequential", "uniform", "zipf", "fork-and-write"])
    sp.add_argument("--n", type=int, default=1_000_000, help="accesses (trace kinds)")
    sp.add_argument("--pages", type=int, default=4096, help="working-set size in pages")
    sp.add_argument("--children", type=int, default=4, help="fork-and-write: children")
    sp.add_argument("--seed", type=int, default=0)
    machine_opts(sp)
    sp.set_defaults(fn=cmd_synth)
    sp = sub.add_parser("record", help="record a program's memory trace with valgrind lackey")
    sp.add_argument("-o", "--output", default="trace.npz")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_record)
    sp = sub.add_parser("diff", help="run the scenario catalogue on the model and this machine's "
                                     "kernel and compare (see docs/LIVE.md)", add_help=False)
    sp.add_argument("diff_args", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_diff)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"linmm: config: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
