"""Default message templates the built-in notifiers share, and the words and colours in them.

Written for the person paged at 3 am: what is wrong and where first, then the number
that crossed and its threshold, since when (or for how long, once resolved), the
runbook, what was already tried (actions) and how to acknowledge. Each notifier picks
the templates it needs by name; `templates:` in monitor.yaml overrides any of them.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.notice import cut, one_line

SEVERITY_COLORS = {
    "critical": "#D00000",
    "high": "#E8590C",
    "medium": "#F59F00",
    "warning": "#FAB005",
    "low": "#1C7ED6",
    "info": "#868E96",
}
RESOLVED_COLOR = "#2B8A3E"
EVENT_COLOR = "#5C7CFA"
OTHER_COLOR = "#E8590C"  # a severity of the user's own naming: loud enough to be read


def color(notice: Any) -> str:
    """Return the colour of a notice: by severity while firing, green once resolved."""
    if notice.kind in ("event", "task", "announcement"):
        return EVENT_COLOR
    if notice.alerts and not notice.firing:
        return RESOLVED_COLOR
    severity = notice.severity or (notice.firing[0].severity if notice.firing else None)
    return SEVERITY_COLORS.get(severity or "info", OTHER_COLOR)


def instance(alert: Any) -> str:
    """Return `check@environment`, or the check's name."""
    return f"{alert.check}@{alert.environment}" if alert.environment else alert.check


def locations_text(locations: dict[str, Any] | None) -> str:
    """Return which locations see a check down, up and unknown, and the quorum, in words:
    `Down in eu, us · up in ap · quorum 2`; empty for a check run from one place."""
    if not locations:
        return ""
    parts = [
        f"{state} in {', '.join(str(place) for place in places)}"
        for state in ("down", "up", "unknown")
        if (places := locations.get(state))
    ]
    if locations.get("quorum") is not None:
        parts.append(f"quorum {locations['quorum']}")
    text = " · ".join(parts)
    return text[:1].upper() + text[1:]


def helpers(notice: Any) -> dict[str, Any]:
    """Return the values every default template may use besides the notice itself."""
    return {
        "color": color(notice),
        "instance": instance,
        "locations_text": locations_text,
        "headline": notice.headline,
        "detail": notice.detail,
        "cut": cut,
        "one_line": one_line,
    }


# One line naming what happened: the Slack header, the mail subject, the apprise title.
# Where, what is wrong in a few words, how bad (`api-health@production is down: HTTP 503
# (critical)`); once resolved, what recovered and after how long. The probe's own words
# (a response body...) are detail, for the body only.
HEADLINE = """\
{%- if kind == "test" -%}
[TEST] {{ title }}
{%- elif kind == "alert" and alerts -%}
{{ notice.headline }}
{%- elif kind == "event" and event -%}
{{ title or (event.get("event", "event") ~ " " ~ (event.get("version") or "")) }}
{%- else -%}
{{ title }}
{%- endif -%}
"""

# The facts of one alert as plain text (`a` is the alert); shared by the text bodies.
# A notice of one alert has its headline at the top already: the block does not repeat it.
_ALERT_TEXT = """\
{% if alerts | length > 1 %}
{{ a.headline }}
{% endif %}
{% if a.status == "firing" and a.detail %}
  Detail:     {{ a.detail }}
{% endif %}
{% if a.status == "firing" and a.metric %}
  Metric:     {{ a.measure or a.metric }} is {{ a.value_text or a.value }}, \
{{ a.direction or "against" }} the threshold {{ a.threshold_text or a.threshold }}
{% endif %}
{% if a.locations %}
  Locations:  {{ locations_text(a.locations) }}
{% endif %}
{% if a.status == "resolved" %}
  Lasted:     {{ (a.duration | duration) if a.duration is not none else "unknown" }}\
{{ (" (since " ~ (a.started_at | when) ~ ", resolved " ~ (a.resolved_at | when) ~ ")")
   if a.started_at and a.resolved_at else "" }}
{% elif a.started_at %}
  Since:      {{ a.started_at | when }}
{% endif %}
{% if a.change == "flapping" %}
  Flapping:   it keeps changing state; you will hear once more when it is stable
{% elif a.change == "stable" %}
  Stable:     it stopped flapping
{% elif a.change == "severity" %}
  Severity:   {{ a.severity }}{{ (", was " ~ a.previous_severity) if a.previous_severity else "" }}
{% elif a.change == "repeat" %}
  Reminder:   still firing
{% endif %}
{% if a.status == "firing" %}
  Runbook:    {{ (a.runbook | trim | indent(14)) if a.runbook
                 else "none (add `runbook:` to this check)" }}
{% endif %}
{% if a.description %}
  About:      {{ a.description }}
{% endif %}
{% if a.escalation %}
  Escalation: {{ notice.escalation_level or a.escalation }}
{% endif %}
{% if a.labels %}
  Labels:     {% for k, v in a.labels | dictsort %}{{ k }}={{ v }}{{ ", " if not loop.last }}\
{% endfor %}

{% endif %}
{% for r in a.actions %}
  Action:     {{ r.get("name", "?") }} {{ "succeeded" if r.get("ok") else "FAILED" }}\
{{ (": " ~ r.get("message")) if r.get("message") else "" }}
{% endfor %}
  Alert:      {{ a.id }} (rule {{ a.rule }}, {{ a.severity }})
{% if a.acknowledged %}
  Acknowledged.
{% elif a.status == "firing" and kind == "alert" %}
  Acknowledge: watchkeeper alerts ack {{ a.id }}
{% endif %}
"""

