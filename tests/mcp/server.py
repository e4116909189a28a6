"""A real MCP server for the gateway's MCP-rule tests: the official `mcp`
SDK's FastMCP over streamable HTTP (JSON responses), served over TLS with
a certificate of the test CA.

Every request must carry `Authorization: Bearer <expected>` (the value
the gateway injects); any other gets 401, so a tool that answers proves
the credential arrived. `GET /seen` (no credential needed) lists the tools
called so far, so a test can tell that a refused call never arrived.

Usage: server.py CONFIG.json, where the config has cert, key and token.
Prints {"port": N} once listening.
"""

import json
import socket
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse

config = json.load(open(sys.argv[1]))
expected = "Bearer " + config["token"]
seen = []

mcp = FastMCP(
    "airlock-test",
    json_response=True,
    stateless_http=True,
    # The gateway addresses it by the test host name, not localhost.
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)


@mcp.tool()
def read_file(path: str) -> str:
    """Reads a (pretend) file."""
    seen.append("read_file")
    return f"contents of {path}"


@mcp.tool()
def delete_repo(name: str) -> str:
    """Deletes a (pretend) repository."""
    seen.append("delete_repo")
    return f"deleted {name}"


@mcp.tool()
def pay(amount: int, to: str, api_token: str = "") -> str:
    """Pays (pretend) money."""
    seen.append("pay")
    return f"paid {amount} to {to}"


@mcp.custom_route("/seen", methods=["GET"])
async def seen_route(request: Request) -> JSONResponse:
    return JSONResponse(seen)


app = mcp.streamable_http_app()


async def guarded(scope, receive, send):
    if scope["type"] == "http" and scope["path"] != "/seen":
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").decode() != expected:
            response = JSONResponse({"error": "bad credential"}, status_code=401)
            await response(scope, receive, send)
            return
    await app(scope, receive, send)


sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
server = uvicorn.Server(
    uvicorn.Config(
        guarded,
        ssl_certfile=config["cert"],
        ssl_keyfile=config["key"],
        log_level="warning",
        lifespan="on",
    )
)
server.run(sockets=[sock])
