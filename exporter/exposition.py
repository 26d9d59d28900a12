"""A fast writer of the Prometheus text format 0.0.4 and OpenMetrics 1.0 (pure).

It writes plain `Family` data byte for byte as prometheus-client's encoders write the same
families (`families.to_metrics`; tests compare the two), but column-wise: each distinct label
set is formatted once per exposition instead of once per sample (a statement's labels appear
in fourteen families), values are formatted with C-level builtins, and a family whose samples
are all the same as in the last exposition is not rendered again (`LabelStrings`).
Only for metric and label names that need no escaping (every name in `families.SPECS`);
other escaping schemes of the Accept header go through prometheus-client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import add, is_, is_not, itemgetter, not_
from typing import NamedTuple, cast

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


class _Body(NamedTuple):
    """A family's sample lines as rendered, and the samples they were rendered from."""

    samples: list[tuple[Labels, float]]
    lines: list[str]  # per sample: '{labels} value\n' (the sample name goes in between)
    text: str


class LabelStrings:
    """What one exposition keeps for the next: its formatted label sets (most series stay
    from round to round) and, per format, each family's sample lines with the samples they
    show: a family whose samples are all equal again (the slowly changing views between
    their refreshes, the statement texts, counters that did not move) is not rendered
    again. Only the last exposition's are kept, so it stays that size."""

    def __init__(self) -> None:
        self.last: dict[Labels, dict[Labels, str]] = {}  # label names -> values -> '{...} '
        self.bodies: dict[str, dict[str, _Body]] = {}  # format -> sample name -> lines


_LABELS = itemgetter(0)
_VALUE = itemgetter(1)
_BELOW_GO_EXPONENT = (1e6).__gt__  # False at 1e6 and above, for +Inf and for NaN


def numbers(values: list[float]) -> list[str]:
    """`go_float` of every value: Python's repr, except for the few that Go prints
    otherwise (1e6 and above, infinities, NaN), found with C-level builtins."""
    out = list(map(repr, values))
    slow = list(compress(range(len(values)), map(not_, map(_BELOW_GO_EXPONENT, values))))
    if -math.inf in values:
        slow += [i for i, v in enumerate(values) if v == -math.inf]
    for i in slow:
        out[i] = _go_float(values[i])
    return out


def _label_texts(labels: Sequence[Labels], names: Labels,
                 formatted: dict[Labels, dict[Labels, str]],
                 previous: dict[Labels, dict[Labels, str]]) -> list[str]:
    """'{name="value",...} ' of each label set (names sorted), from this exposition's or the
    last one's strings where the set was formatted already."""
    cache = formatted.setdefault(names, {})
    old = previous.get(names, {})
    order, prefixes = _label_strings(names)
    out: list[str] = []
    for values in labels:
        text = cache.get(values)
        if text is None:
            text = old.get(values)
            if text is None:
                text = "{" + ",".join(
                    p + escape_value(values[i]) + '"' for i, p in zip(order, prefixes,
                                                                      strict=True)) + "} " \
                    if order else " "
            cache[values] = text
        out.append(text)
    return out


def _prints_alike(a: tuple[Labels, float], b: tuple[Labels, float]) -> bool:
    """Equal samples print alike, except 0.0 and -0.0 (equal, but not the same line)."""
    return a == b and (a[1] != 0 or math.copysign(1.0, a[1]) == math.copysign(1.0, b[1]))


def _again(before: _Body, samples: list[tuple[Labels, float]], sample: str, names: Labels,
           formatted: dict[Labels, dict[Labels, str]],
           previous: dict[Labels, dict[Labels, str]]) -> _Body | None:
    """A family's body from the last exposition's: as it was when its samples are the same
    objects (a statement that did not run keeps its sample tuples) or print alike; with the
    lines of the samples that changed written again when most did not; None: render it
    anew."""
    old = before.samples
    if len(old) != len(samples):
        return None
    moved = list(compress(range(len(samples)), map(is_not, samples, old)))
    if not moved:
        return before
    moved = [i for i in moved if not _prints_alike(samples[i], old[i])]
    if not moved:  # kept with these samples: the next exposition finds them by identity
        return _Body(samples, before.lines, before.text)
    if 2 * len(moved) > len(samples):
        return None
    changed = [samples[i] for i in moved]
    texts = _label_texts(list(map(_LABELS, changed)), names, formatted, previous)
    values = list(map(float, map(_VALUE, changed)))
    lines = before.lines.copy()
    for i, text, value in zip(moved, texts, numbers(values), strict=True):
        lines[i] = text + value + "\n"
    return _Body(samples, lines, sample + sample.join(lines))


def render(families: Sequence[Family], fmt: str, kept: LabelStrings | None = None) -> str:
    """The exposition of `families` in `fmt` (TEXT or OPENMETRICS; OpenMetrics ends in EOF).

    Column-wise rather than sample by sample: a family's label sets are formatted in one
    pass (a family whose label tuples are the very objects of the family before, as the
    statement families' are, takes that family's strings), its values with C-level
    builtins, its lines joined at once; with `kept`, a family whose samples equal those of
    the last exposition takes its lines from there."""
    out: list[str] = []
    formatted: dict[Labels, dict[Labels, str]] = {}  # label names -> values -> '{...} '
    previous = {} if kept is None else kept.last
    bodies_before = {} if kept is None else kept.bodies.get(fmt, {})
    bodies: dict[str, _Body] = {}
    shared_names: Labels | None = None
    shared_labels: list[Labels] = []
    shared_texts: list[str] = []
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
        samples = family.samples
        before = bodies_before.get(sample)
        body = None if before is None else _again(before, samples, sample, spec.labels,
                                                  formatted, previous)
        if body is None:
            values = list(map(float, map(_VALUE, samples)))
            labels = list(map(_LABELS, samples))
            if spec.labels == shared_names and len(labels) == len(shared_labels) and all(
                    map(is_, labels, shared_labels)):
                texts = shared_texts
            else:
                texts = _label_texts(labels, spec.labels, formatted, previous)
                shared_names, shared_labels, shared_texts = spec.labels, labels, texts
            lines = list(map(add, map(add, texts, numbers(values)), repeat("\n")))
            body = _Body(samples, lines, sample + sample.join(lines) if samples else "")
        bodies[sample] = body
        out.append(body.text)
    if fmt == OPENMETRICS:
        out.append(_EOF)
    if kept is not None:
        kept.last = formatted
        kept.bodies[fmt] = bodies
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
