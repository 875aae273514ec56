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
    ("change", "line"),
    [
        (
            {"business": "cryptos"},
            "source.subscriptions.0.business: expected 'stock', 'crypto', 'common', 'japan' or 'india', got 'cryptos'",
        ),
        ({"codes": []}, "source.subscriptions.0.codes: expected at least 1 item, got []"),
        ({"streams": ["trades"]},
         "source.subscriptions.0.streams.0: expected 'trade', 'depth' or 'kline', got 'trades'"),
        (
            {"kline_types": ["1m", "3h"]},
            "source.subscriptions.0.kline_types.1: expected one of 1m 5m 15m 30m 1h 2h 4h 1d 1w 1M 1Q 1y "
            "or a vendor number 1-12, got '3h'",
        ),
        (
            {"kline_types": [13]},
            "source.subscriptions.0.kline_types.0: expected one of 1m 5m 15m 30m 1h 2h 4h 1d 1w 1M 1Q 1y "
            "or a vendor number 1-12, got 13",
        ),
        ({"codes": ["BTCUSDT", "A B"]},
         "source.subscriptions.0.codes.1: expected a code without commas or spaces, got 'A B'"),
        ({"stale_after_seconds": "soon"}, "source.subscriptions.0.stale_after_seconds: expected a number, got 'soon'"),
        ({"colour": "red"}, "source.subscriptions.0.colour: unknown key (check the spelling against the README's "
         "configuration reference)"),
    ],
)  # fmt: skip
def test_a_bad_subscription_entry_is_one_error_naming_key_expectation_and_value(
    change: dict[str, object], line: str
) -> None:
    """A mistake in one entry is reported once, as key, expectation and the value given, and nothing else
    (no false "source.subscriptions: at least 1 item" for the list that has the entry)."""
    entry = {"business": "crypto", "codes": ["BTCUSDT"]} | change
    with pytest.raises(ConfigError) as caught:
        parse_config({"source": {"subscriptions": [entry]}}, ENV)
    assert str(caught.value) == f"invalid configuration: {line}"


@pytest.mark.parametrize(
    ("document", "line"),
    [
        ({"metrics": {"port": "abc"}}, "metrics.port: expected a whole number, got 'abc'"),
        ({"sharding": {"mode": "grp"}}, "sharding.mode: expected 'none', 'static' or 'group', got 'grp'"),
        (
            {"sharding": {"mode": "static", "count": 3, "instance": "bridge"}},
            "sharding: static mode needs sharding.index, or an instance name ending in -<number> "
            "(a StatefulSet pod name); got instance 'bridge'",
        ),
        ({"sharding": {"mode": "static", "count": 2, "index": 5}}, "sharding: index (5) must be below count (2)"),
        ({"metrics": {"port": 70000}}, "metrics.port: expected at most 65535, got 70000"),
        ({"kafka": {"create_topics": "maybe"}}, "kafka.create_topics: expected true or false, got 'maybe'"),
        (
            {"delivery": {"transaction_timeout_seconds": 0}},
            "delivery.transaction_timeout_seconds: expected at least 1, got 0",
        ),
        ({"kafka": {"linger_ms": 1.5}}, "kafka.linger_ms: expected a whole number, got 1.5"),
        ({"kafka": {"topics": {"gap": 5}}}, "kafka.topics.gap: expected a string (quote it in YAML), got 5"),
        ({"metrics": [9464]}, "metrics: expected a mapping (a YAML section of keys), got [9464]"),
        ({"serialization": {"format": "avro"}},
         "serialization.format: expected 'raw', 'single-object' or 'confluent', got 'avro'"),
        ({"serialization": {"format": "confluent"}},
         "serialization.registry: expected a registry with a url: format confluent needs one"),
        ({"kafka": {"bootstrap_servers": "127.0.0.1:abc"}},
         "kafka.bootstrap_servers: expected host:port[,host:port...] with ports from 1 to 65535, got '127.0.0.1:abc'"),
        ({"kafka": {"bootstrap_servers": "a:9092,b"}},
         "kafka.bootstrap_servers: expected host:port[,host:port...] with ports from 1 to 65535, got 'a:9092,b'"),
        ({"kafka": {"security_protocol": "SASL_SSL"}},
         "kafka.sasl: required with security_protocol SASL_SSL (username and a password)"),
        ({"kafka": {"sasl": {"username": "u", "password": "p"}}},
         "kafka.security_protocol: expected SASL_PLAINTEXT or SASL_SSL, as kafka.sasl is set, got 'PLAINTEXT'"),
        ({"source": {"reconnect": {"initial_delay_seconds": 5, "max_delay_seconds": 2}}},
         "source.reconnect.max_delay_seconds: expected at least initial_delay_seconds (5), got 2.0"),
        ({"source": {"subscriptions": []}}, "source.subscriptions: expected at least 1 item, got []"),
        ({"colour": "red"}, "colour: unknown key (check the spelling against the README's configuration reference)"),
    ],
)  # fmt: skip
def test_each_error_names_key_expectation_and_the_value_given(
    document: dict[str, dict[str, object]], line: str
) -> None:
    """Errors speak of the configuration, not of pydantic: no "Value error," and no internal type names."""
    merged = {**MINIMAL, **document}
    merged["source"] = {**MINIMAL["source"], **document.get("source", {})}
    with pytest.raises(ConfigError) as caught:
        parse_config(merged, ENV)
    assert str(caught.value) == f"invalid configuration: {line}"


