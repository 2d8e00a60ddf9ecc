"""Charts drawn on the server as inline SVG: no chart library, no script, readable without JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from html import escape

WIDTH, HEIGHT, PAD = 600, 160, 24


def bar_chart(points: Sequence[tuple[date, int]], title: str) -> str:
    """Bars of one count per day, with the largest value and the date range as text (and a title and
    description for screen readers)."""
    top = max((n for _, n in points), default=0)
    scale = (HEIGHT - 2 * PAD) / top if top else 0.0
    step = (WIDTH - 2 * PAD) / max(len(points), 1)
    bars = []
    for i, (day, n) in enumerate(points):
        h = n * scale
        x = PAD + i * step
        y = HEIGHT - PAD - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" class="bar">'
            f"<title>{day.isoformat()}: {n}</title></rect>"
        )
    first = points[0][0].isoformat() if points else ""
    last = points[-1][0].isoformat() if points else ""
    total = sum(n for _, n in points)
    label = escape(f"{title}: {total} from {first} to {last}, at most {top} a day")
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        + "".join(bars)
        + f'<text x="{PAD}" y="{PAD - 8}" class="label">max {top}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" class="label">{escape(first)}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" class="label" text-anchor="end">{escape(last)}</text>'
        "</svg>"
    )


def step_chart(points: Sequence[tuple[datetime, Decimal]], start: datetime, end: datetime, title: str) -> str:
    """A counter over time as steps (it holds its value until the next report), from `start` to `end`."""
    span = (end - start).total_seconds() or 1.0
    top = max((float(v) for _, v in points), default=0.0)
    scale = (HEIGHT - 2 * PAD) / top if top else 0.0

    def x(at: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y(value: Decimal) -> float:
        return HEIGHT - PAD - float(value) * scale

    path: list[str] = [f"{PAD:.1f},{HEIGHT - PAD:.1f}"]
    last = Decimal(0)
    for at, value in points:
        path.append(f"{x(at):.1f},{y(last):.1f}")
        path.append(f"{x(at):.1f},{y(value):.1f}")
        last = value
    path.append(f"{WIDTH - PAD:.1f},{y(last):.1f}")
    label = escape(
        f"{title}: {len(points)} reports from {start.date().isoformat()} to {end.date().isoformat()}, "
        f"now {format(last.normalize(), 'f')}, at most {format(Decimal(str(top)).normalize(), 'f')}"
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<polyline points="{" ".join(path)}" class="line"/>'
        f'<text x="{PAD}" y="{PAD - 8}" class="label">max {escape(format(Decimal(str(top)).normalize(), "f"))}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" class="label">{escape(start.date().isoformat())}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" class="label" text-anchor="end">'
        f"{escape(end.date().isoformat())}</text>"
        "</svg>"
    )
