"""infoway-kafka-bridge: the Infoway market-data WebSocket feed, produced to Kafka as Avro."""

__version__ = "0.1.0"
