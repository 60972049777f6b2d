#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Test servers for tests/integration/egress.sh, on 127.0.0.1 (Debian's python3 only).

egress-server.py CERT KEY DIR: an HTTPS server (plain HTTP when CERT is "-": the benchmark) (http.server + ssl) and a plain TCP echo server,
on free ports written to DIR/ports ("https tcp"). Every HTTP request is appended to
DIR/requests.jsonl as {"method","path","headers"}; every TCP connection's bytes to
DIR/tcp.log. Routes:
  /v1/whoami           200 JSON echoing the Authorization header, and its token in base64 and hex
                       (the secret comes back, raw and encoded)
  /v1/ok, /admin       200 {"ok":true}
  /v1/big?n=N          200, N bytes of "x"
  /v1/slow?s=S         sleeps S seconds, then 200
  /v1/redirect?to=URL  302 to URL
  /v1/items/ID         200, a JSON object of about 40 KB (id, name, owner.login, a long blob)
"""
import base64
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cert, key, out = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body, ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        with lock, open(os.path.join(out, "requests.jsonl"), "a") as f:  # noqa: E501
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": dict(self.headers.items())}) + "\n")
        if u.path == "/v1/whoami":
            auth = self.headers.get("Authorization", "")
            tok = auth.split(" ", 1)[1] if " " in auth else auth
            self.send(200, json.dumps({"auth": auth,
                                       "auth_b64": base64.b64encode(tok.encode()).decode().rstrip("="),
                                       "auth_hex": tok.encode().hex(),
                                       "query": u.query}).encode())
        elif u.path in ("/v1/ok", "/admin"):
            self.send(200, b'{"ok":true}')
        elif u.path == "/v1/big":
            self.send(200, b"x" * int(q.get("n", ["1000"])[0]), "text/plain")
        elif u.path == "/v1/slow":
            time.sleep(float(q.get("s", ["1"])[0]))
            self.send(200, b'{"slow":true}')
        elif u.path == "/v1/redirect":
            self.send(302, b"", "text/plain", {"Location": q.get("to", ["/v1/ok"])[0]})
        elif u.path.startswith("/v1/items/"):
            item = {"id": u.path.rsplit("/", 1)[1], "name": "widget",
                    "owner": {"login": "octo", "id": 7},
                    "blob": "b" * 40000, "tags": ["a", "b"]}
            self.send(200, json.dumps(item).encode())
        else:
            self.send(404, b'{"error":"not found"}')

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = handle_any


def tcp_echo(sock):
    while True:
        conn, _ = sock.accept()
        data = b""
        conn.settimeout(10)
        try:
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            with lock, open(os.path.join(out, "tcp.log"), "ab") as f:
                f.write(data + b"\n")
            conn.sendall(b"echo:" + data)
        except OSError:
            pass
        finally:
            conn.close()


httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if cert != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 0))
tcp.listen(16)
threading.Thread(target=tcp_echo, args=(tcp,), daemon=True).start()
with open(os.path.join(out, "ports.tmp"), "w") as f:
    f.write("%d %d\n" % (httpd.server_address[1], tcp.getsockname()[1]))
os.rename(os.path.join(out, "ports.tmp"), os.path.join(out, "ports"))
httpd.serve_forever()
