"""Every error the bridge raises, split by who is to blame.

::

    BridgeError                      root: catch this to catch anything of ours
    ├── ConfigError                  the operator's configuration is wrong (fix the file, restart)
    ├── LocalProtocolError           we built a request the vendor protocol forbids (a bridge bug)
    ├── RemoteProtocolError          the vendor sent something we cannot use
    │   └── MalformedPayload         a push whose payload misses a field or carries a bad number
    ├── KafkaError                   the broker side failed
    │   └── TopicMissing             a topic the bridge needs does not exist and may not be created
    └── RegistryError                the schema registry refused a request or could not be reached

``retriable`` on the class says whether trying again can help. Vendor refusals are not
exceptions but events (:class:`bridge.protocol.VendorError`), classified by the catalogue in
:mod:`bridge.protocol.codes`. Library exceptions are always re-raised ``from`` the original.
"""

from __future__ import annotations


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
