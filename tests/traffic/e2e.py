"""Helpers for the end-to-end steering tests: a load feed the test controls (an HTTP
JSON endpoint in a thread, on loopback) and ECS queries that say which POP answered."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.edns
import dns.rdatatype

from tests.helpers.queries import ask, make_query

HOST = "127.0.0.1"


class LoadFeed:
    """``GET /loads.json`` answers ``compute()`` as JSON (recomputed per request)."""

    def __init__(self, compute: Callable[[], dict[str, Any]]) -> None:
        self.compute = compute
        self.requests = 0
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed.requests += 1
                body = json.dumps(feed.compute()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/loads.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def load_feed(compute: Callable[[], dict[str, Any]]) -> Iterator[LoadFeed]:
    feed = LoadFeed(compute)
    try:
        yield feed
    finally:
        feed.close()


def answer(port: int, qname: str, client: str, prefix: int, qtype: str = "A"
           ) -> tuple[list[str], int]:
    """The addresses the server answers ``client/prefix`` (ECS), and the ECS scope."""
    q = make_query(qname, qtype, options=[dns.edns.ECSOption(client, prefix)])
    reply = ask(port, q, timeout=2.0)
    rdtype = dns.rdatatype.from_text(qtype)
    addresses = sorted(rd.address for rrset in reply.answer if rrset.rdtype == rdtype
                       for rd in rrset)
    scope = next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), -1)
    return addresses, scope