def test_several_errors_are_listed_under_one_heading() -> None:
    """Two mistakes give a count and one indented line each, in the file's order."""
    document = {"source": {**MINIMAL["source"], "url": "http://x"}, "metrics": {"port": 70000}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, ENV)
    assert str(caught.value) == (
        "invalid configuration: 2 errors:\n"
        "  source.url: expected a ws:// or wss:// URL, got 'http://x'\n"
        "  metrics.port: expected at most 65535, got 70000"
    )


def test_secrets_are_never_echoed() -> None:
    """A bad value next to a secret is shown; the secret, even inside a URL or from ${VAR}, never is."""
    document = {
        "source": {**MINIMAL["source"], "api_key": "${KEY}", "url": "wss://h/ws?apikey=${KEY}"},
        "kafka": {"security_protocol": "SASL_PLAINTEXT", "sasl": {"username": "u", "password": ["pw-secret-1"]}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, {"KEY": "key-secret-1"})
    message = str(caught.value)
    assert "key-secret-1" not in message
    assert "pw-secret-1" not in message
    assert "  source.url: expected the URL without a query string (the key goes in source.api_key), got" in message
    assert message.endswith("  kafka.sasl.password: expected a string (quote it in YAML)")


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
    bad.write_text("source:\n  subscriptions: [{business: crypto}\nkafka: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(bad, ENV)
    assert str(caught.value) == (
        f"{bad}, line 3, column 1: not valid YAML: expected ',' or ']', but got '<scalar>' "
        "(while parsing a flow sequence at line 2, column 18)"
    ), "the file, the line and the column, never <unicode string>"
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
    with pytest.raises(ConfigError, match=r"kafka\.tls\.ca_file: expected an existing file \(no such file\), got '/"):
        parse_config(
            {**MINIMAL, "kafka": {"security_protocol": "SSL", "tls": {"ca_file": str(tmp_path / "no.pem")}}}, ENV
        )
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kafka\.security_protocol: expected SSL or SASL_SSL, as kafka\.tls is set"):
        parse_config({**MINIMAL, "kafka": {"tls": {"ca_file": str(ca)}}}, ENV)


def test_confluent_format_needs_a_registry() -> None:
    """serialization.format confluent without a registry URL is refused at start."""
    config = parse_config(
        {**MINIMAL, "serialization": {"format": "confluent", "registry": {"url": "http://r:8081/", "password": "p"}}},
        ENV,
    )
    assert config.serialization.registry is not None
    assert config.serialization.registry.url == "http://r:8081"


def test_sharding_defaults_to_one_replica_and_a_control_topic_per_group() -> None:
    """Unsharded by default; a group's control topic is named after it, so deployments never share one."""
    config = parse_config({"source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["A"]}]},
                           "sharding": {"mode": "group", "group": "desk-a"}}, {})  # fmt: skip
    assert config.sharding.control_topic == "infoway.bridge.shards.desk-a"
    assert parse_config({"source": config.source.model_dump() | {"api_key": "k"}}, {}).sharding.mode.value == "none"
