"""A lean SMTP server for the benchmark, run as its own process so that it
shares no interpreter (and no GIL) with the load generator.

It accepts every message and appends one line per message to ``--out``:
``<time.monotonic()> <Message-ID> <reference or -> <recipients>``.
CLOCK_MONOTONIC is system-wide on Linux, so the driver compares these times
with its own. The first message is also kept whole in ``<out>.sample.eml``
(the plain smtplib loop sends copies of it). Unlike tests/support/smtp.py it
parses nothing but two header lines: the server must cost as little as
possible, or it would set the pace of both sides of the email comparison.

    python -m bench.smtp_sink --port 2525 --out var/bench/smtp.log
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
# The acknowledgment's and the staff notice's subjects carry the reference.
_REFERENCE = re.compile(rb"^Subject:[^\r\n]*?\b([A-Z2-9]{4}-[A-Z2-9]{4})\b", re.MULTILINE)


class Sink:
    def __init__(self, out: Path):
        self.out = out.open("a", buffering=1)
        self.sample_path = out.with_name(out.name + ".sample.eml")
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = time.monotonic()
        raw: bytes = envelope.original_content or b""
        head = raw.split(b"\r\n\r\n", 1)[0]
        message_id = _MESSAGE_ID.search(head)
        reference = _REFERENCE.search(head)
        self.out.write(
            f"{received:.6f} {message_id.group(1).decode() if message_id else '-'} "
            f"{reference.group(1).decode() if reference else '-'} {','.join(envelope.rcpt_tos)}\n"
        )
        if self.count == 0:
            self.sample_path.write_bytes(raw)
        self.count += 1
        return "250 2.0.0 OK: queued"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(Sink(args.out), hostname="127.0.0.1", port=args.port, ready_timeout=10)
    controller.start()
    print(f"SMTP sink ready on 127.0.0.1:{args.port}", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
