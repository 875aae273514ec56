"""Synthetic market data shaped like the vendor's production pushes, with no I/O and no clock.

Theory of operation
-------------------
Every instrument keeps its price as an integer number of ticks and walks it by a few ticks per
push; sizes are integer multiples of a lot. Decimal strings are built from those integers with
:class:`~decimal.Decimal` under a context that traps inexact results, so no value ever passes
through a binary float and ``vw`` is exactly ``p * v`` (protocol page, "Payloads").

The strings mimic the production captures (``tests/fixtures/``), whose scale varies by
push kind: a crypto trade is trimmed (``"63039"``, ``"63039.01"``), a crypto book pads to eight
decimals (``"63039.00000000"``) and a crypto bar to five (``"63039.00000"``). Other businesses
write their native tick scale (``"225.975"`` with whole-share sizes on stock, ``"1.08345"`` on
forex). A bridge that parses any of these through a float, or assumes one scale, shows it.

Randomness comes from one :class:`random.Random` per instrument, seeded from
``(seed, business, symbol)``, so a seed reproduces every value whatever order codes are
subscribed in and however many connections share them. Time is always an argument
(``now_ms``, epoch milliseconds), which keeps this module testable without an event loop.

Event times are strictly increasing per instrument and stream: a trade (or book) whose ``now_ms``
is not after the previous one's ``t`` gets that ``t`` plus 1 ms. So ``(symbol, t)`` identifies a
push of a stream and orders them, whatever the number of connections sharing the instrument,
and end-to-end tests can use the ``--record-sent`` file as an oracle keyed on it. The price:
above 1000 pushes a second of one code and stream, ``t`` runs ahead of the clock (by the
pushes over 1000 each second); at lower rates it is ahead by at most the pushes of one burst.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, Overflow

import orjson

from bridge.protocol.codes import KlineInterval, ResponseCode
from bridge.simulator.bars import bar_start
from bridge.simulator.decimal_text import units_fixed, units_plain
from bridge.simulator.payloads import DepthPayload, KlinePayload, TradePayload, encode_push

BUSINESSES: tuple[str, ...] = ("stock", "crypto", "common", "japan", "india")
"""The ``business`` values the simulator serves data for; any other is acked and kept silent."""

DEPTH_LEVELS = 5

# Exact arithmetic: any rounding is a bug here, so make it raise instead of happening quietly.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])
# The change percent is the one value that is rounded, to two places as the vendor writes it.
_PERCENT = Context(prec=28, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_HUNDRED = Decimal(100)
_TWO_PLACES = Decimal("0.01")

# Trade sides: 5 % of trades carry no side (td 0), the rest are buys (1) or sells (2) evenly.
_NO_SIDE = 0.05
_BUY_BELOW = 0.525
BAR_HISTORY = 5000
"""Finished bars kept per instrument and interval, for the REST answers."""
_NEVER = -(2**62)
"""The last event time of a stream that has had no event yet."""


@dataclass(frozen=True, slots=True)
class NumberStyle:
    """How a business writes numbers beyond an instrument's native scale.

    The production crypto captures pad book values to 8 decimals and bar values to 5; padding
    never drops digits (an instrument finer than the pad keeps its own scale).
    """

    depth_places: int
    kline_places: int


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """The fixed facts of one instrument: tick and lot scale, and where its price starts."""

    price_places: int
    """Decimals of one price tick."""
    size_places: int
    """Decimals of one lot; 0 means whole units (shares)."""
    start_ticks: int
    """The first price, in ticks."""

    @classmethod
    def from_price(cls, price: str, size_places: int) -> InstrumentSpec:
        """A spec whose tick scale is the scale of ``price`` as written (``"225.975"``: 3)."""
        sign, digits, exponent = Decimal(price).as_tuple()
        if sign or not isinstance(exponent, int) or exponent > 0:
            raise ValueError(f"a start price must be a positive plain decimal, not {price!r}")
        return cls(-exponent, size_places, int("".join(map(str, digits))))


@dataclass(frozen=True, slots=True)
class _Profile:
    """How one business draws specs for symbols the catalogue does not know."""

    style: NumberStyle
    magnitudes: tuple[int, int]
    """Inclusive range of the price's power of ten (``2`` means prices in [100, 1000))."""
    significant: int
    """Digits a price carries: the tick scale follows from the magnitude."""
    size_places: int | None
    """Fixed lot scale, or ``None`` to scale with the price (cheap coins trade in whole units)."""


