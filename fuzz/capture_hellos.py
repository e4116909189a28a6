#!/usr/bin/env python3
"""Captures real ClientHellos for the `sni` seed corpus.

Listens on 127.0.0.1, lets each client (curl, openssl s_client, Python's
ssl, Node) start a TLS handshake with a given server name, saves the bytes
it sent first and closes. Loopback only; every client is bounded by a
timeout. Usage: python3 fuzz/capture_hellos.py fuzz/corpus/sni
"""

import os
import socket
import subprocess
import sys
import threading

NAME = "api.example.test"


def capture(out_dir, label, client):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    got = {}

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        conn.settimeout(5)
        data = b""
        try:
            # A record header, then read until the records hold the whole hello.
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) >= 9:
                    need = 5 + int.from_bytes(data[3:5], "big")
                    body = 4 + int.from_bytes(data[6:9], "big")
                    if len(data) >= need and need - 5 >= body:
                        break
        except OSError:
            pass
        got["data"] = data
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        subprocess.run(client(port), timeout=15, capture_output=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"{label}: client failed: {e}", file=sys.stderr)
    t.join(20)
    srv.close()
    data = got.get("data", b"")
    if data:
        with open(os.path.join(out_dir, label), "wb") as f:
            f.write(data)
        print(f"{label}: {len(data)} bytes")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    url = lambda p: f"https://{NAME}:{p}/"
    resolve = lambda p: f"{NAME}:{p}:127.0.0.1"
    clients = {
        "curl-hello": lambda p: ["curl", "-s", "-m", "5", "--resolve", resolve(p), url(p)],
        "curl-tls12-hello": lambda p: ["curl", "-s", "-m", "5", "--tls-max", "1.2", "--resolve", resolve(p), url(p)],
        "curl-ip-no-sni-hello": lambda p: ["curl", "-s", "-m", "5", f"https://127.0.0.1:{p}/"],
        "openssl-hello": lambda p: ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-servername", NAME],
        "openssl-noext-tls10-hello": lambda p: ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-noservername", "-tls1", "-cipher", "ALL:@SECLEVEL=0"],
        "python-hello": lambda p: ["python3", "-c", f"import socket,ssl;s=socket.create_connection(('127.0.0.1',{p}),5);ssl.create_default_context().wrap_socket(s,server_hostname='{NAME}')"],
        "node-hello": lambda p: ["node", "-e", f"require('tls').connect({{host:'127.0.0.1',port:{p},servername:'{NAME}'}}).on('error',()=>process.exit(0))"],
    }
    for label, client in clients.items():
        capture(out_dir, label, client)


if __name__ == "__main__":
    main()
