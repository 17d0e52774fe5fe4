"""The status page's daily chart, drawn on the server as inline SVG (no script, no style attribute)."""

from __future__ import annotations

from markupsafe import Markup, escape

from web.queries_status import SuiteChart

COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "neutral": "#9e9e9e", "tmpfail": "#ef6c00"}
BAR, GAP, HEIGHT, TOP, BOTTOM = 18, 6, 120, 14, 30


def daily_chart(chart: SuiteChart) -> Markup:
    """Stacked bars of pass / fail / neutral / tmpfail per day, with the pass rate above each bar."""
    peak = max((sum(d.counts.values()) for d in chart.days), default=0) or 1
    width = len(chart.days) * (BAR + GAP) + GAP
    title = escape(f"{chart.suite}/{chart.architecture}: autopkgtest results per day")
    parts = [
        f'<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{TOP + HEIGHT + BOTTOM}" viewBox="0 0 {width} {TOP + HEIGHT + BOTTOM}">',
        f"<title>{title}</title>",
    ]
    for i, day in enumerate(chart.days):
        x = GAP + i * (BAR + GAP)
        y = float(TOP + HEIGHT)
        for word in ("pass", "neutral", "tmpfail", "fail"):
            count = day.counts.get(word, 0)
            if not count:
                continue
            h = max(1.0, HEIGHT * count / peak)
            y -= h
            parts.append(
                f'<rect class="{word}" x="{x}" y="{y:.1f}" width="{BAR}" height="{h:.1f}" '
                f'fill="{COLOURS[word]}"><title>{escape(str(day.day))}: {count} {word}</title></rect>'
            )
        rate = day.pass_rate
        if rate is not None:
            parts.append(
                f'<text x="{x + BAR / 2}" y="{y - 2:.1f}" font-size="8" text-anchor="middle">'
                f"{rate:.0%}</text>"
            )
        parts.append(
            f'<text x="{x + BAR / 2}" y="{TOP + HEIGHT + 12}" font-size="8" text-anchor="middle">'
            f"{day.day:%d}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
