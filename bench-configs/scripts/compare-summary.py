#!/usr/bin/env python3
"""Summarise `ncbench compare` output for gate-proof.sh: the throughput and
p99 verdicts and the throughput ratio with its interval, on one line:

    compare-summary.py COMPARE_OUTPUT.txt
    -> "fail pass 0.812 [0.774, 0.846]"

With several cells, the worst verdict per metric and the first cell's ratio.
"""
import re
import sys

RANK = {"pass": 0, "inconclusive": 1, "fail": 2}
verdicts = {"ops_per_sec": "?", "latency_us_p99": "?"}
ratio = "? [?, ?]"
for line in open(sys.argv[1]):
    m = re.match(r"\s+(PASS|FAIL|INCONCLUSIVE)\s+\S+: (\S+) ", line)
    if not m or m.group(2) not in verdicts:
        continue
    v, metric = m.group(1).lower(), m.group(2)
    if RANK.get(v, 0) >= RANK.get(verdicts[metric], -1):
        verdicts[metric] = v
    r = re.search(r"ratio ([0-9.]+) \[([0-9.]+), ([0-9.]+)\]", line)
    if metric == "ops_per_sec" and r and ratio.startswith("?"):
        ratio = "%s [%s, %s]" % r.groups()
print(verdicts["ops_per_sec"], verdicts["latency_us_p99"], ratio)
