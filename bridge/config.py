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
    BeforeValidator,
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
from bridge.config_base import Frozen, PositiveSeconds
from bridge.config_errors import Invalid, describe, describe_yaml_error, secrets_in
from bridge.config_kafka import KafkaConfig, SerializationConfig
from bridge.config_sharding import ShardingConfig
from bridge.config_spool import DeliveryConfig, SpoolConfig
from bridge.errors import ConfigError
from bridge.protocol.codes import KlineInterval
from bridge.protocol.requests import DEFAULT_MAX_CODES_PER_CONNECTION
from bridge.protocol.session import StalePolicy
from bridge.records import Stream

API_KEY_ENV = "INFOWAY_API_KEY"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_URL = "wss://data.infoway.io/ws"

Business = Literal["stock", "crypto", "common", "japan", "india"]


def _kline_interval(value: Any) -> KlineInterval:
    """A label (``1h``) or the vendor's number (``5``), refused in the config's own words."""
    try:
        return KlineInterval.parse(value)
    except ValueError:
        labels = " ".join(interval.label for interval in KlineInterval)
        raise Invalid(f"expected one of {labels} or a vendor number 1-12") from None


class SubscriptionConfig(Frozen):
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


class ReconnectConfig(Frozen):
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


class SourceConfig(Frozen):
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


class MetricsConfig(Frozen):
    """Where ``/metrics`` is served."""

    host: str = "0.0.0.0"  # noqa: S104  (a scrape target in a pod must listen beyond loopback)
    port: int = Field(9464, ge=0, le=65535)


class BridgeConfig(Frozen):
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
