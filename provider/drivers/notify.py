"""Notifications by log and by e-mail (SMTP), configured in `[notify]`.

Reference gicap-domain.md §6: iCAP e-mails the system contact and root, and syslogs most of
the same messages: rights acquired from an inactive member, seized rights expired and
reverted, compliance exceptions, TiCAP expiration reminders. Here every notification is
logged; it is also mailed when `smtp_host` and `to` are set:

    [notify]
    smtp_host = "127.0.0.1"      # no SMTP when empty
    smtp_port = 25
    from = "gm-provider@localhost"
    to = ["root@localhost"]
    timeout = 10.0

Sending runs smtplib in a worker thread. A failed send is logged and never fails the
operation that caused it (the log line is the durable record). `tell()` logs now and mails
in the background, in order: the caller (a method an administrator or cron waits for) does
not wait for a slow or silent mail server, and its audit line follows at once. The events'
mails, which must not be lost, are owed in the store instead (provider.events).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

__all__ = ["Notifier", "NotifySettings", "drain_told", "notify_settings"]

log = logging.getLogger("gm-provider.notify")


@dataclass(frozen=True)
class NotifySettings:
    smtp_host: str = ""
    smtp_port: int = 25
    sender: str = "gm-provider@localhost"
    to: tuple[str, ...] = ()
    timeout: float = 10.0
    # A mail the SMTP server did not take is tried again after this many seconds (the owed
    # mails of provider.events; `[notify] retry_s`).
    retry: float = 60.0


class Notifier:
    def __init__(self, settings: NotifySettings, node: str) -> None:
        self.settings = settings
        self.node = node
        self._outbox: asyncio.Queue[tuple[str, str]] | None = None
        self._sender: asyncio.Task[None] | None = None
        _NOTIFIERS.add(self)

    def tell(self, subject: str, body: str) -> None:
        """Log the notice now and mail it in the background, after the ones told before it.
        Call from the event loop."""
        log.warning("%s: %s", subject, body)
        if not self.settings.smtp_host or not self.settings.to:
            return
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        self._outbox.put_nowait((subject, body))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_told())

    async def _send_told(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        while not outbox.empty():
            subject, body = outbox.get_nowait()
            try:
                await self.notify(subject, body, log_notice=False)
            except Exception:
                log.exception("cannot e-mail %r", subject)

    async def drain(self) -> None:
        """Wait until what was told has been mailed (or failed): tests and shutdown."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    def _message(self, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(self.settings.to)
        # One line: a header cannot hold a line break, and names in it come from indications.
        msg["Subject"] = " ".join(subject.split())
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="gm-provider")
        msg.set_content(f"{body}\n\n-- \nGroup Manager {self.node}\n")
        return msg

    def _send(self, msg: EmailMessage) -> None:
        s = self.settings
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout)
        try:
            smtp.send_message(msg)
        except BaseException:
            smtp.close()
            raise
        # Taken (250 to the message): what the server answers to QUIT changes nothing. The
        # context manager raised on a QUIT answered other than 221, and the owed mail was
        # then sent again every retry for six hours.
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    async def notify(self, subject: str, body: str, *, log_notice: bool = True) -> bool:
        """Log the notice and mail it; False only when the SMTP server could not take it (the
        error is logged). Without `[notify]` the log is the whole notice: True.
        `log_notice=False`: a retry of a notice logged already."""
        if log_notice:
            log.warning("%s: %s", subject, body)
        if not self.settings.smtp_host or not self.settings.to:
            return True
        try:
            await asyncio.to_thread(self._send, self._message(subject, body))
        except (OSError, smtplib.SMTPException) as exc:
            log.error("cannot e-mail %r to %s: %s", subject, ", ".join(self.settings.to), exc)
            return False
        return True


# Every notifier of the process, for `drain_told` at shutdown.
_NOTIFIERS: weakref.WeakSet[Notifier] = weakref.WeakSet()


async def drain_told(timeout: float) -> None:
    """Shutdown: wait up to `timeout` seconds for the notices told in the background to be
    mailed (or to fail), so that a stop or a restart does not drop them."""
    pending = [n.drain() for n in list(_NOTIFIERS)]
    if not pending:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*pending), timeout)
    except TimeoutError:
        log.warning("stopping with e-mail not sent after %g s; the log has every notice", timeout)


def notify_settings(config: Any) -> NotifySettings:
    section: Mapping[str, Any] = config.section("notify")
    known = {"smtp_host", "smtp_port", "from", "to", "timeout", "retry_s"}
    for key in section:
        if key not in known:
            raise config.error(
                "notify", key, f"unknown setting notify.{key}; known: {', '.join(sorted(known))}."
            )
    d = NotifySettings()
    host = section.get("smtp_host", d.smtp_host)
    if not isinstance(host, str):
        raise config.error("notify", "smtp_host", "notify.smtp_host must be a host name.")
    port = section.get("smtp_port", d.smtp_port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise config.error("notify", "smtp_port", "notify.smtp_port must be a port number.")
    sender = section.get("from", d.sender)
    if not isinstance(sender, str) or "@" not in sender:
        raise config.error("notify", "from", "notify.from must be an e-mail address.")
    to = section.get("to", [])
    if isinstance(to, str):
        to = [to]
    # Reference §7: a contact address of spaces once corrupted the GiCAP database; validate.
    if not isinstance(to, list) or not all(isinstance(a, str) and "@" in a.strip() for a in to):
        raise config.error("notify", "to", "notify.to must be a list of e-mail addresses.")
    timeout = section.get("timeout", d.timeout)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise config.error("notify", "timeout", "notify.timeout must be seconds > 0.")
    retry = section.get("retry_s", d.retry)
    if isinstance(retry, bool) or not isinstance(retry, int | float) or retry <= 0:
        raise config.error("notify", "retry_s", "notify.retry_s must be seconds > 0.")
    return NotifySettings(
        host, port, sender, tuple(a.strip() for a in to), float(timeout), float(retry)
    )
