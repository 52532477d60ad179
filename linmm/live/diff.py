"""`linmm diff [SCENARIO...] [--model-only]`: the scenario catalogue on the model and on
this machine's kernel, side by side.

    python -m linmm.live.diff                      # whole catalogue, both sides (root)
    python -m linmm.live.diff mlock_gap_enomem     # one scenario (or a group: faults, mlock ...)
    python -m linmm.live.diff --model-only         # no root: the model against the live
                                                   # observations recorded in
                                                   # linmm/scenarios/reference.py
    python -m linmm.live.diff --list

Exit status: 0 when every difference is declared expected, 1 on an unexpected one
(or a scenario that failed on either side), 2 on usage errors and when live mode
is unavailable without --model-only.
"""
from __future__ import annotations

import argparse
import json
import pprint
import sys
import textwrap


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v if v else "''"
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else repr(v)


def _print_result(r, out, verbose: bool) -> None:
    """One scenario: a header with the verdict, then one row per observation:
    "  key  model  live" with "=" for a live value equal to the model's, "!" marking an
    unexpected difference and "~" an expected one (with its reason)."""
    sc = r.scenario
    verdict = {"agree": "agree", "expected": "expected differences", "unexpected": "UNEXPECTED"}[r.verdict]
    right = "live (recorded)" if r.reference else "live"
    print(f"== {sc.name} [{sc.group}]: {verdict}", file=out)
    if verbose:
        print(textwrap.indent(textwrap.fill(sc.description, 92), "   "), file=out)
    for side, s in (("model", r.model), (right, r.live)):
        if s is not None and s.error is not None:
            print(f"   {side} side FAILED:", file=out)
            print(textwrap.indent(s.error.rstrip(), "     | "), file=out)
    if r.live is None and r.model.error is None:
        print("   (model side only)", file=out)
    if r.attempts > 1:
        print(f"   (live side run {r.attempts} times: it reads host-wide counters that other "
              f"processes moved meanwhile)", file=out)
    if not r.rows:
        return
    w = min(max(max(len(row[1]) for row in r.rows), 11), 36)
    cw = 26
    print(f"     {'observation':<{w}}  {'model':<{cw}}  {right if r.live is not None else ''}", file=out)
    for mark, key, mv, lv, note in r.rows:
        ms, ls = _fmt(mv), _fmt(lv)
        if mark == " ":
            if r.live is None:
                ls = ""
            else:
                ls = "="
            if not verbose and len(ms) > 96 - w:
                ms = ms[:93 - w] + "..."
            if len(ms) <= cw:
                print(f"   {mark} {key:<{w}}  {ms:<{cw}}  {ls}".rstrip(), file=out)
            else:
                print(f"   {mark} {key:<{w}}  {ms}  {ls}".rstrip(), file=out)
        elif len(ms) <= cw and len(ls) <= 60:
            print(f"   {mark} {key:<{w}}  {ms:<{cw}}  {ls}", file=out)
        else:
            print(f"   {mark} {key:<{w}}", file=out)
            print(f"       model: {ms}", file=out)
            print(f"       {right}: {ls}", file=out)
        if note:
            print(textwrap.indent(textwrap.fill(note, 88), "       "), file=out)


def main_diff(argv: list[str]) -> int:
    from ..scenarios import CATALOGUE, run_both, select
    p = argparse.ArgumentParser(prog="linmm diff",
                                description="Run scenarios on the model and on this machine's kernel "
                                            "and compare the observations.")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="scenario names or groups (default: the whole catalogue)")
    p.add_argument("--model-only", action="store_true",
                   help="run the model side only and compare with the recorded live observations")
    p.add_argument("--list", action="store_true", help="list the catalogue and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="descriptions and full values")
    p.add_argument("--record-reference", metavar="PATH",
                   help="write the live observations as a reference module (maintainers)")
    args = p.parse_args(argv)
    out = sys.stdout
    if args.list:
        for sc in CATALOGUE.values():
            flags = "".join([" [root]" if sc.needs_root else "",
                             " [model only]" if sc.model_only else "",
                             f" [{len(sc.expected_differences)} expected]"
                             if sc.expected_differences else ""])
            print(f"{sc.name:<40} {sc.group:<10}{flags}", file=out)
        print(f"{len(CATALOGUE)} scenarios", file=out)
        return 0
    try:
        chosen = select(args.scenarios)
    except KeyError as e:
        print(f"linmm diff: no scenario or group {e.args[0]!r} (see --list)", file=sys.stderr)
        return 2
    live_ok = False
    if not args.model_only:
        from . import unavailable_reason
        reason = unavailable_reason()
        if reason is not None:
            print(f"linmm diff: {reason}", file=sys.stderr)
            return 2
        live_ok = True
    reference = {}
    if args.model_only:
        try:
            from ..scenarios.reference import LIVE_REFERENCE
            reference = LIVE_REFERENCE
        except ImportError:
            reference = {}
    counts = {"agree": 0, "expected": 0, "unexpected": 0}
    recorded = {}
    for sc in chosen:
        if live_ok:
            r = run_both(sc)
            if r.live is not None and r.live.error is None:
                recorded[sc.name] = r.live.obs
        else:
            r = run_both(sc, live=False, reference=reference.get(sc.name))
        counts[r.verdict] += 1
        _print_result(r, out, args.verbose)
        out.flush()
    if args.record_reference and recorded:
        import platform
        with open(args.record_reference, "w") as f:
            f.write('"""Live observations recorded by `python -m linmm.live.diff --record-reference` on\n'
                    f'Linux {platform.release()} ({platform.machine()}); `linmm diff --model-only` compares\n'
                    'the model with them on machines where live mode is unavailable."""\n')
            f.write(f"KERNEL = {platform.release()!r}\n")
            f.write("LIVE_REFERENCE = " + pprint.pformat(
                {n: {"obs": o} for n, o in recorded.items()}, width=100, sort_dicts=False) + "\n")
    n = sum(counts.values())
    print(f"{n} scenarios: {counts['agree']} agree, {counts['expected']} expected differences, "
          f"{counts['unexpected']} unexpected", file=out)
    return 1 if counts["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main_diff(sys.argv[1:]))
