"""Server-sent events for `cargo xtask bench`.

`serve`: a TLS server on 127.0.0.1 that answers GET /v1/events (only with
the benchmark's Authorization, else 401) with a chunked text/event-stream:
the first event at once, a second one DELAY ms later, then the end. A proxy
that buffered the body would deliver the first event only with the second.

`measure`: N requests on one keep-alive connection by a route; prints JSON
with the time from sending each request to reading its first event, and to
reading the second."""

import argparse
import asyncio
import json
import ssl
import statistics
import time

from common import add_route_args, open_tls, request_bytes, tls_context


async def serve(args):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                auth = ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "authorization":
                        auth = value.strip()
                if auth != args.expect_auth:
                    body = b'{"error":"missing key"}'
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunk(b"data: first\n\n")
                )
                await writer.drain()
                await asyncio.sleep(args.delay_ms / 1000)
                writer.write(chunk(b"data: second\n\n") + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=ctx)
    async with server:
        await server.serve_forever()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


async def measure(args):
    ctx = tls_context(args.cacert)
    reader, writer = await open_tls(args, ctx)
    first, second = [], []
    for _ in range(args.count):
        buf = b""
        writer.write(request_bytes(args, "/v1/events"))
        await writer.drain()
        t0 = time.perf_counter()
        t1 = None
        while b"0\r\n\r\n" not in buf:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                raise RuntimeError("connection closed mid-stream")
            buf += data
            if b"\r\n\r\n" in buf and not buf.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"not the event stream: {buf[:120]!r}")
            if t1 is None and b"data: first" in buf:
                t1 = time.perf_counter()
        if b"data: second" not in buf:
            raise RuntimeError(f"not the event stream: {buf[:120]!r}")
        first.append((t1 - t0) * 1e6)
        second.append((time.perf_counter() - t0) * 1e6)
    writer.close()
    print(json.dumps({
        "count": args.count,
        "first_event_p50_us": statistics.median(first),
        "second_event_p50_us": statistics.median(second),
    }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--expect-auth", required=True)
    s.add_argument("--delay-ms", type=float, default=20)
    m = sub.add_parser("measure")
    add_route_args(m)
    m.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    asyncio.run(serve(args) if args.cmd == "serve" else measure(args))


main()