# Body of a mail or an apprise message.
TEXT = (
    """\
{{ headline }}

{% if text %}
{{ text }}

{% endif %}
{% if event %}
{% for k, v in event | dictsort %}
{{ k }}: {{ v }}
{% endfor %}

{% endif %}
{% for item in checklist %}
[ ] {{ item }}
{% endfor %}
{% if checklist %}

{% endif %}
{% for a in alerts %}
"""
    + _ALERT_TEXT
    + """\

{% endfor %}
{% if notice.collapsed %}
(It resolved before the firing notice could be delivered.)
{% endif %}
"""
)

# One line for the daemon's log: the headline, then each alert's detail and where to look.
LOG_LINE = """\
{%- if kind == "test" -%}[TEST] {% endif -%}
{{ notice.headline if kind == "alert" and alerts else title }}\
{% for a in alerts %}\
{{ (" | " ~ a.headline) if alerts | length > 1 else "" }}\
{{ (" | " ~ a.detail) if a.detail and a.status == "firing" else "" }}\
{{ (" | runbook " ~ cut(one_line(a.runbook), 120)) if a.runbook and a.status == "firing"
   else "" }}\
{{ " | alert " ~ a.id }}\
{% endfor %}\
{{ (" | " ~ text) if text else "" }}\
{{ (" | " ~ checklist | join("; ")) if checklist else "" }}"""

# Slack mrkdwn under the header: the probe's detail, flapping notes, what actions did;
# the facts follow as fields. A notice of one alert does not repeat its headline.
MRKDWN = """\
{% if text %}
{{ esc(text) }}
{% endif %}
{% if event %}
{% for k, v in event | dictsort if k != "event" %}
*{{ esc(k) }}:* {{ esc(v | string) }}
{% endfor %}
{% endif %}
{% for item in checklist %}
☐ {{ esc(item) }}
{% endfor %}
{% for a in alerts %}
{% if alerts | length > 1 %}
{{ ":white_check_mark:" if a.status == "resolved" else ":red_circle:" }} {{ esc(a.headline) }}
{% endif %}
{% if a.status == "firing" and a.detail %}
```{{ esc(a.detail) | replace("```", "'''") }}```
{% endif %}
{% if a.change == "flapping" %}
:warning: flapping: it keeps changing state; you will hear once more when it is stable
{% elif a.change == "stable" %}
stable again after flapping
{% endif %}
{% for r in a.actions %}
{{ ":white_check_mark:" if r.get("ok") else ":x:" }} action *{{ esc(r.get("name", "?")) }}*\
{{ (": " ~ esc(r.get("message"))) if r.get("message") else "" }}
{% endfor %}
{% endfor %}
"""

