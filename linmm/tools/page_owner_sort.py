"""tools/vm/page_owner_sort.c (v5.7): count identical page_owner records.

    python -m linmm.tools.page_owner_sort <input> <output>

Reads blocks separated by an empty line (the v5.7 tool does not drop the
"PFN" lines itself: run ``grep -v ^PFN`` first, as Documentation/vm/page_owner.rst
says), counts identical blocks, and writes ``"%d times:\\n%s\\n"`` per distinct
block, most frequent first.  Byte-exact with the C tool: the same stdout
("loaded %d", "sorting ....", "culling"), the same "max_size too small??"
limit (input size / 100 distinct blocks), the same usage error.
"""
from __future__ import annotations

import os
import sys

BUF_SIZE = 128 * 1024


def _read_blocks(data: bytes):
    """read_block() until EOF: a block is its lines (with '\\n') up to an empty
    line; a last block without a terminating empty line is dropped, and so is
    everything from a block that would not fit the 128 KiB buffer."""
    cur: list[bytes] = []
    size = 0
    pos = 0
    while pos < len(data):  # fgets(): up to and including '\n'
        j = data.find(b"\n", pos)
        line = data[pos:] if j < 0 else data[pos:j + 1]
        pos += len(line)
        if line[:1] == b"\n":
            yield b"".join(cur)
            cur, size = [], 0
            continue
        if size + len(line) >= BUF_SIZE - 1:
            return
        cur.append(line)
        size += len(line)


def sort_blocks(data: bytes) -> tuple[bytes, str]:
    """(output file bytes, stdout text); raises SystemExit(1) like the tool."""
    stdout = []
    max_size = len(data) // 100
    lst: list[list] = []  # [txt, num]
    for blk in _read_blocks(data):
        if lst and lst[-1][0] == blk:
            lst[-1][1] += 1
            continue
        if len(lst) == max_size:
            stdout.append("max_size too small??\n")
            raise SystemExit(1, "".join(stdout))
        lst.append([blk, 1])
        if len(lst) % 1000 == 0:
            stdout.append(f"loaded {len(lst)}\r")
    stdout.append(f"loaded {len(lst)}\n")
    stdout.append("sorting ....\n")
    lst.sort(key=lambda e: e[0])  # qsort by strcmp
    stdout.append("culling\n")
    merged: list[list] = []
    for txt, num in lst:
        if merged and merged[-1][0] == txt:
            merged[-1][1] += num
        else:
            merged.append([txt, num])
    merged.sort(key=lambda e: -e[1])
    body = b"".join(b"%d times:\n" % num + txt + b"\n" for txt, num in merged)
    return body, "".join(stdout)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        sys.stdout.write("Usage: ./program <input> <output>\n")
        sys.stdout.flush()
        sys.stderr.write("open: : Success\n")
        return 1
    fin = fout = None
    err = None
    try:
        fin = open(argv[0], "rb")  # noqa: SIM115 - both opened first, as the C tool does
    except OSError as e:
        err = e
    try:
        fout = open(argv[1], "wb")  # noqa: SIM115
    except OSError as e:
        err = err or e
    if fin is None or fout is None:
        sys.stdout.write("Usage: ./program <input> <output>\n")
        sys.stdout.flush()
        sys.stderr.write(f"open: : {os.strerror(err.errno) if err and err.errno else 'Success'}\n")
        for f in (fin, fout):
            if f is not None:
                f.close()
        return 1
    with fin, fout:
        data = fin.read()
        try:
            body, text = sort_blocks(data)
        except SystemExit as e:
            sys.stdout.write(e.args[1] if len(e.args) > 1 else "")
            return 1
        sys.stdout.write(text)
        fout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
