"""The bridge's ``kafka.security_protocol``, ``kafka.sasl`` and ``kafka.tls`` against a real secured broker.

``secured_broker`` (tests/conftest.py) is a local Kafka with SASL_PLAINTEXT and SASL_SSL listeners
for user ``bridge``: each test configures the bridge from a YAML-shaped document through
``parse_config``, creates its topics and produces through ``KafkaSink`` on a secured listener, then
reads the records back over the broker's unauthenticated PLAINTEXT listener.

Logging runs as the bridge sets it up at ``--log-level DEBUG`` (``bridge.logs.configure_logging``),
which keeps aiokafka at WARNING: aiokafka's own DEBUG lines print each request, and a PLAIN
SaslAuthenticate request carries the password in clear, so that cap is what keeps it out of the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.config_kafka import KafkaConfig
from bridge.errors import KafkaError
from bridge.logs import configure_logging, guard_library_loggers
from bridge.topics import ensure_topics
from tests.conftest import SASL_PASSWORD, SASL_USER, LocalBroker
from tests.harness import SpooledSink, topics
from tests.kafka_tools import consume
from tests.test_sink import message, started_sink

RECORDS = 50
WRONG_PASSWORD = "not-the-bridge-secret-7f3a"


def secured_section(
    bootstrap: str, sasl: dict[str, Any], env: dict[str, str] | None = None, **kafka: Any
) -> KafkaConfig:
    """A validated ``kafka`` section with SASL credentials, built the way the bridge loads its YAML."""
    document = {
        "source": {"api_key": "k", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": topics("sec"),
            "security_protocol": "SASL_PLAINTEXT",
            "sasl": sasl,
            "request_timeout_seconds": 15,
            **kafka,
        },
    }
    return parse_config(document, env or {}).kafka


@contextmanager
def bridge_logging_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The bridge's own log setup at DEBUG for the block, with pytest's capture kept attached to it.

    configure_logging replaces the root handlers, so pytest's are put back next to the bridge's; on
    exit the bridge's handler goes and the levels it set are restored for the tests that follow.
    """
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    pytest_handlers, root_level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in ("aiokafka", "websockets")}
    configure_logging("text", "DEBUG")
    bridge_handlers = list(root.handlers)
    for handler in pytest_handlers:
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in bridge_handlers:
            root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in libraries.items():
            logging.getLogger(name).setLevel(level)


def assert_never_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], secret: str) -> None:
    """Neither the bridge's log output (stderr) nor any captured record, its arguments or traceback has the secret."""
    assert caplog.records, "expected some DEBUG logging to inspect"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage(), record.name
    stderr = capsys.readouterr().err
    assert stderr, "the bridge's handler should have written something (created topics, or the refusal)"
    assert secret not in stderr


async def produce_and_read_back(kafka: KafkaConfig, plaintext_bootstrap: str) -> None:
    """Create the topics and produce RECORDS through the sink, then consume them over PLAINTEXT."""
    sink = await started_sink(kafka)
    try:
        for index in range(RECORDS):
            sink.put(message(kafka.topics.trade, f"K{index % 5}", str(index).encode()))
    finally:
        undelivered = await sink.close()
    assert undelivered == 0
    assert sink.sink.delivered == RECORDS
    records = await consume(plaintext_bootstrap, kafka.topics.trade, RECORDS, timeout=30)
    assert sorted(int(record.value) for record in records) == list(range(RECORDS))
    for record in records:
        assert record.key == f"K{int(record.value) % 5}".encode()
        assert dict(record.headers)["stream"] == b"trade"


