"""The producer wrapper against a real broker: what it changes in aiokafka's transactional client."""

from __future__ import annotations

import uuid

from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.protocol.transaction import AddPartitionsToTxnResponse_v0
from aiokafka.structs import TopicPartition

from bridge.producer import TRANSACTION_RETRY_BACKOFF_SECONDS, Producer
from tests.test_sink import kafka_section


async def test_a_transaction_refused_while_the_last_commit_completes_is_retried_after_two_milliseconds(
    kafka_bootstrap: str,
) -> None:
    """A started exactly-once producer's own sender answers CONCURRENT_TRANSACTIONS with our short backoff.

    The coordinator refuses a transaction's first AddPartitionsToTxn until the previous commit's
    markers are written; aiokafka's fixed 20 ms wait there was most of every round. The handler
    here is aiokafka's own, fed the broker's answer, so an aiokafka that stops reading the
    override fails this test rather than silently bringing the 20 ms back.
    """
    producer = Producer(kafka_section(kafka_bootstrap), f"test-backoff-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        assert producer.current is not None
        sender = producer.current._sender
        assert not sender._txn_manager.txn_partitions, "no transaction is open, as right after a commit"
        handler = AddPartitionsToTxnHandler(sender, [TopicPartition("trades", 0)])
        refused = AddPartitionsToTxnResponse_v0(0, [("trades", [(0, ConcurrentTransactions.errno)])])
        assert handler.handle_response(refused) == TRANSACTION_RETRY_BACKOFF_SECONDS
    finally:
        await producer.stop(5)
