"""Every error the bridge raises, split by who is to blame.

::

    BridgeError                      root: catch this to catch anything of ours
    ├── ConfigError                  the operator's configuration is wrong (fix the file, restart)
    ├── LocalProtocolError           we built a request the vendor protocol forbids (a bridge bug)
    ├── RemoteProtocolError          the vendor sent something we cannot use
    │   └── MalformedPayload         a push whose payload misses a field or carries a bad number
    ├── KafkaError                   the broker side failed
    │   └── TopicMissing             a topic the bridge needs does not exist and may not be created
    ├── RegistryError                the schema registry refused a request or could not be reached
    └── RestError                    the vendor's REST API refused or failed a request (``cause``: a RestCause)
        ├── RestRetriable            rate limited or a transport failure: back off and try again
        ├── RestQuotaExhausted       the key's daily quota is spent (502): pause until the next UTC day
        ├── RestHistoryLimit         ``timestamp`` is older than the plan allows (513): clamp to ``earliest``
        └── RestTerminal             bad key (401), expired key (509), market not bought (514), our own bad
                                     request (503, 505-507) or unknown codes (508): retrying cannot help

``retriable`` on the class says whether trying again can help. Vendor refusals are not
exceptions but events (:class:`bridge.protocol.VendorError`), classified by the catalogue in
:mod:`bridge.protocol.codes`. Library exceptions are always re-raised ``from`` the original.
"""

from __future__ import annotations

import enum
from datetime import datetime


class BridgeError(Exception):
    """Root of the bridge's exceptions."""

    retriable: bool = False


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and what was expected."""


class LocalProtocolError(BridgeError):
    """We tried to do something the vendor protocol does not allow."""


class RemoteProtocolError(BridgeError):
    """The vendor sent something the bridge cannot turn into a record."""


class MalformedPayload(RemoteProtocolError):
    """A push arrived whose payload cannot be normalised; ``reason`` is a short, stable phrase.

    The reason is used as a dead-letter reason and a metric label, so it never contains
    values from the frame (those go to the dead-letter record's raw text).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class KafkaError(BridgeError):
    """The broker could not take what we produced."""

    retriable = True


class TopicMissing(KafkaError):
    """A configured topic does not exist and ``kafka.create_topics`` is off."""

    retriable = False


class RegistryError(BridgeError):
    """The schema registry refused a request or could not be reached; the message says which and why."""

    retriable = True


class RestCause(enum.StrEnum):
    """Why a REST request failed; the value is the ``outcome`` metric label and the backfill report's reason."""

    RATE_LIMITED = "rate_limited"
    """``{"detail": "Rate limit exceeded"}`` (HTTP 200 or 429), a 429 page, or ``ret`` 501."""
    TRANSPORT = "transport"
    """No usable answer: refused or reset, a timeout, a CDN status (499, 502, 524), a body that is not JSON."""
    QUOTA_EXHAUSTED = "quota_exhausted"
    """``ret`` 502: the key's requests for the day are spent."""
    HISTORY_LIMIT = "history_limit"
    """``ret`` 513: ``timestamp`` is before the plan's history window."""
    UNAUTHORIZED = "unauthorized"
    """HTTP 401: a bad or missing key."""
    EXPIRED = "expired"
    """``ret`` 509: the key's permission has expired."""
    NO_PERMISSION = "no_permission"
    """``ret`` 514: the plan does not cover this market."""
    UNKNOWN_CODES = "unknown_codes"
    """``ret`` 508 (``All product not exists``): unknown codes, a wrong business, an unpadded HK code."""
    BAD_REQUEST = "bad_request"
    """``ret`` 503, 505, 506, 507 or an RFC 7807 body: the bridge built a request the API forbids (a bug)."""
    SERVER_ERROR = "server_error"
    """``ret`` 500 whose ``msg`` names no known code, or another ``ret``: reported, not retried."""


class RestError(BridgeError):
    """The vendor's REST API did not answer a request with data.

    Args:
        cause: what kind of failure, for control flow and metric labels.
        detail: the vendor's message (never the key: requests carry it in a header only).
        code: the vendor's ``ret`` (unwrapped from ``msg`` when ``ret`` was 500) or the HTTP status.
    """

    def __init__(self, cause: RestCause, detail: str, code: int | None = None) -> None:
        super().__init__(f"{cause.value}{'' if code is None else f' ({code})'}: {detail}")
        self.cause = cause
        self.detail = detail
        self.code = code


class RestRetriable(RestError):
    """Rate limited or a transport failure: the same request may succeed after a backoff."""

    retriable = True


class RestQuotaExhausted(RestError):
    """The daily quota is spent: no request can succeed before the next UTC day."""


class RestHistoryLimit(RestError):
    """``timestamp`` was too old; ``earliest`` is the oldest the plan allows, when the message said it."""

    def __init__(self, detail: str, earliest: datetime | None, code: int | None = 513) -> None:
        super().__init__(RestCause.HISTORY_LIMIT, detail, code)
        self.earliest = earliest


class RestTerminal(RestError):
    """Retrying cannot help: the key, the plan or the request itself is wrong."""
