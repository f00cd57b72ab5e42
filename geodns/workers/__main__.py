"""`python -m geodns.workers ROLE FD ...`: a child process of the supervisor."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Sequence

from geodns.logs import FORMATS, LEVELS, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geodns.workers",
                                description="a geodns worker or prober (started by "
                                            "`geodns serve --workers N`, not by hand)")
    p.add_argument("role", choices=("worker", "prober"))
    p.add_argument("fd", type=int, help="the channel to the supervisor")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--log-level", default="info", choices=LEVELS)
    p.add_argument("--log-format", default="text", choices=FORMATS)
    args = p.parse_args(argv)
    tag = f"worker {args.index}" if args.role == "worker" else "prober"
    setup_logging(args.log_level, args.log_format, process=tag)
    from geodns.workers.worker import ignore_interrupts
    ignore_interrupts()
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    sock = socket.socket(fileno=args.fd)
    if args.role == "prober":
        from geodns.workers import prober
        asyncio.run(prober.serve(sock))
        return 0
    from geodns.workers import worker
    return asyncio.run(worker.serve(sock, args.index))


if __name__ == "__main__":
    sys.exit(main())
