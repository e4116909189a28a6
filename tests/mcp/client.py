"""An MCP client for the gateway's MCP-rule tests: the official `mcp`
SDK's ClientSession over streamable HTTP, through the gateway's explicit
proxy as an agent (its token in the proxy URL), trusting the gateway's CA;
or, inside an agent's cgroup (`airlock run`), with no proxy at all.

Usage: client.py URL PROXY CA TOOL ARGS_JSON
An empty PROXY is none (transparent interception); an empty CA is the
bundle SSL_CERT_FILE names (which `airlock run` sets).
Prints one JSON line: {"ok": [texts], "is_error": bool} when the tool
answered, {"mcp_error": {"code": N, "message": S}} when the call raised
McpError (a JSON-RPC error, as the gateway answers a refused call).
"""

import asyncio
import json
import os
import ssl
import sys

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError


async def main() -> None:
    url, proxy, ca, tool, args = sys.argv[1:6]
    tls = ssl.create_default_context(cafile=ca or os.environ["SSL_CERT_FILE"])
    timeout = httpx.Timeout(30, read=120)
    async with httpx.AsyncClient(proxy=proxy or None, verify=tls, timeout=timeout, trust_env=False) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                try:
                    result = await session.call_tool(tool, json.loads(args))
                except McpError as e:
                    print(json.dumps({"mcp_error": {"code": e.error.code, "message": e.error.message}}))
                    return
                texts = [c.text for c in result.content if hasattr(c, "text")]
                print(json.dumps({"ok": texts, "is_error": result.isError}))


asyncio.run(main())
