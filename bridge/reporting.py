"""The bridge's periodic and final summary lines, read from its own metrics registry.

A periodic line speaks of the interval since the previous line (what an operator watching the
feed wants to know now): records produced per topic and dead letters in the interval, with the
running total beside them, and the event lag p50/p99 of the interval's records. The final line
speaks of the whole run. Quantiles are estimated from histogram buckets as PromQL's
``histogram_quantile`` does, over the difference of two snapshots for an interval.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bridge.metrics import bucket_quantile, counter_totals, histogram_buckets
from bridge.records import Stream

_PRODUCED = "infoway_bridge_records_produced"
_DEAD = "infoway_bridge_dead_letters"
_LAG = "infoway_bridge_event_lag_seconds"


def milliseconds(seconds: float) -> str:
    """``12.3ms`` under ten seconds, whole seconds above."""
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.0f}s"


class Summaries:
    """Builds summary lines; remembers the previous snapshot so each periodic line covers its interval.

    Args:
        registry: the bridge's metrics registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._produced: dict[str, float] = {}
        self._dead = 0.0
        self._lag: dict[Stream, dict[float, float]] = {}

    def line(self, *, final: bool, subscribed: int, connections: int) -> str:
        """One summary line; ``subscribed`` counts connections subscribed now (or, for the final line, at the stop)."""
        produced = counter_totals(self._registry, _PRODUCED, "topic")
        dead = sum(counter_totals(self._registry, _DEAD, "reason").values())
        previous_produced = {} if final else self._produced
        interval = {topic: count - previous_produced.get(topic, 0.0) for topic, count in produced.items()}
        dead_in_interval = dead - (0.0 if final else self._dead)
        self._produced, self._dead = produced, dead
        lag = self._lag_parts(final=final)
        total = int(sum(produced.values()))
        if final:
            records = f"{total} records over the run" + _per_topic(produced, sign="")
            lag_text = f"event lag over the run {', '.join(lag) or 'n/a (no records)'}"
            state = f"connections subscribed at the stop {subscribed}/{connections}"
            return f"final summary: {records}; {lag_text}; dead letters {int(dead)}; {state}"
        records = f"+{int(sum(interval.values()))} records" + _per_topic(interval, sign="+") + f", {total} in all"
        lag_text = f"event lag {', '.join(lag) or 'n/a (no records)'}"
        state = f"connections subscribed {subscribed}/{connections}"
        return f"summary since the last one: {records}; {lag_text}; dead letters +{int(dead_in_interval)}; {state}"

    def _lag_parts(self, *, final: bool) -> list[str]:
        parts = []
        for stream in Stream:
            current = histogram_buckets(self._registry, _LAG, stream=stream.value)
            previous = {} if final else self._lag.get(stream, {})
            window = {bound: count - previous.get(bound, 0.0) for bound, count in current.items()}
            self._lag[stream] = current
            p50, count = bucket_quantile(window, 0.5)
            p99, _ = bucket_quantile(window, 0.99)
            if count and p50 is not None and p99 is not None:
                # A kline's only vendor time is its bar's start, so its "lag" is the bar's age.
                name = "kline bar age" if stream is Stream.KLINE else stream.value
                parts.append(f"{name} p50={milliseconds(p50)} p99={milliseconds(p99)}")
        return parts


def _per_topic(counts: dict[str, float], *, sign: str) -> str:
    shown = [f"{topic} {sign}{int(count)}" for topic, count in sorted(counts.items()) if count]
    return f" ({', '.join(shown)})" if shown else ""
