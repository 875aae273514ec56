"""The backfill section and the HK code rule of the configuration: defaults, and mistakes named by key and value."""

from __future__ import annotations

import pytest

from bridge.config import parse_config
from bridge.errors import ConfigError


def config(**source: object) -> dict[str, object]:
    """A minimal document with these source keys."""
    return {"source": {"api_key": "k", "subscriptions": [{"business": "stock", "codes": ["AAPL.US"]}], **source}}


def test_defaults() -> None:
    """REST goes to data.infoway.io; backfill is on with half the key's rate and a 6-hour cap."""
    parsed = parse_config(config(), {})
    assert parsed.source.rest_url == "https://data.infoway.io"
    assert (parsed.backfill.enabled, parsed.backfill.share, parsed.backfill.max_age_seconds) == (True, 0.5, 21600)


@pytest.mark.parametrize("code", ["700.HK", "0700.HK", "000700.HK"])
def test_an_hk_code_must_have_five_digits(code: str) -> None:
    """An HK code that is not five digits is refused naming the key, the value and the five-digit form."""
    document = config(subscriptions=[{"business": "stock", "codes": ["AAPL.US", code]}])
    with pytest.raises(ConfigError) as caught:
        parse_config(document, {})
    text = str(caught.value)
    assert "source.subscriptions.0.codes.1" in text
    assert f"got '{code}'" in text
    assert "five-digit HK code" in text


def test_five_digit_hk_codes_and_others_pass() -> None:
    """00700.HK and non-HK codes are accepted as written."""
    document = config(subscriptions=[{"business": "stock", "codes": ["00700.HK", "600519.SH", "AAPL.US"]}])
    assert parse_config(document, {}).source.subscriptions[0].codes == ("00700.HK", "600519.SH", "AAPL.US")


def test_rest_url_and_share_are_checked() -> None:
    """The REST URL must be http(s) without a query; share must be in (0, 1]."""
    with pytest.raises(ConfigError, match=r"source\.rest_url: expected the URL without a query string"):
        parse_config(config(rest_url="https://data.infoway.io/?apikey=x"), {})
    with pytest.raises(ConfigError, match=r"backfill\.share"):
        parse_config({**config(), "backfill": {"share": 1.5}}, {})