_PLAIN = NumberStyle(depth_places=0, kline_places=0)
_PROFILES: dict[str, _Profile] = {
    "crypto": _Profile(NumberStyle(depth_places=8, kline_places=5), (-2, 4), 7, None),
    "stock": _Profile(_PLAIN, (1, 2), 6, 0),
    "common": _Profile(_PLAIN, (0, 0), 6, 2),
    "japan": _Profile(_PLAIN, (2, 3), 5, 0),
    "india": _Profile(_PLAIN, (1, 3), 6, 0),
}

# Realistic starting points for the symbols the protocol page names, so a demo looks familiar.
_CATALOGUE: dict[str, InstrumentSpec] = {
    "BTCUSDT": InstrumentSpec.from_price("63039.01", 5),
    "ETHUSDT": InstrumentSpec.from_price("3120.45", 4),
    "DOGEUSDT": InstrumentSpec.from_price("0.07933", 0),
    "EURUSD": InstrumentSpec.from_price("1.08345", 2),
    "XAUUSD": InstrumentSpec.from_price("2345.67", 2),
    "AAPL.US": InstrumentSpec.from_price("225.975", 0),
    "TSLA.US": InstrumentSpec.from_price("248.51", 0),
    "00700.HK": InstrumentSpec.from_price("385.40", 0),
    "002594.SZ": InstrumentSpec.from_price("268.88", 0),
    "600519.SH": InstrumentSpec.from_price("1688.00", 0),
}


def plain(value: Decimal) -> str:
    """``value`` without exponent or trailing zeros: ``63039``, ``63039.01``, ``5000.88387``."""
    return format(value.normalize(_EXACT), "f")


def _percent_text(percent: Decimal) -> str:
    # A change that rounds away is written 0.00%, never -0.00%.
    return f"{percent.copy_abs() if percent.is_zero() else percent:f}%"


def fixed(value: Decimal, places: int) -> str:
    """``value`` with at least ``places`` decimals (more if it has more): ``63039.00000000``."""
    exponent = value.as_tuple().exponent
    own = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return format(value, f".{max(places, own)}f")


