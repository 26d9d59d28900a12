"""A fast writer of the Prometheus text format 0.0.4 and OpenMetrics 1.0 (pure).

It writes plain `Family` data byte for byte as prometheus-client's encoders write the same
families (`families.to_metrics`; tests compare the two), but formats each distinct label set
once per exposition instead of once per sample: a statement's labels appear in fourteen
families, and escaping them was most of the cost of a scrape.
Only for metric and label names that need no escaping (every name in `families.SPECS`);
other escaping schemes of the Accept header go through prometheus-client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import DOTS
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.families import Family, Labels, to_metrics

TEXT = "text"
OPENMETRICS = "openmetrics"
_EOF = "# EOF\n"
Encoder = Callable[[Collector], bytes]
_go_float = cast(Callable[[float], str], floatToGoString)  # untyped upstream


def go_float(value: float) -> str:
    """A sample value as prometheus-client prints it (Go's float formatting)."""
    value = float(value)
    # Below 1e6 (and above -inf; NaN fails both) Go and Python print floats alike.
    if -math.inf < value < 1e6:
        return repr(value)
    return _go_float(value)


def escape_value(value: str) -> str:
    """A label value between double quotes: backslash, newline and quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(text: str, fmt: str) -> str:
    escaped = text.replace("\\", r"\\").replace("\n", r"\n")
    return escaped.replace('"', r"\"") if fmt == OPENMETRICS else escaped


def _label_strings(names: Sequence[str]) -> tuple[list[int], list[str]]:
    """Positions of the label names in sorted order (the encoders sort them), and `name="`."""
    order = sorted(range(len(names)), key=names.__getitem__)
    return order, [f'{names[i]}="' for i in order]


class LabelStrings:
    """Formatted label sets kept from one exposition to the next (most series stay from
    round to round); only the last exposition's sets are kept, so it stays that size."""

    def __init__(self) -> None:
        self.last: dict[Labels, dict[Labels, str]] = {}  # label names -> values -> '{...}'


def render(families: Sequence[Family], fmt: str, kept: LabelStrings | None = None) -> str:
    """The exposition of `families` in `fmt` (TEXT or OPENMETRICS; OpenMetrics ends in EOF)."""
    out: list[str] = []
    formatted: dict[Labels, dict[Labels, str]] = {}  # label names -> values -> '{...}'
    previous = {} if kept is None else kept.last
    numbers: dict[float, str] = {}
    if fmt == OPENMETRICS:
        families = openmetrics_families(families)
    for family in families:
        spec, name = family.spec, family.name
        kind = spec.kind
        if kind == "counter":
            base = name[:-6] if name.endswith("_total") else name
            sample, head = base + "_total", (base if fmt == OPENMETRICS else base + "_total")
        else:
            sample = head = name
            if kind == "untyped" and fmt == OPENMETRICS:
                kind = "unknown"
        out.append(f"# HELP {head} {_help(spec.help, fmt)}\n# TYPE {head} {kind}\n")
        cache = formatted.setdefault(spec.labels, {})
        old = previous.get(spec.labels, {})
        order, prefixes = _label_strings(spec.labels)
        for labels, value in family.samples:
            text = cache.get(labels)
            if text is None:
                text = old.get(labels)
                if text is None:
                    text = "{" + ",".join(
                        p + escape_value(labels[i]) + '"' for i, p in zip(order, prefixes,
                                                                          strict=True)) + "}" \
                        if order else ""
                cache[labels] = text
            number = numbers.get(value)
            if number is None or value == 0:  # 0.0 == -0.0, but they print differently
                number = numbers[value] = go_float(value)
            out.append(f"{sample}{text} {number}\n")
    if fmt == OPENMETRICS:
        out.append(_EOF)
    if kept is not None:
        kept.last = formatted
    return "".join(out)


def openmetrics_families(families: Sequence[Family]) -> list[Family]:
    """The families OpenMetrics can carry: an untyped family named like a counter's family
    (`pg_stat_database_xact_commit` beside the counter `pg_stat_database_xact_commit_total`,
    both the family `pg_stat_database_xact_commit` there) is left out, since family names
    must be unique. The text format carries both (docs/migrating-from-postgres_exporter.md)."""
    counters = {f.name.removesuffix("_total") for f in families if f.spec.kind == "counter"}
    return [f for f in families if not (f.spec.kind == "untyped" and f.name in counters)]


class _Collected:
    """A one-off collector yielding families already built."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def fast_format(content_type: str) -> str | None:
    """TEXT or OPENMETRICS when `render` writes what the negotiated encoder writes, else None
    (the `dots` escaping scheme rewrites every underscore of a name)."""
    if f"escaping={DOTS}" in content_type:
        return None
    return OPENMETRICS if content_type.startswith("application/openmetrics-text") else TEXT


def encode(families: Sequence[Family], accept: str,
           kept: LabelStrings | None = None) -> tuple[bytes, str, Encoder]:
    """The families in the format `accept` asks for: (body, content type, encoder)."""
    encoder, content_type = choose_encoder(accept)
    fmt = fast_format(content_type)
    if fmt is not None:
        return render(families, fmt, kept).encode(), content_type, encoder
    if content_type.startswith("application/openmetrics-text"):
        families = openmetrics_families(families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(to_metrics(families)))
    return encoder(registry), content_type, encoder
