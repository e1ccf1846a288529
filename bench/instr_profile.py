#!/usr/bin/env python3
"""Where the instructions of one request go: the per-function difference of the two callgrind
dumps that `make bench-instr` left for a subject and scenario (the W + 3N run minus the W + N
run, over 2N), so start-up and warm-up drop out as they do in the table.

    python3 bench/instr_profile.py [--inclusive] [--top 40] SLUG N
    e.g. python3 bench/instr_profile.py asyncloop-epoll-plaintext-pipelined-16 2000

SLUG names the dumps in build/bench/callgrind/ (SLUG.n.out.1 and SLUG.3n.out.1); N is the -n
of the run that made them (default 2000).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PROFILES = os.path.join(ROOT, "build", "bench", "callgrind")


def per_function(path, inclusive):
    argv = ["callgrind_annotate", "--auto=no", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", path]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            name = re.sub(r"^\S*?:(?=[^/])", "", m.group(2), count=1) if inclusive else m.group(2)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("slug")
    ap.add_argument("n", type=int, nargs="?", default=2000)
    ap.add_argument("--inclusive", action="store_true", help="costs include callees")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    small = per_function(os.path.join(PROFILES, f"{a.slug}.n.out.1"), a.inclusive)
    big = per_function(os.path.join(PROFILES, f"{a.slug}.3n.out.1"), a.inclusive)
    diff = {k: (big.get(k, 0) - small.get(k, 0)) / (2 * a.n) for k in set(big) | set(small)}
    total = sum(diff.values()) if not a.inclusive else None
    rows = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:a.top]
    if total is not None:
        print(f"{total:9.1f}  instructions per request in all")
    for name, v in rows:
        short = re.sub(r"/rustc/[0-9a-f]+/library/", "std:", name)
        short = short.replace(ROOT + "/", "")
        print(f"{v:9.1f}  {short[:170]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
