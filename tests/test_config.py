"""Configuration: one typed tree from YAML and the environment, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config, parse_config
from bridge.errors import ConfigError
from bridge.protocol import KlineInterval
from bridge.records import Stream

MINIMAL = {"source": {"subscriptions": [{"business": "crypto", "codes": ["BTCUSDT", "ETHUSDT"]}]}}
ENV = {"INFOWAY_API_KEY": "k-123"}


def test_minimal_config_gets_sane_defaults() -> None:
    """Only subscriptions and a key are needed; the rest has the documented defaults."""
    config = parse_config(MINIMAL, ENV)
    assert config.source.url == "wss://data.infoway.io/ws"
    assert config.source.api_key.get_secret_value() == "k-123"
    assert config.source.subscriptions[0].streams == (Stream.TRADE,)
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.kafka.topics.for_stream(Stream.TRADE) == "infoway.trades"
    assert config.kafka.topics.dead_letter == "infoway.dlq"
    assert config.metrics.port == 9464


def test_variables_are_read_from_the_environment() -> None:
    """${VAR} in any string is replaced from the environment."""
    document = {"source": {**MINIMAL["source"], "api_key": "${MY_KEY}", "url": "ws://${HOST}/ws"}}
    config = parse_config(document, {"MY_KEY": "abc", "HOST": "127.0.0.1:8765"})
    assert config.source.api_key.get_secret_value() == "abc"
    assert config.source.url == "ws://127.0.0.1:8765/ws"


def test_missing_variable_names_the_key() -> None:
    """A ${VAR} that is not set fails at start naming the key and the variable."""
    document = {"source": {**MINIMAL["source"], "api_key": "${INFOWAY_API_KEY}"}}
    with pytest.raises(ConfigError, match=r"source\.api_key: environment variable INFOWAY_API_KEY is not set"):
        parse_config(document, {})


def test_missing_key_says_how_to_set_it() -> None:
    """No key anywhere: the error names source.api_key and INFOWAY_API_KEY."""
    with pytest.raises(ConfigError, match=r"source\.api_key: required: set source\.api_key or .*INFOWAY_API_KEY"):
        parse_config(MINIMAL, {})


def test_bootstrap_environment_overrides_the_file() -> None:
    """KAFKA_BOOTSTRAP_SERVERS wins over kafka.bootstrap_servers."""
    document = {**MINIMAL, "kafka": {"bootstrap_servers": "file:9092"}}
    config = parse_config(document, {**ENV, "KAFKA_BOOTSTRAP_SERVERS": "env:9092"})
    assert config.kafka.bootstrap_servers == "env:9092"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"business": "cryptos"}, r"source\.subscriptions\.0\.business: Input should be 'stock', 'crypto'"),
        ({"codes": []}, r"source\.subscriptions\.0\.codes"),
        ({"streams": ["trades"]}, r"source\.subscriptions\.0\.streams\.0"),
        ({"kline_types": ["3h"]}, r"unknown kline interval '3h'"),
        ({"codes": ["A B"]}, r"a code must be non-empty without commas or spaces"),
        ({"colour": "red"}, r"source\.subscriptions\.0\.colour: unknown key"),
    ],
)
def test_bad_subscription_names_the_key(change: dict[str, object], message: str) -> None:
    """Each mistake in a subscription entry names its key and what was expected."""
    entry = {"business": "crypto", "codes": ["BTCUSDT"]} | change
    with pytest.raises(ConfigError, match=message):
        parse_config({"source": {"subscriptions": [entry]}}, ENV)


def test_bad_url_and_ports_name_the_key() -> None:
    """A non-WebSocket URL and an out-of-range port are reported together, each by key."""
    document = {"source": {**MINIMAL["source"], "url": "http://x"}, "metrics": {"port": 70000}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, ENV)
    assert "source.url: Value error, expected a ws:// or wss:// URL" in str(caught.value)
    assert "metrics.port: Input should be less than or equal to 65535" in str(caught.value)


def test_key_in_the_url_is_refused() -> None:
    """The key belongs in source.api_key, never in the URL (where it would be logged)."""
    document = {"source": {**MINIMAL["source"], "url": "wss://data.infoway.io/ws?apikey=abc"}}
    with pytest.raises(ConfigError, match="without a query string"):
        parse_config(document, ENV)


def test_codes_as_a_comma_string_and_interval_labels() -> None:
    """Codes may be written as one comma string; kline intervals as labels or numbers."""
    entry = {"business": "stock", "codes": "AAPL.US, TSLA.US", "streams": ["kline"], "kline_types": ["1h", 8]}
    config = parse_config({"source": {"subscriptions": [entry]}}, ENV)
    subscription = config.source.subscriptions[0]
    assert subscription.codes == ("AAPL.US", "TSLA.US")
    assert subscription.kline_types == (KlineInterval.HOUR_1, KlineInterval.DAY_1)


def test_the_secret_is_masked_when_printed() -> None:
    """Printing or dumping the config never shows the key."""
    config = parse_config(MINIMAL, ENV)
    assert "k-123" not in repr(config)
    assert "k-123" not in config.model_dump_json()


def test_config_is_frozen() -> None:
    """The configuration cannot be changed after start."""
    config = parse_config(MINIMAL, ENV)
    with pytest.raises(ValueError, match="frozen"):
        config.metrics.port = 1  # type: ignore[misc]


def test_file_errors(tmp_path: Path) -> None:
    """A missing file, bad YAML and a non-mapping document each get a clear message."""
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml", ENV)
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad, ENV)
    bad.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad, ENV)


def test_the_example_config_is_valid() -> None:
    """examples/bridge.yaml, shipped as documentation, loads."""
    example = Path(__file__).resolve().parent.parent / "examples" / "bridge.yaml"
    config = load_config(example, ENV)
    assert len(config.source.subscriptions) == 2


def test_sasl_ssl_needs_credentials_and_reads_a_password_file(tmp_path: Path) -> None:
    """SASL_SSL without kafka.sasl is refused; a password file is read, trimmed, and never printed."""
    with pytest.raises(ConfigError, match=r"security_protocol SASL_SSL needs kafka\.sasl"):
        parse_config({**MINIMAL, "kafka": {"security_protocol": "SASL_SSL"}}, ENV)
    secret = tmp_path / "password"
    secret.write_text("s3cret-pw\n", encoding="utf-8")
    kafka = {
        "security_protocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": "u", "password_file": str(secret)},
    }
    config = parse_config({**MINIMAL, "kafka": kafka}, ENV)
    assert config.kafka.sasl is not None
    assert config.kafka.sasl.resolved_password() == "s3cret-pw"
    assert "s3cret-pw" not in config.model_dump_json()


def test_sasl_password_from_the_environment_is_masked() -> None:
    """A ${VAR} password is a secret: masked when the config is printed."""
    kafka = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "PLAIN", "username": "u", "password": "${PW}"},
    }
    config = parse_config({**MINIMAL, "kafka": kafka}, {**ENV, "PW": "env-pw-1"})
    assert "env-pw-1" not in config.model_dump_json()
    assert config.kafka.sasl is not None
    assert config.kafka.sasl.resolved_password() == "env-pw-1"


def test_tls_files_must_exist_and_match_the_protocol(tmp_path: Path) -> None:
    """TLS file paths are checked at start, and TLS settings without an SSL protocol are refused."""
    with pytest.raises(ConfigError, match="ca_file: no such file"):
        parse_config(
            {**MINIMAL, "kafka": {"security_protocol": "SSL", "tls": {"ca_file": str(tmp_path / "no.pem")}}}, ENV
        )
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="security_protocol is not SSL or SASL_SSL"):
        parse_config({**MINIMAL, "kafka": {"tls": {"ca_file": str(ca)}}}, ENV)


def test_confluent_format_needs_a_registry() -> None:
    """serialization.format confluent without a registry URL is refused at start."""
    with pytest.raises(ConfigError, match=r"format confluent needs serialization\.registry\.url"):
        parse_config({**MINIMAL, "serialization": {"format": "confluent"}}, ENV)
    config = parse_config(
        {**MINIMAL, "serialization": {"format": "confluent", "registry": {"url": "http://r:8081/", "password": "p"}}},
        ENV,
    )
    assert config.serialization.registry is not None
    assert config.serialization.registry.url == "http://r:8081"
