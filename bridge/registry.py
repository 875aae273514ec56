"""A small client for Confluent-compatible schema registries (Confluent, Apicurio ccompat, Karapace).

The bridge registers each writer schema once at start, under the TopicNameStrategy subject
``<topic>-value``, and frames every value with the id it got back. Registration is idempotent
on the registry's side (the same schema gets the same id), and answers are cached here, so a
restart costs one request per topic. HTTP runs in a worker thread through the standard
library: this happens only at start, never on the hot path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from bridge.config_kafka import RegistryConfig
from bridge.errors import ConfigError, RegistryError
from bridge.serialize import Framing, schema_json

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """Registers Avro schemas and caches the ids it got back.

    Args:
        config: ``serialization.registry``; ``url`` is the API root, e.g.
            ``http://registry:8081`` or ``http://apicurio:8080/apis/ccompat/v7``.
    """

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self._ids: dict[tuple[str, str], int] = {}
        self._context = ssl.create_default_context(cafile=str(config.ca_file)) if config.ca_file else None

    async def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it when new.

        Raises:
            ConfigError: the registry refuses the schema as incompatible with the subject's history.
            RegistryError: anything else went wrong (unreachable, unauthorised, ...).
        """
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        status, body = await asyncio.to_thread(self._request, "POST", path, {"schema": text, "schemaType": "AVRO"})
        if status == 409:
            raise ConfigError(
                f"the schema registry refuses the schema for subject {subject!r} as incompatible with its "
                f"registered versions: {body.get('message', body)}; consumers would break, so the bridge stops"
            )
        if status != 200 or not isinstance(body.get("id"), int):
            raise RegistryError(f"registering subject {subject!r} failed: HTTP {status} {body}")
        schema_id: int = body["id"]
        self._ids[(subject, text)] = schema_id
        return schema_id

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self._config.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", CONTENT_TYPE)
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        if self._config.username is not None:
            password = self._config.password.get_secret_value() if self._config.password else ""
            token = base64.b64encode(f"{self._config.username}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(  # noqa: S310 (the URL is validated as http(s) by the config)
                request, timeout=self._config.timeout_seconds, context=self._context
            ) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RegistryError(f"cannot reach the schema registry at {self._config.url}: {exc}") from exc


async def register_schemas(config: RegistryConfig, schema_topics: Mapping[str, str]) -> Framing:
    """Register every schema in use under ``<topic>-value``; the confluent framing with the ids it got.

    Raises:
        ConfigError: the registry refuses a schema as incompatible.
        RegistryError: the registry is unreachable or refuses otherwise.
    """
    client = SchemaRegistryClient(config)
    ids = {name: await client.register(f"{topic}-value", schema_json(name)) for name, topic in schema_topics.items()}
    return Framing.confluent(ids)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