@pytest.mark.parametrize(
    ("mechanism", "password_source"),
    [("PLAIN", "inline"), ("SCRAM-SHA-256", "password_file"), ("SCRAM-SHA-512", "environment")],
)
async def test_sasl_plaintext_round_trip_for_each_mechanism(
    mechanism: str,
    password_source: str,
    secured_broker: LocalBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Over SASL_PLAINTEXT with each mechanism the bridge creates topics, delivers all and never logs the password."""
    sasl: dict[str, Any] = {"mechanism": mechanism, "username": SASL_USER}
    env: dict[str, str] = {}
    if password_source == "inline":
        sasl["password"] = SASL_PASSWORD
    elif password_source == "password_file":
        secret = tmp_path / "kafka-password"
        secret.write_text(SASL_PASSWORD + "\n", encoding="utf-8")
        sasl["password_file"] = str(secret)
    else:
        sasl["password"] = "${KAFKA_SASL_PASSWORD}"
        env["KAFKA_SASL_PASSWORD"] = SASL_PASSWORD
    assert secured_broker.sasl_bootstrap is not None
    kafka = secured_section(secured_broker.sasl_bootstrap, sasl, env)
    assert kafka.security_protocol == "SASL_PLAINTEXT"

    with bridge_logging_at_debug(caplog):
        await produce_and_read_back(kafka, secured_broker.bootstrap)

    assert_never_logged(caplog, capsys, SASL_PASSWORD)


async def test_sasl_ssl_round_trip_trusting_the_configured_ca(
    secured_broker: LocalBroker, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over SASL_SSL trusting ``kafka.tls.ca_file`` the bridge delivers every record and never logs the password."""
    assert secured_broker.ssl_bootstrap is not None
    assert secured_broker.ca_file is not None
    kafka = secured_section(
        secured_broker.ssl_bootstrap,
        {"mechanism": "PLAIN", "username": SASL_USER, "password": SASL_PASSWORD},
        security_protocol="SASL_SSL",
        tls={"ca_file": str(secured_broker.ca_file)},
    )

    with bridge_logging_at_debug(caplog):
        await produce_and_read_back(kafka, secured_broker.bootstrap)

    assert_never_logged(caplog, capsys, SASL_PASSWORD)


async def test_sasl_ssl_refuses_a_broker_whose_certificate_is_not_trusted(
    secured_broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Over SASL_SSL without ``kafka.tls.ca_file`` the broker's certificate is untrusted: the sink does not start."""
    assert secured_broker.ssl_bootstrap is not None
    kafka = secured_section(
        secured_broker.ssl_bootstrap,
        {"mechanism": "SCRAM-SHA-512", "username": SASL_USER, "password": SASL_PASSWORD},
        security_protocol="SASL_SSL",
        request_timeout_seconds=5,
    )
    sink = SpooledSink(kafka).sink
    with pytest.raises(KafkaError, match="cannot reach Kafka"):
        await sink.start()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text, "the refusal should come from certificate verification"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_wrong_password_fails_at_start_without_revealing_it(
    mechanism: str,
    secured_broker: LocalBroker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong SASL password fails topic creation and sink start with KafkaError; no message or log line shows it."""
    assert secured_broker.sasl_bootstrap is not None
    kafka = secured_section(
        secured_broker.sasl_bootstrap, {"mechanism": mechanism, "username": SASL_USER, "password": WRONG_PASSWORD}
    )

    sink = SpooledSink(kafka).sink
    with bridge_logging_at_debug(caplog):
        with pytest.raises(KafkaError) as topics_failure:
            await ensure_topics(kafka, [kafka.topics.trade])
        with pytest.raises(KafkaError) as start_failure:
            await sink.start()

    assert not sink.running
    for failure in (topics_failure.value, start_failure.value):
        assert secured_broker.sasl_bootstrap in str(failure)
        assert WRONG_PASSWORD not in str(failure)
        assert WRONG_PASSWORD not in repr(failure.__cause__)
    assert_never_logged(caplog, capsys, WRONG_PASSWORD)
    assert any("SaslAuthenticationFailed" in record.getMessage() for record in caplog.records), (
        "the broker's refusal should be the logged reason"
    )


async def test_plain_password_is_scrubbed_even_with_aiokafka_logging_at_debug(
    secured_broker: LocalBroker, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiokafka.conn prints the PLAIN login at DEBUG; the guard the bridge installs scrubs the password from it."""
    assert secured_broker.sasl_bootstrap is not None
    document = {
        "source": {"api_key": "k-long-enough", "subscriptions": [{"business": "crypto", "codes": ["X"]}]},
        "kafka": {
            "bootstrap_servers": secured_broker.sasl_bootstrap,
            "topics": topics("sec"),
            "security_protocol": "SASL_PLAINTEXT",
            "sasl": {"mechanism": "PLAIN", "username": SASL_USER, "password": SASL_PASSWORD},
        },
    }
    config = parse_config(document, {})
    assert SASL_PASSWORD in config.secrets()
    with bridge_logging_at_debug(caplog):
        guard_library_loggers(config.secrets())
        conn_logger = logging.getLogger("aiokafka.conn")
        level = conn_logger.level
        conn_logger.setLevel(logging.DEBUG)
        logging.getLogger("aiokafka").setLevel(logging.DEBUG)
        try:
            await produce_and_read_back(config.kafka, secured_broker.bootstrap)
        finally:
            conn_logger.setLevel(level)
    assert any("SaslAuthenticateRequest" in record.getMessage() for record in caplog.records), "the login was logged"
    assert_never_logged(caplog, capsys, SASL_PASSWORD)
