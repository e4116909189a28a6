"""How long a rule change takes to reach the gateway's hot path.

Each round adds a `--block` rule for a path of its own with the real CLI
(`airlock rule add`, which returns once the change is committed), then asks
for that path over one kept-alive connection through the route until the
answer is 403, and removes the rule again. Printed as one JSON object: the
milliseconds from the CLI's return to the first refused answer (the
notification, the snapshot's reload and swap), and what the CLI itself
took. The answers before the first 403 must be the upstream's 404 for an
unknown path, which proves they were forwarded and not refused for another
reason."""

import argparse
import asyncio
import json
import subprocess
import time

import common

# A bound on each round, so a change that never arrives ends the run.
ROUND_LIMIT_S = 10.0


async def status_of(reader, writer, host, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


def cli(args, *rest):
    out = subprocess.run(
        [args.airlock, *rest],
        env={"AIRLOCK_DATA_DIR": args.data_dir, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise SystemExit(f"airlock {' '.join(rest)} failed: {out.stderr.strip()}")
    return out.stdout


async def main():
    parser = argparse.ArgumentParser()
    common.add_route_args(parser)
    parser.add_argument("--airlock", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    reader, writer = await common.open_tls(args, common.tls_context(args.cacert))
    host = f"{args.host}:{args.port}"
    reach_ms, cli_ms, polls = [], [], []
    for i in range(args.rounds):
        path = f"/rule-reach-{i}-{time.monotonic_ns()}"
        before = await status_of(reader, writer, host, path)
        if before != 404:
            raise SystemExit(f"{path} answered {before} before its rule, not the upstream's 404")
        started = time.monotonic()
        added = json.loads(
            cli(args, "rule", "add", "--host", host, "--path", path, "--block", "--json")
        )
        committed = time.monotonic()
        n = 0
        while True:
            n += 1
            status = await status_of(reader, writer, host, path)
            if status == 403:
                break
            if status != 404:
                raise SystemExit(f"{path} answered {status} while its rule was on its way")
            if time.monotonic() - committed > ROUND_LIMIT_S:
                raise SystemExit(f"the rule for {path} had not arrived after {ROUND_LIMIT_S}s")
        refused = time.monotonic()
        reach_ms.append((refused - committed) * 1000)
        cli_ms.append((committed - started) * 1000)
        polls.append(n)
        cli(args, "rule", "rm", str(added["id"]))
    writer.close()
    print(json.dumps({"reach_ms": reach_ms, "cli_ms": cli_ms, "polls": polls}))


asyncio.run(main())
