"""A man in the middle for the install tests: a TLS proxy in front of rm-server that either
holds the server's own key and changes one byte of one download (a compromised front end),
or presents a certificate of its own (an impersonator).

    python tls_proxy.py PORT CERT KEY UPSTREAM UPSTREAM_CA [TAMPER_NAME]
"""

from __future__ import annotations

import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, cert, key, upstream, upstream_ca = sys.argv[1:6]
    tamper = sys.argv[6] if len(sys.argv) > 6 else ""
    up_ctx = ssl.create_default_context(cafile=upstream_ca)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            with urllib.request.urlopen(upstream + self.path, context=up_ctx, timeout=30) as resp:
                body = bytearray(resp.read())
                status, ctype = resp.status, resp.headers.get("Content-Type", "application/octet-stream")
            if tamper and self.path.endswith("/" + tamper):
                body[len(body) // 2] ^= 0x01
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(f"proxy listening on {port}", file=sys.stderr, flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
