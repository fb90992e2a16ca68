"""Default message templates the built-in notifiers share, and the words and colours in them.

Written for the person paged at 3 am: what is wrong and where first, then the number
that crossed and its threshold, since when (or for how long, once resolved), the
runbook, what was already tried (actions) and how to acknowledge. Each notifier picks
the templates it needs by name; `templates:` in monitor.yaml overrides any of them.
"""

from __future__ import annotations

from typing import Any

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


def helpers(notice: Any) -> dict[str, Any]:
    """Return the values every default template may use besides the notice itself."""
    return {"color": color(notice), "instance": instance}


# One line naming what happened: the Slack header, the mail subject, the apprise title.
HEADLINE = """\
{%- if kind == "test" -%}
[TEST] {{ title }}
{%- elif kind == "alert" -%}
{%- set flapping = alerts | selectattr("change", "equalto", "flapping") | list -%}
{%- set stable = alerts | selectattr("change", "equalto", "stable") | list -%}
{{ "FLAPPING" if flapping else ("STABLE" if stable and not firing else (
   "RESOLVED" if not firing else "FIRING")) }}
{{- (" " ~ firing | length ~ "×") if firing | length > 1 else "" }}
{{- (" [" ~ severity ~ "]") if severity and firing else "" }}
{{- (" after " ~ (alerts[0].duration | duration))
    if not firing and alerts | length == 1 and alerts[0].duration is not none else "" }}: \
{{ title }}
{{- (" · escalated to " ~ notice.escalation) if notice.escalation else "" }}
{{- " · acknowledged" if alerts and alerts | rejectattr("acknowledged") | list | length == 0
    else "" }}
{%- elif kind == "event" and event -%}
{{ title or (event.get("event", "event") ~ " " ~ (event.get("version") or "")) }}
{%- else -%}
{{ title }}
{%- endif -%}
"""

# The facts of one alert as plain text (`a` is the alert); shared by the text bodies.
_ALERT_TEXT = """\
{{ "RESOLVED" if a.status == "resolved" else "FIRING" }} {{ a.severity | upper }} \
{{ instance(a) }} · {{ a.rule }}
  {{ a.summary }}
{% if a.metric %}
  Metric:     {{ a.metric }} is {{ a.value_text or a.value }}, {{ a.direction or "against" }} \
the threshold {{ a.threshold_text or a.threshold }}
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
  Severity:   changed to {{ a.severity }}
{% elif a.change == "repeat" %}
  Reminder:   still firing
{% endif %}
  Runbook:    {{ a.runbook or "none (add `runbook:` to this check)" }}
{% if a.description %}
  About:      {{ a.description }}
{% endif %}
{% if a.escalation %}
  Escalation: {{ a.escalation }}
{% endif %}
{% if a.labels %}
  Labels:     {% for k, v in a.labels | dictsort %}{{ k }}={{ v }}{{ ", " if not loop.last }}\
{% endfor %}

{% endif %}
{% for r in a.actions %}
  Action:     {{ r.get("name", "?") }} {{ "succeeded" if r.get("ok") else "FAILED" }}\
{{ (": " ~ r.get("message")) if r.get("message") else "" }}
{% endfor %}
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

# One line for the daemon's log.
LOG_LINE = (
    HEADLINE
    + """\
{% for a in alerts %} | {{ a.status }} {{ a.severity }} {{ instance(a) }} {{ a.rule }}: \
{{ a.summary }}\
{{ (" (" ~ a.metric ~ " " ~ (a.value_text or a.value) ~ ", threshold " ~
    (a.threshold_text or a.threshold) ~ ")") if a.metric else "" }}\
{{ (" lasted " ~ (a.duration | duration)) if a.status == "resolved" and a.duration is not none
   else "" }}\
{{ (" runbook " ~ a.runbook) if a.runbook and a.status == "firing" else "" }}\
{% endfor %}\
{{ (" | " ~ text) if text else "" }}\
{{ (" | " ~ checklist | join("; ")) if checklist else "" }}"""
)

# Slack mrkdwn under the header: what happened, in words; the facts follow as fields.
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
{{ ":white_check_mark:" if a.status == "resolved" else ":red_circle:" }} \
*{{ esc(instance(a)) }}* `{{ esc(a.rule) }}`: {{ esc(a.summary) }}\
{{ (" — lasted *" ~ (a.duration | duration) ~ "*")
   if a.status == "resolved" and a.duration is not none else "" }}
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
<tr><td colspan="2" style="padding:6px 10px;font-size:15px">
<strong>{{ "RESOLVED" if a.status == "resolved" else "FIRING" }} {{ a.severity | upper }}
{{ instance(a) }}</strong> · {{ a.rule }}<br>{{ a.summary }}</td></tr>
{% if a.metric %}
<tr><th style="text-align:left;padding:2px 10px;width:110px">Metric</th>
<td>{{ a.metric }} is <strong>{{ a.value_text or a.value }}</strong>,
{{ a.direction or "against" }} the threshold {{ a.threshold_text or a.threshold }}</td></tr>
{% endif %}
{% if a.status == "resolved" %}
<tr><th style="text-align:left;padding:2px 10px">Lasted</th>
<td>{{ (a.duration | duration) if a.duration is not none else "unknown" }}</td></tr>
{% elif a.started_at %}
<tr><th style="text-align:left;padding:2px 10px">Since</th><td>{{ a.started_at | when }}</td></tr>
{% endif %}
{% if a.change == "flapping" %}
<tr><th style="text-align:left;padding:2px 10px">Flapping</th>
<td>it keeps changing state; you will hear once more when it is stable</td></tr>
{% elif a.change == "stable" %}
<tr><th style="text-align:left;padding:2px 10px">Stable</th><td>it stopped flapping</td></tr>
{% endif %}
<tr><th style="text-align:left;padding:2px 10px">Runbook</th><td>
{% if a.runbook and (a.runbook.startswith("https://") or a.runbook.startswith("http://")) %}
<a href="{{ a.runbook }}">{{ a.runbook }}</a>
{% else %}
{{ a.runbook or "none (add runbook: to this check)" }}
{% endif %}
</td></tr>
{% if a.escalation %}
<tr><th style="text-align:left;padding:2px 10px">Escalation</th><td>{{ a.escalation }}</td></tr>
{% endif %}
{% for r in a.actions %}
<tr><th style="text-align:left;padding:2px 10px">Action</th>
<td>{{ r.get("name", "?") }} {{ "succeeded" if r.get("ok") else "FAILED" }}\
{{ (": " ~ r.get("message")) if r.get("message") else "" }}</td></tr>
{% endfor %}
<tr><th style="text-align:left;padding:2px 10px">Alert</th><td><code>{{ a.id }}</code>
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

# A single alert, for receivers that get one event per alert (PagerDuty, Sentry).
ALERT_SUMMARY = """\
{%- if alert -%}
{{ "[TEST] " if kind == "test" else "" }}{{ alert.severity | upper }} {{ instance(alert) }} \
{{ alert.rule }}: {{ alert.summary }}
{%- else -%}
{{ title }}{{ (": " ~ text) if text else "" }}
{%- endif -%}
"""
