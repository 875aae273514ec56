"""What every Kafka client of the bridge (producer, admin) needs to reach the brokers.

Secrets come from the configuration (``${VAR}`` or ``password_file``) and go only into the
client objects: they are never logged, and the TLS key password never leaves the SSL context.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from bridge.config import KafkaConfig


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
