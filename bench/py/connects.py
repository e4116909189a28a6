"""COUNT plain TCP connect()+close() calls to 127.0.0.1:PORT, for the
eBPF cost figures of `cargo xtask bench`: the kernel counts the programs'
run time, this only makes the calls (the listener is the xtask's own, or
the gateway's when the port is intercepted). Prints JSON with the mean wall
time per call."""

import argparse
import json
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--count", type=int, required=True)
args = p.parse_args()

t0 = time.perf_counter()
for _ in range(args.count):
    s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    s.close()
elapsed = time.perf_counter() - t0
print(json.dumps({"count": args.count, "wall_us_per_call": elapsed * 1e6 / args.count}))
