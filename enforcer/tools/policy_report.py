"""The what-if report as one self-contained HTML page, charts drawn as SVG on the server.

Nothing is fetched and nothing runs: no external scripts, styles or fonts, and no script at
all, so the report reads the same from a mail attachment, a ticket preview or a browser with
JavaScript off. Rule names, subjects and reasons come from policy files and traffic that an
attacker can shape; Jinja2's autoescape escapes every one of them, so none can add markup.
"""

from __future__ import annotations

from typing import Any

import jinja2

from enforcer.tools.policy_charts import delta_chart, timeline_charts
from enforcer.tools.policy_diff import PolicyDiff

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("enforcer.tools", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(diff: PolicyDiff, doc: dict[str, Any]) -> str:
    """The page for one what-if, from its figures (enforcer.tools.policy_doc.diff_doc)."""
    timelines = timeline_charts(diff.timeline)
    legend = sorted(
        {(s.rule, s.mode == "shadow") for s in diff.timeline.series},
        key=lambda item: (item[0], item[1]),
    )
    colours = {r["rule"]: r["colour"] for r in doc["rules"]}
    return _ENV.get_template("policy_diff.html.j2").render(
        doc=doc,
        timelines=timelines,
        delta=delta_chart(diff, doc["rules"]),
        bin_s=f"{diff.timeline.bin_s:g}",
        legend=[
            {"rule": rule, "shadow": shadow, "colour": colours[rule]} for rule, shadow in legend
        ],
    )
