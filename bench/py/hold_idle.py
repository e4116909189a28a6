"""Open COUNT TLS connections by one route, send one request on each (so
each is a real, served keep-alive connection), then hold them idle.

Prints `ready N` once all are open and answered 200, then waits until its
standard input closes, and closes them. Used by `cargo xtask bench` to
measure the resident memory a proxy needs per idle connection."""

import argparse
import asyncio
import sys

from common import add_route_args, open_tls, read_response, request_bytes, tls_context


async def one(args, ctx, sem, held):
    async with sem:
        reader, writer = await open_tls(args, ctx)
        writer.write(request_bytes(args, args.path))
        await writer.drain()
        status, _ = await read_response(reader)
        if status != 200:
            raise RuntimeError(f"status {status} (the key was not injected?)")
        held.append(writer)


async def main():
    p = argparse.ArgumentParser()
    add_route_args(p)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--parallel", type=int, default=64)
    p.add_argument("--path", default="/v1/bench")
    args = p.parse_args()
    ctx = tls_context(args.cacert)
    sem = asyncio.Semaphore(args.parallel)
    held = []
    await asyncio.gather(*(one(args, ctx, sem, held) for _ in range(args.count)))
    print(f"ready {len(held)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


asyncio.run(main())
