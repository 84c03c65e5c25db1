"""Serve a prebuilt OHIF viewer and reverse-proxy a DICOMweb store from the same origin.

Why one origin: Orthanc 1.10 sends no CORS headers, so a page loaded from another origin
cannot read its answers. Serving OHIF's ``dist/`` and ``/dicom-web`` from one server avoids
CORS altogether. The pages are also sent cross-origin isolated (COOP/COEP) so that OHIF can
use SharedArrayBuffer for volume (MPR) viewports and shows no isolation warning.

    python -m review.ohif.serve --orthanc http://127.0.0.1:8042/dicom-web --port 3000 --dist PATH

Standard library only: reviewers need nothing beyond Python and the unpacked ``@ohif/app`` package.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

APP_CONFIG = Path(__file__).with_name("app-config.js")
PROXY_PREFIX = "/dicom-web"
# request headers a DICOMweb server needs; hop-by-hop ones (Connection, Keep-Alive...) never cross a proxy
FORWARDED_REQUEST_HEADERS = ("Accept", "Content-Type", "Content-Length", "Range", "If-None-Match", "If-Modified-Since")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}
CHUNK = 1 << 16


class OhifHandler(SimpleHTTPRequestHandler):
    """Static files from OHIF's dist/, our app-config.js, SPA fallback to index.html, and the proxy."""

    upstream: urllib.parse.SplitResult  # the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    app_config: Path
    token_env: str | None

    # ---- routing -----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self._is_proxied():
            return self._proxy()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/app-config.js":
            return self._send_file(self.app_config, "text/javascript")
        if "." not in path.rsplit("/", 1)[-1] and not Path(self.translate_path(self.path)).exists():
            self.path = "/index.html"  # a client-side route (/viewer, /segmentation...): the app resolves it
            # (a missing file with an extension stays a 404, so a broken dist/ shows as such)
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        if self._is_proxied():
            return self._proxy()
        super().do_HEAD()

    def do_POST(self) -> None:  # noqa: N802 (STOW-RS, when OHIF's upload is enabled)
        if self._is_proxied():
            return self._proxy()
        self.send_error(405)

    def _is_proxied(self) -> bool:
        path = urllib.parse.urlsplit(self.path).path
        return path == PROXY_PREFIX or path.startswith(PROXY_PREFIX + "/")

    # ---- responses ---------------------------------------------------------------------------
    def end_headers(self) -> None:
        # cross-origin isolation: everything is same-origin, so these cost nothing and unlock SharedArrayBuffer
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def _send_file(self, path: Path, content_type: str) -> None:
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _proxy(self) -> None:
        """Forward the request to the DICOMweb root and stream the answer back unchanged."""
        tail = self.path[len(PROXY_PREFIX):]
        target = self.upstream.path.rstrip("/") + tail
        headers = {h: self.headers[h] for h in FORWARDED_REQUEST_HEADERS if self.headers[h] is not None}
        if self.headers["Host"]:
            # Orthanc builds absolute BulkDataURIs from this (RFC 7239), so they lead back through this proxy
            headers["Forwarded"] = f"proto=http;host={self.headers['Host']}"
        token = os.environ.get(self.token_env) if self.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        connection_class = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self.upstream.netloc, timeout=120)
        try:
            connection.request(self.command, target, body=body, headers=headers)
            answer = connection.getresponse()
        except OSError as error:
            connection.close()
            self.send_error(502, f"DICOMweb store {self.upstream.geturl()} did not answer: {error}")
            return
        try:
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if answer.getheader("Content-Length") is None:
                self.close_connection = True  # the body then ends when the connection closes (HTTP/1.0)
            self.end_headers()
            if self.command != "HEAD":
                while chunk := answer.read(CHUNK):
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (a cancelled thumbnail, a closed tab)
        finally:
            connection.close()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        if not self.server.quiet:  # type: ignore[attr-defined]
            super().log_message(format, *args)


class OhifServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler, *, quiet: bool):
        self.quiet = quiet
        super().__init__(address, handler)


def make_server(dist: Path, dicomweb_url: str, *, host: str = "127.0.0.1", port: int = 3000,
                app_config: Path = APP_CONFIG, token_env: str | None = None, quiet: bool = False) -> OhifServer:
    """A server (not started) for OHIF's ``dist`` folder with ``/dicom-web`` proxied to ``dicomweb_url``."""
    dist = Path(dist)
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(f"{dist} is not OHIF's dist/ folder (no index.html): unpack npm's @ohif/app and pass its dist/")
    if not app_config.is_file():
        raise FileNotFoundError(f"OHIF app-config {app_config} is missing")
    upstream = urllib.parse.urlsplit(dicomweb_url.rstrip("/"))
    if upstream.scheme not in ("http", "https") or not upstream.netloc:
        raise ValueError(f"DICOMweb URL {dicomweb_url!r} must be http(s)://host[:port]/path")
    handler = type("BoundOhifHandler", (OhifHandler,), {"upstream": upstream, "app_config": app_config, "token_env": token_env})
    return OhifServer((host, port), partial(handler, directory=str(dist)), quiet=quiet)


def serve_in_thread(server: OhifServer) -> threading.Thread:
    """Start ``server`` in a daemon thread (for tests and notebooks); stop it with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="ohif-server", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m review.ohif.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orthanc", "--dicomweb", dest="dicomweb", required=True,
                        help="DICOMweb root of the store, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--dist", required=True, type=Path, help="OHIF's prebuilt dist/ folder (npm @ohif/app)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--app-config", type=Path, default=APP_CONFIG, help="OHIF app-config.js to serve")
    parser.add_argument("--token-env", help="environment variable holding a bearer token added to proxied requests "
                                            "(e.g. for the Google Cloud Healthcare API)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.dist, args.dicomweb, host=args.host, port=args.port, app_config=args.app_config,
                             token_env=args.token_env, quiet=args.quiet)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"OHIF on http://{args.host}:{server.server_port}/ (DICOMweb {args.dicomweb} at {PROXY_PREFIX})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