class Instrument:
    """One symbol's evolving price, and the pushes built from it.

    Every push moves the price a few ticks first, so trades, books and bars all drift even when
    only one of the streams is subscribed. Not thread-safe; the server uses one event loop.
    """

    def __init__(self, symbol: str, spec: InstrumentSpec, style: NumberStyle, rng: random.Random) -> None:
        self.symbol = symbol
        self.spec = spec
        self._style = style
        self._rng = rng
        self._ticks = spec.start_ticks
        # The walk never goes below half the start price, so five book levels stay positive.
        self._floor_ticks = max(spec.start_ticks // 2, 10 * DEPTH_LEVELS)
        self._bars: dict[KlineInterval, _Bar] = {}
        self._history: dict[KlineInterval, deque[_Bar]] = {}
        self._last_trade_ms = _NEVER
        self._last_depth_ms = _NEVER
        self._symbol_json = orjson.dumps(symbol).decode()

    @property
    def price(self) -> Decimal:
        """The current price, exactly."""
        return self._price(self._ticks)

    def trade_frame(self, now_ms: int) -> bytes:
        """A complete 10002 frame at the current price; ``t`` is ``now_ms`` (or 1 ms past the last) and ``vw == p * v``.

        Written from integers (:mod:`~bridge.simulator.decimal_text`) in orjson's compact form:
        the server's fast path renders every trade here.
        """
        self._last_trade_ms = t = max(now_ms, self._last_trade_ms + 1)
        self._step()
        random = self._rng.random
        lots = self._lots()
        draw = random()
        side = 0 if draw < _NO_SIDE else (1 if draw < _BUY_BELOW else 2)
        spec, ticks = self.spec, self._ticks
        price = units_plain(ticks, spec.price_places)
        size = units_plain(lots, spec.size_places)
        amount = units_plain(ticks * lots, spec.price_places + spec.size_places)
        return (
            f'{{"code":10002,"data":{{"p":"{price}","s":{self._symbol_json},"t":{t},"td":{side},'
            f'"v":"{size}","vw":"{amount}"}}}}'
        ).encode()

    def trade(self, now_ms: int) -> TradePayload:
        """The ``data`` of :meth:`trade_frame`, parsed (for tests and inspection)."""
        payload: TradePayload = orjson.loads(self.trade_frame(now_ms))["data"]
        return payload

    def depth_frame(self, now_ms: int) -> bytes:
        """A complete 10005 frame: five levels a side, asks rising from the best ask, bids falling.

        ``t`` is ``now_ms``, or 1 ms after the last book's when that is not later.
        """
        self._last_depth_ms = t = max(now_ms, self._last_depth_ms + 1)
        self._step()
        random = self._rng.random
        spread = 1 + int(random() * 3)
        best_bid = self._ticks - int(random() * spread)
        asks = [best_bid + spread]
        bids = [best_bid]
        for _ in range(DEPTH_LEVELS - 1):
            asks.append(asks[-1] + 1 + int(random() * 3))
            bids.append(bids[-1] - 1 - int(random() * 3))
        return (
            f'{{"code":10005,"data":{{"a":{self._columns(asks)},"b":{self._columns(bids)},'
            f'"s":{self._symbol_json},"t":{t}}}}}'
        ).encode()

    def depth(self, now_ms: int) -> DepthPayload:
        """The ``data`` of :meth:`depth_frame`, parsed (for tests and inspection)."""
        payload: DepthPayload = orjson.loads(self.depth_frame(now_ms))["data"]
        return payload

    def kline(self, interval: KlineInterval, now_ms: int) -> KlinePayload:
        """The bar of ``interval`` containing ``now_ms``, updated by one synthetic fill.

        A new bar opens at the current price when the interval rolls over; within a bar the
        low and high bracket every price seen, so ``l <= o, c <= h`` always holds.
        """
        self._step()
        start = bar_start(interval, now_ms // 1000)
        bar = self._bars.get(interval)
        if bar is None or bar.start != start:
            if bar is not None:
                self._history.setdefault(interval, deque(maxlen=BAR_HISTORY)).append(bar)
            bar = _Bar(start, self._ticks)
            self._bars[interval] = bar
        lots = self._lots()
        bar.fill(self._ticks, lots, _EXACT.multiply(self.price, self._size(lots)))
        rest = self._rest_bar(bar)
        return {
            "c": rest["c"],
            "h": rest["h"],
            "l": rest["l"],
            "o": rest["o"],
            "pca": rest["pca"],
            "pfr": rest["pc"],
            "s": self.symbol,
            "t": rest["t"],
            "ty": int(interval),
            "v": rest["v"],
            "vw": rest["vw"],
        }

    def bars(self, interval: KlineInterval, up_to: int | None, count: int) -> list[dict[str, str]]:
        """The REST ``respList``: up to ``count`` bars starting at or before ``up_to``, newest first.

        The same bars the pushes showed, each in its latest state: the newest may still be open
        (its values change until the interval rolls over), the others are final. Only bars with a
        fill exist, so quiet intervals leave holes (the vendor's sparse minutes).
        """
        current = self._bars.get(interval)
        every = [*self._history.get(interval, ()), *([] if current is None else [current])]
        chosen = [bar for bar in every if up_to is None or bar.start <= up_to][-count:] if count > 0 else []
        return [self._rest_bar(bar) for bar in reversed(chosen)]

    def _rest_bar(self, bar: _Bar) -> dict[str, str]:
        """One bar as REST writes it: ``t`` a string of seconds, ``pc`` (not ``pfr``), no ``s`` or ``ty``."""
        places = self._style.kline_places
        open_, close = self._price(bar.open), self._price(bar.close)
        change = _EXACT.subtract(close, open_)
        percent = _PERCENT.divide(_PERCENT.multiply(change, _HUNDRED), open_).quantize(_TWO_PLACES, context=_PERCENT)
        return {
            "t": str(bar.start),
            "o": fixed(open_, places),
            "h": fixed(self._price(bar.high), places),
            "l": fixed(self._price(bar.low), places),
            "c": fixed(close, places),
            "v": fixed(self._size(bar.volume_lots), places),
            "vw": plain(bar.amount),
            "pc": _percent_text(percent),
            "pca": fixed(change, places),
        }

    def _step(self) -> None:
        # Uniform over -3..3 ticks; random() is several times cheaper than randint().
        self._ticks = max(self._floor_ticks, self._ticks + int(self._rng.random() * 7) - 3)

    def _lots(self) -> int:
        # Mostly small fills, now and then a large one: the top of the range is itself random.
        random = self._rng.random
        return 1 + int(random() * 10 ** int(random() * (self.spec.size_places + 3)))

    def _price(self, ticks: int) -> Decimal:
        return Decimal(ticks).scaleb(-self.spec.price_places, _EXACT)

    def _size(self, lots: int) -> Decimal:
        return Decimal(lots).scaleb(-self.spec.size_places, _EXACT)

    def _columns(self, prices: list[int]) -> str:
        """``[[prices],[sizes]]`` as compact JSON, each value padded to the business's book scale."""
        spec, pad = self.spec, self._style.depth_places
        price_texts = '","'.join(units_fixed(ticks, spec.price_places, pad) for ticks in prices)
        size_texts = '","'.join(units_fixed(self._lots(), spec.size_places, pad) for _ in prices)
        return f'[["{price_texts}"],["{size_texts}"]]'


class _Bar:
    """One open kline bar in ticks and lots; the amount is kept exactly as a Decimal."""

    __slots__ = ("amount", "close", "high", "low", "open", "start", "volume_lots")

    def __init__(self, start: int, ticks: int) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = ticks
        self.volume_lots = 0
        self.amount = Decimal(0)

    def fill(self, ticks: int, lots: int, amount: Decimal) -> None:
        self.close = ticks
        self.high = max(self.high, ticks)
        self.low = min(self.low, ticks)
        self.volume_lots += lots
        self.amount = _EXACT.add(self.amount, amount)


class Market:
    """Every instrument of one business, created on first use.

    Connections of the same business share a market, as they share the real one: two clients
    subscribed to ``BTCUSDT`` see one price path.
    """

    def __init__(self, business: str, seed: int, quiet_bar_percent: int = 0) -> None:
        """Make an empty market.

        Args:
            business: one of :data:`BUSINESSES`; it picks the number style and price ranges.
            seed: with the business and the symbol, fixes every value this market produces.
            quiet_bar_percent: this share of bar intervals (chosen from the seed) has no trades, so
                no bar: no kline push and a hole in the REST answers, like the vendor's sparse minutes.

        Raises:
            ValueError: for a business the simulator has no data for.
        """
        profile = _PROFILES.get(business)
        if profile is None:
            raise ValueError(f"no market data for business {business!r}: use one of {', '.join(BUSINESSES)}")
        self.business = business
        self._seed = seed
        self._quiet_percent = quiet_bar_percent
        self._profile = profile
        self._instruments: dict[str, Instrument] = {}

    def instrument(self, symbol: str) -> Instrument:
        """The instrument for ``symbol``, made on first use from the catalogue or the profile."""
        found = self._instruments.get(symbol)
        if found is None:
            rng = random.Random(f"{self._seed}/{self.business}/{symbol}")
            spec = _CATALOGUE.get(symbol) or self._invent(rng)
            found = Instrument(symbol, spec, self._profile.style, rng)
            self._instruments[symbol] = found
        return found

    def trade_frame(self, symbol: str, now_ms: int) -> bytes:
        """A complete 10002 frame (UTF-8 JSON text)."""
        return self.instrument(symbol).trade_frame(now_ms)

    def depth_frame(self, symbol: str, now_ms: int) -> bytes:
        """A complete 10005 frame."""
        return self.instrument(symbol).depth_frame(now_ms)

    def quiet(self, symbol: str, interval: KlineInterval, now_ms: int) -> bool:
        """Whether the bar of ``interval`` containing ``now_ms`` has no trades (so no push and no bar)."""
        if not self._quiet_percent:
            return False
        start = bar_start(interval, now_ms // 1000)
        draw = zlib.crc32(f"{self._seed}/{self.business}/{symbol}/{int(interval)}/{start}".encode()) % 100
        return draw < self._quiet_percent

    def kline_frame(self, symbol: str, interval: KlineInterval, now_ms: int) -> bytes:
        """A complete 10008 frame."""
        return encode_push(ResponseCode.PUSH_KLINE, self.instrument(symbol).kline(interval, now_ms)).encode()

    def _invent(self, rng: random.Random) -> InstrumentSpec:
        profile = self._profile
        magnitude = rng.randint(*profile.magnitudes)
        price_places = max(0, profile.significant - 1 - magnitude)
        size_places = profile.size_places
        if size_places is None:
            size_places = min(max(magnitude + 1, 0), 5)
        start = rng.randrange(10 ** (profile.significant - 1), 10**profile.significant)
        return InstrumentSpec(price_places, size_places, start)
