"""The ``kafka`` and ``serialization`` sections of the configuration: where records go and how they are framed.

Part of the one frozen configuration tree (:mod:`bridge.config`); kept apart only to keep each
module small.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.config_base import Frozen, PositiveSeconds
from bridge.config_errors import Invalid
from bridge.errors import ConfigError
from bridge.records import Stream
from bridge.serialize import HeaderSet, WireFormat


class TopicsConfig(Frozen):
    """Topic names per stream, plus the dead-letter topic."""

    trade: str = "infoway.trades"
    depth: str = "infoway.depth"
    kline: str = "infoway.kline"
    dead_letter: str = "infoway.dlq"
    gap: str | None = None
    """Where gap records go (``schemas/gap.avsc``); off unless set."""
    offsets: str = "infoway.bridge.offsets"
    """Exactly-once delivery: the spool position committed with each transaction (compacted, one partition)."""

    def for_stream(self, stream: Stream) -> str:
        """The topic a stream's records go to."""
        topic: str = getattr(self, stream.value)
        return topic


class TopicCreationConfig(Frozen):
    """How topics are created at start when ``kafka.create_topics`` is on.

    ``replication_factor: -1`` takes the broker's ``default.replication.factor``, which is right
    both for a one-broker development cluster and for a production one.
    """

    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(-1, ge=-1)
    config: dict[str, str] = Field(
        default_factory=lambda: {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    )

    @field_validator("replication_factor")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise Invalid("expected -1 (the broker's default) or a positive number of replicas")
        return value


class SaslConfig(Frozen):
    """SASL credentials; the password from here, from ``password_file``, or from ``${VAR}``."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> SaslConfig:
        if (self.password is None) == (self.password_file is None):
            raise Invalid("expected exactly one of password or password_file")
        return self

    def resolved_password(self) -> str:
        """The password, read from ``password_file`` when that is how it was given."""
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"kafka.sasl.password_file: cannot read {self.password_file}: {exc.strerror}") from exc


class TlsConfig(Frozen):
    """Files for TLS to the brokers: a CA to trust, and a client certificate for mutual TLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _pairs(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise Invalid("expected both cert_file and key_file, or neither")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise Invalid("expected an existing file (no such file)", key=name, value=str(path))
        return self


class RegistryConfig(Frozen):
    """A Confluent-compatible schema registry (Confluent, Apicurio's ccompat API, Karapace)."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    timeout_seconds: PositiveSeconds = 10.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#]+", value):
            raise Invalid("expected an http:// or https:// URL")
        return value.rstrip("/")


class SerializationConfig(Frozen):
    """How record values are framed on the wire.

    ``raw`` (the default): plain Avro binary, which Flink's ``avro`` format and Spark's
    ``from_avro`` read as they are; ``confluent``: magic byte 0 and a 4-byte schema id from the
    registry (subjects ``<topic>-value``); ``single-object``: Avro's single-object encoding (0xC3
    0x01 and the schema's CRC-64-AVRO fingerprint), self-describing without a registry.
    """

    format: WireFormat = WireFormat.RAW
    registry: RegistryConfig | None = None
    headers: HeaderSet = HeaderSet.LEAN
    """Which headers a market record carries (``bridge.framing.HeaderSet``)."""

    @model_validator(mode="after")
    def _registry_for_confluent(self) -> SerializationConfig:
        if self.format is WireFormat.CONFLUENT and self.registry is None:
            raise Invalid("expected a registry with a url: format confluent needs one", key="registry")
        return self


class KafkaConfig(Frozen):
    """The broker side. The producer is always idempotent with ``acks=all``."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "infoway-bridge"
    topics: TopicsConfig = TopicsConfig()
    create_topics: bool = True
    topic_creation: TopicCreationConfig = TopicCreationConfig()
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl: SaslConfig | None = None
    tls: TlsConfig | None = None
    dead_letter_max_raw_chars: int = Field(65_536, ge=256)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    linger_ms: int = Field(5, ge=0)
    max_batch_bytes: int = Field(1 << 20, ge=1024)
    request_timeout_seconds: PositiveSeconds = 30.0
    flush_timeout_seconds: PositiveSeconds = 15.0
    delivery_timeout_seconds: PositiveSeconds = 120.0
    """How long one batch may wait for the broker before the sink retries it (the broker may be down)."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise Invalid("expected host:port[,host:port...] with ports from 1 to 65535")
        return value

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaConfig:
        protocol = self.security_protocol
        if protocol.startswith("SASL") and self.sasl is None:
            raise Invalid(f"required with security_protocol {protocol} (username and a password)", key="sasl")
        if not protocol.startswith("SASL") and self.sasl is not None:
            raise Invalid(
                "expected SASL_PLAINTEXT or SASL_SSL, as kafka.sasl is set", key="security_protocol", value=protocol
            )
        if self.tls is not None and not protocol.endswith("SSL"):
            raise Invalid("expected SSL or SASL_SSL, as kafka.tls is set", key="security_protocol", value=protocol)
        return self