HTML = """\
<!doctype html>
<html><body style="margin:0;padding:16px;background:#f6f8fa;\
font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328">
<div style="max-width:680px;margin:0 auto;background:#ffffff;border:1px solid #d0d7de;\
border-top:6px solid {{ color }};border-radius:6px">
<div style="padding:16px 20px">
<h2 style="margin:0 0 12px 0;font-size:18px">{{ headline }}</h2>
{% if text %}
<p style="white-space:pre-wrap;margin:0 0 12px 0">{{ text }}</p>
{% endif %}
{% if event %}
<table style="border-collapse:collapse;margin:0 0 12px 0">
{% for k, v in event | dictsort %}
<tr><th style="text-align:left;padding:2px 12px 2px 0">{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if checklist %}
<ul style="margin:0 0 12px 0;padding-left:20px">
{% for item in checklist %}<li>{{ item }}</li>{% endfor %}
</ul>
{% endif %}
{% for a in alerts %}
<table style="width:100%;border-collapse:collapse;margin:0 0 16px 0;\
border-left:4px solid {{ "#2B8A3E" if a.status == "resolved" else color }}">
{% if alerts | length > 1 %}
<tr><td colspan="2" style="padding:6px 10px;font-size:15px">\
<strong>{{ a.headline }}</strong></td></tr>
{% endif %}
{% if a.status == "firing" and a.detail %}
<tr><th style="text-align:left;padding:2px 10px;width:110px">Detail</th>
<td><code style="white-space:pre-wrap">{{ a.detail }}</code></td></tr>
{% endif %}
{% if a.status == "firing" and a.metric %}
<tr><th style="text-align:left;padding:2px 10px;width:110px">Metric</th>
<td>{{ a.measure or a.metric }} is <strong>{{ a.value_text or a.value }}</strong>,
{{ a.direction or "against" }} the threshold {{ a.threshold_text or a.threshold }}</td></tr>
{% endif %}
{% if a.locations %}
<tr><th style="text-align:left;padding:2px 10px;width:110px">Locations</th>
<td>{{ locations_text(a.locations) }}</td></tr>
{% endif %}
{% if a.status == "resolved" %}
<tr><th style="text-align:left;padding:2px 10px;width:110px">Lasted</th>
<td>{{ (a.duration | duration) if a.duration is not none else "unknown" }}</td></tr>
{% elif a.started_at %}
<tr><th style="text-align:left;padding:2px 10px">Since</th><td>{{ a.started_at | when }}</td></tr>
{% endif %}
{% if a.change == "flapping" %}
<tr><th style="text-align:left;padding:2px 10px">Flapping</th>
<td>it keeps changing state; you will hear once more when it is stable</td></tr>
{% elif a.change == "stable" %}
<tr><th style="text-align:left;padding:2px 10px">Stable</th><td>it stopped flapping</td></tr>
{% elif a.change == "severity" %}
<tr><th style="text-align:left;padding:2px 10px">Severity</th><td>{{ a.severity }}\
{{ (", was " ~ a.previous_severity) if a.previous_severity else "" }}</td></tr>
{% endif %}
{% if a.status == "firing" %}
<tr><th style="text-align:left;padding:2px 10px">Runbook</th><td>
{% if a.runbook and (a.runbook.startswith("https://") or a.runbook.startswith("http://")) %}
<a href="{{ a.runbook }}">{{ a.runbook }}</a>
{% else %}
<span style="white-space:pre-wrap">\
{{ (a.runbook | trim) or "none (add runbook: to this check)" }}</span>
{% endif %}
</td></tr>
{% endif %}
{% if a.escalation %}
<tr><th style="text-align:left;padding:2px 10px">Escalation</th>\
<td>{{ notice.escalation_level or a.escalation }}</td></tr>
{% endif %}
{% for r in a.actions %}
<tr><th style="text-align:left;padding:2px 10px">Action</th>
<td>{{ r.get("name", "?") }} {{ "succeeded" if r.get("ok") else "FAILED" }}\
{{ (": " ~ r.get("message")) if r.get("message") else "" }}</td></tr>
{% endfor %}
<tr><th style="text-align:left;padding:2px 10px">Alert</th><td><code>{{ a.id }}</code>
(rule {{ a.rule }}, {{ a.severity }})
{% if a.acknowledged %}
 · acknowledged
{% elif a.status == "firing" and kind == "alert" %}
 · acknowledge: <code>watchkeeper alerts ack {{ a.id }}</code>
{% endif %}
</td></tr>
</table>
{% endfor %}
</div>
<div style="padding:8px 20px;border-top:1px solid #d0d7de;color:#59636e;font-size:12px">
Sent by watchkeeper · notice {{ notice.id }}</div>
</div>
</body></html>
"""

# A single alert, for receivers that get one event per alert (PagerDuty, Sentry): its
# headline, never the probe's detail (that goes in the event's details).
ALERT_SUMMARY = """\
{%- if alert -%}
{{ "[TEST] " if kind == "test" else "" }}{{ alert.headline }}
{{- (" · escalated to " ~ (notice.escalation_level or notice.escalation))
    if notice.escalation else "" }}
{{- " · acknowledged" if alert.acknowledged and alert.status == "firing" else "" }}
{%- else -%}
{{ title }}{{ (": " ~ text) if text else "" }}
{%- endif -%}
"""
