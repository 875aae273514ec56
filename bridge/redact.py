"""Keep the API key inside the process: scrub it from URLs, messages and raw frames.

The vendor takes the key in the query string (protocol page), so any URL, exception text or
log line that mentions the connection can carry it. Everything that leaves the process
(logs, errors, the dead-letter topic) passes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_QUERY_KEY = re.compile(r"(apikey=)[^&\s\"'#]*", re.IGNORECASE)
MASK = "***"
MIN_LITERAL_SECRET = 6


def _mask(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``apikey=...`` masked and every literal secret replaced by ``***``."""
    # A function, not a "\\1" template: templates are compiled lazily by an import, which fails
    # when a log line is emitted during interpreter shutdown (an unclosed client's __del__).
    scrubbed = _QUERY_KEY.sub(_mask, text)
    for secret in secrets:
        # A very short "secret" would mask every occurrence of a common letter and wreck the
        # line; real keys are long, and apikey=... is masked above whatever its length.
        if len(secret) >= MIN_LITERAL_SECRET:
            scrubbed = scrubbed.replace(secret, MASK)
    return scrubbed


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs every record's final message, exception text included.

    Installed on the root handler, it is the last line of defence: code should already log
    redacted URLs, but a library's exception message may quote the URL it failed on.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message with its redacted rendering; never drops a record."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        record.msg = redact(message, self._secrets)
        record.args = None
        return True
