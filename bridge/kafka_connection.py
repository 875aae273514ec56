"""What every Kafka client of the bridge (producer, admin) needs to reach the brokers, and to let go of them.

Secrets come from the configuration (``${VAR}`` or ``password_file``) and go only into the
client objects: they are never logged, and the TLS key password never leaves the SSL context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from bridge.config_kafka import KafkaConfig

log = logging.getLogger(__name__)


def connection_options(config: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaAdminClient``."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": int(config.request_timeout_seconds * 1000),
    }
    if config.security_protocol.endswith("SSL"):
        tls = config.tls
        key_password = tls.key_password.get_secret_value() if tls and tls.key_password else None
        options["ssl_context"] = create_ssl_context(
            cafile=str(tls.ca_file) if tls and tls.ca_file else None,
            certfile=str(tls.cert_file) if tls and tls.cert_file else None,
            keyfile=str(tls.key_file) if tls and tls.key_file else None,
            password=key_password,
        )
    if config.sasl is not None:
        options["sasl_mechanism"] = config.sasl.mechanism
        options["sasl_plain_username"] = config.sasl.username
        options["sasl_plain_password"] = config.sasl.resolved_password()
    return options


async def stop_quietly(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    """Stop a producer that may be broken: bounded, its errors are not news, and its sockets get closed.

    A producer whose sender task was cancelled re-raises that cancellation from ``stop()``; it
    is swallowed here unless it is our own task that is being cancelled.
    """
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:
        log.debug("a broken Kafka producer failed to stop cleanly: %r", exc)
    # stop() that timed out or failed leaves the connections open; close them for good.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.client.close(), timeout)


def producer_is_dead(producer: AIOKafkaProducer) -> bool:
    """Whether aiokafka's sender task has ended: the producer will never send again (#1017).

    aiokafka exposes no public way to ask; an attribute it lacks counts as alive.
    """
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return bool(task is not None and task.done())


def describe_error(exc: BaseException) -> str:
    """``Class: message`` for a log line, once: aiokafka's messages already start with their class name."""
    name, text = type(exc).__name__, str(exc)
    return text if name in text else f"{name}: {text}" if text else name
