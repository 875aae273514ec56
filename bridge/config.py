"""The whole configuration as one frozen, typed tree, loaded from YAML plus the environment.

Load it with :func:`load_config`. Every mistake surfaces at start as a :class:`ConfigError`
naming the key (``source.subscriptions.0.business``), what was expected and the value given
(rendered by :mod:`bridge.config_errors`; validators raise its ``Invalid``), and unknown keys
are refused so a typo never silently falls back to a default.

Environment: ``${VAR}`` in any string value is replaced from the environment (a missing variable
is an error naming the key); ``INFOWAY_API_KEY`` is the fallback when ``source.api_key`` is
absent; ``KAFKA_BOOTSTRAP_SERVERS`` overrides ``kafka.bootstrap_servers``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from bridge.config_backfill import DEFAULT_REST_URL, BackfillConfig, RestUrl, hk_code_problem
from bridge.config_errors import Invalid, describe, describe_yaml_error, secrets_in
from bridge.config_sharding import ShardingConfig
from bridge.config_spool import DeliveryConfig, SpoolConfig
from bridge.errors import ConfigError
from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import DEFAULT_MAX_CODES_PER_CONNECTION
from bridge.protocol.session import StalePolicy
from bridge.records import Stream
from bridge.serialize import HeaderSet, WireFormat

API_KEY_ENV = "INFOWAY_API_KEY"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_URL = "wss://data.infoway.io/ws"

Business = Literal["stock", "crypto", "common", "japan", "india"]
PositiveSeconds = Annotated[float, Field(gt=0)]


def _kline_interval(value: Any) -> KlineInterval:
    """A label (``1h``) or the vendor's number (``5``), refused in the config's own words."""
    try:
        return KlineInterval.parse(value)
    except ValueError:
        labels = " ".join(interval.label for interval in KlineInterval)
        raise Invalid(f"expected one of {labels} or a vendor number 1-12") from None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubscriptionConfig(_Frozen):
    """One entry of ``source.subscriptions``: a business, its codes and the streams wanted.

    ``stale_after_seconds`` and ``on_stale`` override the ``source`` defaults for this entry,
    because markets close: a stock feed is silent at night and that is not a fault.
    """

    business: Business
    codes: tuple[str, ...] = Field(min_length=1)
    streams: tuple[Stream, ...] = (Stream.TRADE,)
    kline_types: tuple[Annotated[KlineInterval, BeforeValidator(_kline_interval)], ...] = (KlineInterval.MIN_1,)
    stale_after_seconds: PositiveSeconds | None = None
    on_stale: StalePolicy | None = None
    snapshot_on_reconnect: bool = False
    """Depth: after every reconnect, one REST ``batch_depth`` snapshot of the codes, published with source REST."""

    @field_validator("codes", mode="before")
    @classmethod
    def _split_codes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(code.strip() for code in value.split(",") if code.strip())
        return value

    @field_validator("codes")
    @classmethod
    def _codes_are_clean(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, code in enumerate(value):
            if not code or "," in code or any(char.isspace() for char in code):
                raise Invalid("expected a code without commas or spaces", key=index, value=code)
            if (problem := hk_code_problem(code)) is not None:
                raise Invalid(problem, key=index, value=code)
        return value

    @field_serializer("kline_types", when_used="json")
    def _interval_labels(self, intervals: tuple[KlineInterval, ...]) -> list[str]:
        return [interval.label for interval in intervals]

    @model_serializer(mode="wrap")
    def _without_unused_intervals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """kline_types only where klines are subscribed: elsewhere the default means nothing."""
        shown: dict[str, Any] = handler(self)
        if Stream.KLINE not in self.streams:
            shown.pop("kline_types", None)
        return shown


class ReconnectConfig(_Frozen):
    """Backoff between reconnect attempts: exponential with full jitter."""

    initial_delay_seconds: PositiveSeconds = 1.0
    max_delay_seconds: PositiveSeconds = 30.0
    reset_after_seconds: PositiveSeconds = 60.0
    """A connection that stayed up this long starts the backoff again from the initial delay."""

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise Invalid(
                f"expected at least initial_delay_seconds ({self.initial_delay_seconds:g})",
                key="max_delay_seconds",
                value=self.max_delay_seconds,
            )
        return self


class SourceConfig(_Frozen):
    """The vendor side: where to connect, with which key, for what."""

    url: str = DEFAULT_URL
    rest_url: RestUrl = DEFAULT_REST_URL
    """The REST API, for kline backfill after gaps (``backfill``)."""
    api_key: SecretStr
    subscriptions: tuple[SubscriptionConfig, ...] = Field(min_length=1)
    max_codes_per_connection: int = Field(DEFAULT_MAX_CODES_PER_CONNECTION, ge=1)
    heartbeat_interval_seconds: PositiveSeconds = 30.0
    frame_limit: int = Field(60, ge=2)
    frame_window_seconds: PositiveSeconds = 60.0
    max_frame_bytes: int = Field(1 << 20, ge=1024)
    open_timeout_seconds: PositiveSeconds = 10.0
    ack_timeout_seconds: PositiveSeconds = 8.0
    stale_after_seconds: PositiveSeconds = 60.0
    on_stale: StalePolicy = StalePolicy.RECONNECT
    reconnect: ReconnectConfig = ReconnectConfig()

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not re.match(r"^wss?://[^/?#]+", value):
            raise Invalid("expected a ws:// or wss:// URL")
        if "apikey=" in value or "?" in value:
            raise Invalid("expected the URL without a query string (the key goes in source.api_key)")
        return value

    @field_validator("api_key")
    @classmethod
    def _key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise Invalid(f"the API key is empty; set source.api_key or {API_KEY_ENV}")
        return value


class TopicsConfig(_Frozen):
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


class TopicCreationConfig(_Frozen):
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


class SaslConfig(_Frozen):
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


class TlsConfig(_Frozen):
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


class RegistryConfig(_Frozen):
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


class SerializationConfig(_Frozen):
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


class KafkaConfig(_Frozen):
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


class MetricsConfig(_Frozen):
    """Where ``/metrics`` is served."""

    host: str = "0.0.0.0"  # noqa: S104  (a scrape target in a pod must listen beyond loopback)
    port: int = Field(9464, ge=0, le=65535)


class BridgeConfig(_Frozen):
    """The root of the configuration."""

    source: SourceConfig
    kafka: KafkaConfig = KafkaConfig()
    serialization: SerializationConfig = SerializationConfig()
    metrics: MetricsConfig = MetricsConfig()
    spool: SpoolConfig = SpoolConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    sharding: ShardingConfig = ShardingConfig()
    backfill: BackfillConfig = BackfillConfig()

    def secrets(self) -> tuple[str, ...]:
        """Every secret the configuration holds, for scrubbing logs, errors and dead letters."""
        found = [self.source.api_key.get_secret_value()]
        if self.kafka.sasl is not None:
            found.append(self.kafka.sasl.resolved_password())
        if self.kafka.tls is not None and self.kafka.tls.key_password is not None:
            found.append(self.kafka.tls.key_password.get_secret_value())
        registry = self.serialization.registry
        if registry is not None and registry.password is not None:
            found.append(registry.password.get_secret_value())
        return tuple(secret for secret in found if secret)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, env: Mapping[str, str], path: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return env[name]

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, env, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, env, f"{path}.{index}") for index, item in enumerate(value)]
    return value


def parse_config(document: Mapping[str, Any], env: Mapping[str, str]) -> BridgeConfig:
    """Build the configuration from a parsed YAML document and an environment.

    Raises:
        ConfigError: naming every wrong key and what was expected.
    """
    expanded = _expand(dict(document), env, "")
    source = expanded.setdefault("source", {})
    if isinstance(source, dict) and source.get("api_key") in (None, "") and env.get(API_KEY_ENV):
        source["api_key"] = env[API_KEY_ENV]
    kafka = expanded.setdefault("kafka", {})
    if isinstance(kafka, dict) and env.get(BOOTSTRAP_ENV):
        kafka["bootstrap_servers"] = env[BOOTSTRAP_ENV]
    try:
        return BridgeConfig.model_validate(expanded)
    except ValidationError as exc:
        hints = {"source.api_key": f"required: set source.api_key or the environment variable {API_KEY_ENV}"}
        secrets = secrets_in(expanded, env, (API_KEY_ENV,))
        raise ConfigError(describe(exc, secrets, missing_hints=hints)) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read and validate a YAML configuration file.

    Raises:
        ConfigError: the file is missing or unreadable, is not YAML, or is invalid.
    """
    environment = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(describe_yaml_error(path, exc)) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'source' section at the top level")
    return parse_config(document, environment)
