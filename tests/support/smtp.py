"""An SMTP server for tests: aiosmtpd on a free port of 127.0.0.1, keeping
every message it accepts in memory, and able to refuse (a scripted list of
replies per recipient) or to hold a session at DATA or QUIT until released,
or to stall every message after the next few, to stage a worker dying
mid-send."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .polling import free_port, wait_for


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    received_at: float  # time.monotonic()
    session: int  # the same for messages sent over one SMTP connection

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        """Headers and every decoded text part (plain and HTML), so a search
        is not fooled by quoted-printable or base64 transfer encoding."""
        chunks = [f"{k}: {v}" for k, v in self.message.items()]
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                chunks.append(part.get_content())
        return "\n".join(chunks)

    def contains(self, needle: str) -> bool:
        """``needle`` in the raw bytes or in any decoded part, any case."""
        lowered = needle.lower()
        return lowered.encode() in self.raw.lower() or lowered in self.text().lower()


class Hold:
    """Makes the SMTP server stop answering one session at a stage ("DATA":
    after the message was sent but before the server accepted it; "QUIT":
    after the server accepted it) until released."""

    def __init__(self, rcpt: str, stage: str):
        self.rcpt = rcpt.lower()
        self.stage = stage
        self.reached = threading.Event()
        self.released = threading.Event()
        self.client_gone = threading.Event()

    def release(self) -> None:
        self.released.set()

    def wait_reached(self, timeout: float = 20) -> None:
        if not self.reached.wait(timeout):
            raise AssertionError(f"no message to {self.rcpt} reached the SMTP server's {self.stage} hold")

    def wait_client_gone(self, timeout: float = 10) -> None:
        if not self.client_gone.wait(timeout):
            raise AssertionError(f"the client holding at {self.stage} for {self.rcpt} did not go away")


class Stall:
    """Makes the SMTP server accept ``accepted`` more messages, then stop
    answering DATA for every later one (the message sent, not accepted)
    until released: a server that hangs in the middle of a burst."""

    def __init__(self, accepted: int):
        self.accepted = accepted
        self._lock = threading.Lock()
        self._seen = 0
        self._holding = 0
        self.released = threading.Event()

    @property
    def holding(self) -> int:
        """Sessions waiting for the server's answer to DATA right now."""
        with self._lock:
            return self._holding

    def release(self) -> None:
        self.released.set()

    def wait_holding(self, sessions: int, *, timeout: float = 30, **kw: Any) -> None:
        wait_for(
            lambda: self.holding >= sessions,
            timeout=timeout,
            what=f"{sessions} SMTP sessions held at DATA (have {self.holding})",
            **kw,
        )

    def _take(self) -> bool:
        with self._lock:
            self._seen += 1
            return self._seen > self.accepted and not self.released.is_set()

    async def _wait(self) -> None:
        with self._lock:
            self._holding += 1
        try:
            while not self.released.is_set():
                await asyncio.sleep(0.02)
        finally:
            with self._lock:
                self._holding -= 1


