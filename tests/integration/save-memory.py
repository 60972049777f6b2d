#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/integration/save-memory.py — save what gcore would of a process's memory (as root).

Usage: save-memory.py [--stop] PID FILE

Writes to FILE the bytes of every mapping of PID that a core dump by gdb's gcore holds with
its default settings: every readable mapping except those the process excluded from dumps
(MADV_DONTDUMP, "dd" in /proc/PID/smaps VmFlags) and I/O or PFN mappings ("io", "pf": [vvar]
and device memory, which cannot be read). File-backed mappings are saved too (gcore's
coredump filter leaves out unmodified ones: this saves more, never less). Read through
/proc/PID/mem, which needs the right to ptrace PID (root's CAP_SYS_PTRACE).

gcore itself is no use on a sanitizer build: AddressSanitizer's shadow (terabytes of
reserved address space) makes it write tens of gigabytes before it ends. The shadow is
MADV_DONTDUMP, so it is left out here as a gcore honouring VmFlags would, and the rest takes
seconds. With --stop, PID is stopped (SIGSTOP) while it is read, then continued (SIGCONT),
so the saved memory is one moment's. FILE.map says where each mapping starts in FILE, one
line "OFFSET START-END PERMS [NAME]" per mapping (in FILE's order). Prints "N mappings, M bytes" on stdout; exits 1 when
nothing could be read.
"""
import os
import re
import signal
import sys
import time

CHUNK = 1 << 20          # bytes read at a time
STOP_WAIT = 5.0          # seconds to wait for PID to be stopped

HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def mappings(pid):
    """The (start, end, perms, name) of every mapping of pid a gcore would dump, from
    /proc/PID/smaps."""
    cur = None
    with open("/proc/%d/smaps" % pid) as smaps:
        for line in smaps:
            m = HEADER.match(line)
            if m:
                cur = (int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4))
            elif line.startswith("VmFlags:") and cur:
                flags = line.split()[1:]
                if cur[2][0] == "r" and not {"dd", "io", "pf"} & set(flags):
                    yield cur
                cur = None


def wait_stopped(pid):
    """Wait until pid is in the stopped state (T)."""
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise SystemExit("save-memory: pid %d did not stop" % pid)


def save(pid, out):
    """Copy the mappings to out, and where each went to out.map; returns (mappings, bytes)."""
    n = total = 0
    with open("/proc/%d/mem" % pid, "rb", 0) as mem, open(out, "wb") as core, open(out + ".map", "w") as where:
        for start, end, perms, name in mappings(pid):
            n += 1
            where.write("%d %x-%x %s %s\n" % (total, start, end, perms, name))
            for off in range(start, end, CHUNK):
                try:
                    mem.seek(off)
                    data = mem.read(min(CHUNK, end - off))
                except OSError:
                    continue
                core.write(data)
                total += len(data)
    return n, total


def main(argv):
    stop = len(argv) > 1 and argv[1] == "--stop"
    args = argv[2:] if stop else argv[1:]
    if len(args) != 2:
        raise SystemExit("usage: save-memory.py [--stop] PID FILE")
    pid = int(args[0])
    if stop:
        os.kill(pid, signal.SIGSTOP)
    try:
        if stop:
            wait_stopped(pid)
        n, total = save(pid, args[1])
    finally:
        if stop:
            os.kill(pid, signal.SIGCONT)
    print("%d mappings, %d bytes" % (n, total))
    return 0 if total > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
