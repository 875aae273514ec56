"""The README's consumer snippets, read from the README itself: the tests run exactly what it shows.

A snippet is the fenced block right after a ``<!-- snippet: NAME -->`` line. Only the addresses
and topic names a reader would change are replaced, by :func:`localized`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

README = Path(__file__).resolve().parent.parent.parent / "README.md"
_SNIPPET = re.compile(r"^<!-- snippet: (?P<name>[a-z-]+) -->\n```[a-z]*\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
README_BOOTSTRAP = "kafka:9092"
README_REGISTRY = "http://registry:8081"
README_TOPICS = {"trade": "infoway.trades", "depth": "infoway.depth", "kline": "infoway.kline"}
RAW_VALUE_FORMAT = "  'value.format' = 'avro',\n"


def snippets(readme: Path = README) -> dict[str, str]:
    """Every named snippet of the README, by name."""
    found: dict[str, str] = {}
    for match in _SNIPPET.finditer(readme.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"snippet {match['name']} appears twice in the README"
        found[match["name"]] = match["body"]
    return found


def localized(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each README placeholder replaced, failing when one is not there (the README changed)."""
    for placeholder, value in replacements.items():
        assert placeholder in text, f"{placeholder!r} is not in the snippet any more"
        text = text.replace(placeholder, value)
    return text


def flink_ddl(stream: str, wire_format: str, bootstrap: str, topic: str, registry: str | None) -> str:
    """The README's Flink DDL of one stream, in ``raw`` or, as the README says to, in ``confluent`` format."""
    found = snippets()
    ddl = localized(found[f"flink-{stream}"], {README_BOOTSTRAP: bootstrap, f"'{README_TOPICS[stream]}'": f"'{topic}'"})
    if wire_format == "confluent":
        assert registry is not None
        ddl = localized(ddl, {RAW_VALUE_FORMAT: localized(found["flink-confluent"], {README_REGISTRY: registry})})
    return ddl