class SmtpRecorder:
    """An SMTP server on 127.0.0.1 that keeps every accepted message in memory.

    ``script(rcpt, [...])`` makes it answer the next attempts for a recipient
    with the given replies (then 250 again); ``hold(rcpt, stage)`` makes it
    stop answering one session at that stage until released. Scripts and
    holds are per recipient, so other mail (the staff notification) flows.
    ``stall(accepted)`` holds every message at DATA after the next few, for
    any recipient.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._messages: list[ReceivedEmail] = []
        self._scripts: dict[tuple[str, str], deque[str]] = {}
        self._holds: list[Hold] = []
        self._stall: Stall | None = None
        self.rcpt_attempts: Counter[str] = Counter()
        self.quits = 0  # QUITs received: sessions the client ended
        self._running = False
        self._session_rcpts: dict[int, set[str]] = {}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)

    def start(self) -> None:
        # aiosmtpd logs every connection at INFO; keep the test output for ours.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller.start()
        self._running = True

    def stop(self) -> None:
        """Stop the server (and drop every connection); again, nothing."""
        if not self._running:
            return
        self._running = False
        for hold in list(self._holds):
            hold.release()
        if self._stall is not None:
            self._stall.release()
        self._controller.stop()

    def reset(self) -> None:
        """Forget scripts and release holds (not the messages received)."""
        with self._lock:
            self._scripts.clear()
            holds, self._holds = self._holds, []
            stall, self._stall = self._stall, None
        for hold in holds:
            hold.release()
        if stall is not None:
            stall.release()

    def script(self, rcpt: str, replies: list[str], *, at: str = "RCPT") -> None:
        """Answer the next ``len(replies)`` attempts to ``rcpt`` at ``at``
        ("RCPT" or "DATA") with these replies, e.g. ``["451 4.7.1 Later"]``."""
        with self._lock:
            self._scripts[(rcpt.lower(), at)] = deque(replies)

    def hold(self, rcpt: str, *, at: str = "DATA") -> Hold:
        hold = Hold(rcpt, at)
        with self._lock:
            self._holds.append(hold)
        return hold

    def stall(self, accepted: int) -> Stall:
        """Accept the next ``accepted`` messages, then hold every later one
        at DATA until the stall is released (a client that goes away during
        the hold has sent nothing, as with ``hold``)."""
        stall = Stall(accepted)
        with self._lock:
            self._stall = stall
        return stall

    @property
    def messages(self) -> list[ReceivedEmail]:
        with self._lock:
            return list(self._messages)

    def to(self, rcpt: str) -> list[ReceivedEmail]:
        rcpt = rcpt.lower()
        return [m for m in self.messages if rcpt in (r.lower() for r in m.rcpt_tos)]

    def wait_for_messages(self, rcpt: str, count: int = 1, *, timeout: float = 30, **kw: Any) -> list[ReceivedEmail]:
        return wait_for(
            lambda: (found := self.to(rcpt)) and len(found) >= count and found,
            timeout=timeout,
            what=f"{count} message(s) to {rcpt} (have {len(self.to(rcpt))})",
            **kw,
        )

    def summary(self) -> str:
        lines = [f"----- SMTP server on port {self.port}: {len(self.messages)} messages -----"]
        lines += [f"{', '.join(m.rcpt_tos)}: {m.subject}" for m in self.messages[-20:]]
        return "\n".join(lines)

    # Called by the handler, on the server's event-loop thread.

    def _next_reply(self, rcpt: str, stage: str) -> str | None:
        with self._lock:
            replies = self._scripts.get((rcpt.lower(), stage))
            return replies.popleft() if replies else None

    def _take_hold(self, rcpts: set[str], stage: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if hold.stage == stage and hold.rcpt in rcpts and not hold.reached.is_set():
                    hold.reached.set()
                    return hold
        return None

    def _record(self, envelope: Envelope, session: Session) -> None:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        received = ReceivedEmail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=parsed,
            received_at=time.monotonic(),
            session=id(session),
        )
        with self._lock:
            self._messages.append(received)


class _Handler:
    def __init__(self, recorder: SmtpRecorder):
        self.recorder = recorder

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self.recorder.rcpt_attempts[address.lower()] += 1
        reply = self.recorder._next_reply(address, "RCPT")
        if reply and not reply.startswith("250"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpts = {r.lower() for r in envelope.rcpt_tos}
        for rcpt in rcpts:
            reply = self.recorder._next_reply(rcpt, "DATA")
            if reply and not reply.startswith("250"):
                return reply
        hold = self.recorder._take_hold(rcpts, "DATA")
        if hold is not None:
            # Like a real MTA, a message is only accepted once the server
            # answers 250: a client that dies during the hold cancels this
            # coroutine and nothing is recorded.
            await self._wait(hold)
        stall = self.recorder._stall
        if stall is not None and stall._take():
            await stall._wait()  # likewise
        self.recorder._record(envelope, session)
        # A hold at QUIT waits for anyone who got a message in this session.
        self.recorder._session_rcpts.setdefault(id(session), set()).update(rcpts)
        return "250 2.0.0 OK: queued"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.recorder._lock:
            self.recorder.quits += 1
        rcpts = self.recorder._session_rcpts.pop(id(session), set())
        hold = self.recorder._take_hold(rcpts, "QUIT") if rcpts else None
        if hold is not None:
            await self._wait(hold)
        return "221 2.0.0 Bye"

    @staticmethod
    async def _wait(hold: Hold) -> None:
        try:
            while not hold.released.is_set():
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            hold.client_gone.set()
            raise


@pytest.fixture
def smtp_server() -> Iterator[SmtpRecorder]:
    """An SMTP server on a free port of 127.0.0.1 recording every message."""
    server = SmtpRecorder()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def real_smtp(smtp_server: SmtpRecorder, settings: Any) -> SmtpRecorder:
    """``smtp_server``, with Django's SMTP backend (as production has it)
    sending to it."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", smtp_server.port, False
    return smtp_server
