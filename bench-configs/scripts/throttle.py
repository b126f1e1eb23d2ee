#!/usr/bin/env python3
"""CPU-limit a process the way cpulimit does: SIGSTOP it for `duty` of every
`period` seconds, SIGCONT it for the rest. Used by gate-proof.sh to make a
real, honest slowdown of a running proxy (it gets at most 1 - duty of the
wall clock). On SIGTERM/SIGINT the process is continued before exiting.

    throttle.py PID DUTY [PERIOD_SECONDS]
"""
import os
import signal
import sys
import time

pid = int(sys.argv[1])
duty = float(sys.argv[2])
period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
stopped = period * duty


def finish(*_):
    try:
        os.kill(pid, signal.SIGCONT)
    finally:
        sys.exit(0)


signal.signal(signal.SIGTERM, finish)
signal.signal(signal.SIGINT, finish)
next_t = time.monotonic()
while True:
    os.kill(pid, signal.SIGSTOP)
    time.sleep(stopped)
    os.kill(pid, signal.SIGCONT)
    next_t += period
    time.sleep(max(0.0, next_t - time.monotonic()))
