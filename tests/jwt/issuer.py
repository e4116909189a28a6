"""A token endpoint for signed-JWT grants, and an API that accepts only its
tokens, for tests/jwt. It holds public keys only, and verifies each RS256
assertion with PyJWT the way the real services do.

    /usr/bin/python3 issuer.py CONFIG.json

CONFIG: {"cert", "key": PEM paths of its TLS certificate (the test CA's),
         "token_ttl": seconds its tokens live,
         "github": {"app_id", "installation_id", "public_key": PEM path},
         "google": {"client_email", "key_id", "public_key": PEM path,
                    "scope"}}
Prints one JSON line once it listens: {"port"}. Routes, on 127.0.0.1:
  POST /app/installations/{id}/access_tokens  GitHub's shape: the JWT as
        Authorization: Bearer, Accept: application/vnd.github+json, a
        User-Agent; 201 {"token", "expires_at"}, 401/404 as GitHub answers.
  POST /token  Google's shape: a form with grant_type
        urn:ietf:params:oauth:grant-type:jwt-bearer and assertion (aud
        must be this URL); 200 {"access_token", "expires_in",
        "token_type"}, 400 {"error": "invalid_grant"} as Google answers.
  GET  /api/...  200 {"ok", "grant"} for a live token of either, else 401.
  GET  /__admin/stats   token requests by grant, every token (and when it
        was issued) and assertion seen (the test's leak scan records
        them), refusals
  POST /__admin/revoke  every token issued so far stops working
  POST /__admin/fail?mode=M  the token endpoints then: ok, down (close the
        connection), slow (stall 30 s), 400, 401, 500, notoken (200
        without a token)
"""

import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

CONFIG = json.load(open(sys.argv[1]))
TTL = int(CONFIG["token_ttl"])
LOCK = threading.Lock()
STATE = {
    "mode": "ok",
    "by_grant": {"github_app": 0, "jwt_bearer": 0},
    "refused": [],
    "issued": [],
    "issued_at": [],
    "assertions": [],
    "api_ok": 0,
    "api_unauthorized": 0,
}
# token -> (grant, expiry as a Unix time)
LIVE = {}


def public_key(name):
    return open(CONFIG[name]["public_key"]).read()


def verify(token, key, issuer, audience=None):
    """The assertion's claims, verified as the services do: RS256 only,
    signature, exp in the future, iat not in the future (with a little
    leeway), iss, aud; and a short life."""
    options = {"require": ["iat", "exp", "iss"]}
    claims = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options=options,
        leeway=5,
    )
    if claims["iat"] > time.time() + 5:
        raise jwt.InvalidTokenError("iat is in the future")
    return claims


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def refuse(self, grant, why, status, body):
        with LOCK:
            STATE["refused"].append({"grant": grant, "why": why})
        self.answer(status, body)

    def failure(self):
        """The failure mode in force, answered; True when one was."""
        mode = STATE["mode"]
        if mode == "ok":
            return False
        if mode == "down":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if mode == "slow":
            time.sleep(30)
            return True
        if mode == "notoken":
            self.answer(200, {"token_type": "Bearer", "expires_in": TTL})
            return True
        # Google's words for a refused assertion; GitHub's status says it.
        error = {"400": "invalid_grant", "401": "invalid_client"}.get(mode, "server_error")
        self.answer(int(mode), {"error": error, "message": "failing on purpose"})
        return True

    def issue(self, grant, prefix):
        token = prefix + secrets.token_hex(20)
        with LOCK:
            STATE["by_grant"][grant] += 1
            STATE["issued"].append(token)
            STATE["issued_at"].append(time.time())
            LIVE[token] = (grant, time.time() + TTL)
        return token

    def github(self, installation):
        self.body()
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.refuse("github_app", "no bearer JWT", 401, {"message": "Requires authentication"})
        assertion = auth[len("Bearer "):]
        with LOCK:
            STATE["assertions"].append(assertion)
        if self.headers.get("Accept") != "application/vnd.github+json":
            return self.refuse("github_app", "Accept", 415, {"message": "Unsupported Accept"})
        if not self.headers.get("User-Agent"):
            return self.refuse("github_app", "User-Agent", 403, {"message": "User-Agent required"})
        cfg = CONFIG["github"]
        try:
            claims = verify(assertion, public_key("github"), str(cfg["app_id"]))
        except jwt.PyJWTError as e:
            return self.refuse("github_app", f"JWT: {e}", 401,
                               {"message": "A JSON web token could not be decoded"})
        if claims["exp"] - claims["iat"] > 600 or claims["exp"] > time.time() + 600:
            return self.refuse("github_app", "exp too far", 401,
                               {"message": "'Expiration time' claim ('exp') is too far in the future"})
        if installation != str(cfg["installation_id"]):
            return self.refuse("github_app", "installation", 404, {"message": "Not Found"})
        if self.failure():
            return
        token = self.issue("github_app", "ghs_")
        expires = datetime.fromtimestamp(time.time() + TTL, tz=timezone.utc)
        self.answer(201, {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"contents": "read"},
            "repository_selection": "all",
        })

    def google(self):
        form = urllib.parse.parse_qs(self.body().decode())
        if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self.refuse("jwt_bearer", "content type", 400, {"error": "invalid_request"})
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self.refuse("jwt_bearer", "grant_type", 400, {"error": "unsupported_grant_type"})
        assertion = (form.get("assertion") or [""])[0]
        with LOCK:
            STATE["assertions"].append(assertion)
        cfg = CONFIG["google"]
        token_url = f"https://127.0.0.1:{self.server.server_address[1]}/token"
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("kid") != cfg["key_id"]:
                raise jwt.InvalidTokenError("kid is not the account's key")
            claims = verify(assertion, public_key("google"), cfg["client_email"], token_url)
        except jwt.PyJWTError as e:
            return self.refuse("jwt_bearer", f"JWT: {e}", 400,
                               {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if claims["exp"] - claims["iat"] > 3600:
            return self.refuse("jwt_bearer", "exp too far", 400, {"error": "invalid_grant"})
        if claims.get("scope") != cfg["scope"]:
            return self.refuse("jwt_bearer", "scope", 400, {"error": "invalid_scope"})
        if self.failure():
            return
        token = self.issue("jwt_bearer", "ya29.")
        self.answer(200, {"access_token": token, "expires_in": TTL, "token_type": "Bearer"})

    def api(self):
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        with LOCK:
            live = LIVE.get(token) if scheme in ("Bearer", "token") else None
            ok = live is not None and live[1] > time.time()
            STATE["api_ok" if ok else "api_unauthorized"] += 1
        if not ok:
            return self.answer(401, {"message": "Bad credentials"})
        self.answer(200, {"ok": True, "grant": live[0], "path": self.path})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path)
        parts = path.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["app", "installations"] and parts[3] == "access_tokens":
            return self.github(parts[2])
        if path.path == "/token":
            return self.google()
        if path.path == "/__admin/revoke":
            with LOCK:
                LIVE.clear()
            self.body()
            return self.answer(200, {"revoked": True})
        if path.path == "/__admin/fail":
            STATE["mode"] = urllib.parse.parse_qs(path.query)["mode"][0]
            self.body()
            return self.answer(200, {"mode": STATE["mode"]})
        self.answer(404, {"message": "Not Found"})

    def do_GET(self):
        if self.path == "/__admin/stats":
            with LOCK:
                return self.answer(200, STATE)
        if self.path.startswith("/api/"):
            return self.api()
        self.answer(404, {"message": "Not Found"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CONFIG["cert"], CONFIG["key"])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
