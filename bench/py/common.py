"""What the benchmark's Python helpers share: how a client reaches the
upstream (directly, through an explicit proxy with CONNECT, or from inside
an agent's cgroup where the kernel redirects it), over TLS."""

import asyncio
import ssl


def add_route_args(parser):
    parser.add_argument("--host", required=True, help="TLS name (SNI, Host)")
    parser.add_argument("--port", type=int, required=True, help="upstream port")
    parser.add_argument("--ip", default="127.0.0.1", help="address dialled when not proxied")
    parser.add_argument("--proxy", help="explicit proxy HOST:PORT (CONNECT)")
    parser.add_argument("--proxy-auth", help="Proxy-Authorization value")
    parser.add_argument("--auth", help="Authorization the client sends itself (direct)")
    parser.add_argument("--cacert", required=True)


def tls_context(cacert):
    ctx = ssl.create_default_context(cafile=cacert)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def open_tls(args, ctx):
    """A TLS stream to args.host:args.port by the route the arguments name."""
    if args.proxy:
        phost, pport = args.proxy.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(phost, int(pport))
        target = f"{args.host}:{args.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if args.proxy_auth:
            head += f"Proxy-Authorization: {args.proxy_auth}\r\n"
        writer.write((head + "\r\n").encode())
        status = await reader.readuntil(b"\r\n\r\n")
        if b" 200" not in status.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"CONNECT refused: {status[:80]!r}")
        await writer.start_tls(ctx, server_hostname=args.host)
        return reader, writer
    return await asyncio.open_connection(
        args.ip, args.port, ssl=ctx, server_hostname=args.host
    )


def request_bytes(args, path):
    head = f"GET {path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
    if args.auth:
        head += f"Authorization: {args.auth}\r\n"
    return (head + "\r\n").encode()


async def read_response(reader):
    """(status, body) of one Content-Length response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    return status, body
