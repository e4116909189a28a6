"""A real GraphQL server for the gateway's GraphQL-rule tests: Strawberry's
ASGI app under uvicorn, over TLS with a certificate of the test CA.

Every request must carry `Authorization: Bearer <expected>` (the value
the gateway injects); any other gets 401, so an answer proves the
credential arrived. `GET /seen` (no credential needed) lists the
resolvers run so far, so a test can tell that a refused operation never
arrived. GraphQL is served at /graphql (POST JSON, and GET ?query= for
queries, as Strawberry does).

Usage: server.py CONFIG.json, where the config has cert, key and token.
Prints {"port": N} once listening.
"""

import json
import socket
import sys

import strawberry
import uvicorn
from starlette.responses import JSONResponse
from strawberry.asgi import GraphQL

config = json.load(open(sys.argv[1]))
expected = "Bearer " + config["token"]
seen = []


@strawberry.type
class User:
    id: strawberry.ID
    name: str


@strawberry.type
class Query:
    @strawberry.field
    def user(self, id: strawberry.ID) -> User:
        seen.append("user")
        return User(id=id, name=f"user {id}")

    @strawberry.field
    def n(self) -> int:
        """A one-letter scalar, for documents of many aliases (not listed in /seen)."""
        return 1

    @strawberry.field
    def viewer(self) -> User:
        seen.append("viewer")
        return User(id=strawberry.ID("0"), name="viewer")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def delete_user(self, id: strawberry.ID) -> bool:
        seen.append("deleteUser")
        return True


graphql = GraphQL(strawberry.Schema(query=Query, mutation=Mutation))


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/seen":
        await JSONResponse(seen)(scope, receive, send)
        return
    if scope["type"] == "http":
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").decode() != expected:
            await JSONResponse({"error": "bad credential"}, status_code=401)(scope, receive, send)
            return
    await graphql(scope, receive, send)


sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
server = uvicorn.Server(
    uvicorn.Config(
        app,
        ssl_certfile=config["cert"],
        ssl_keyfile=config["key"],
        log_level="warning",
        lifespan="off",
    )
)
server.run(sockets=[sock])
