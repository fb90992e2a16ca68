"""What Gatus alerts, external endpoints and maintenance become: notifiers, routes,
heartbeat checks and windows."""

from __future__ import annotations

import json
import re
from typing import Any

from watchkeeper.engine.config.gatus import (
    DAYS,
    GATUS_FAILURE_THRESHOLD,
    GATUS_SUCCESS_THRESHOLD,
    Path_,
    count_of,
    duration_text,
    go_duration,
    interpolated,
    listed,
    slug,
)
from watchkeeper.engine.config.gatus_notifiers import build_notifier, env_name


class AlertRules:
    """The converter's part that carries alerting over."""

    # - alerts -

    def alerts(self, endpoint: dict, name: str, group: str | None, check: dict, path: Path_) -> int:
        """Turn an endpoint's alerts into routes to notifiers; return the failures in a row
        an alert needs (thresholds wait as long)."""
        failures: list[tuple[int, int]] = []
        descriptions: list[str] = []
        for alert in listed(endpoint.get("alerts")):
            if not isinstance(alert, dict):
                continue
            kind = str(alert.get("type") or "")
            provider = self.alerting.get(kind)
            if not isinstance(provider, dict):
                self.note(
                    path,
                    f"alert `{kind}`: alerting.{kind} is not configured, so Gatus "
                    "ignored it too; left out",
                )
                continue
            default = (
                provider.get("default-alert")
                if isinstance(provider.get("default-alert"), dict)
                else {}
            )
            merged = {**default, **alert}
            if merged.get("enabled") is False:
                self.note(path, f"alert `{kind}` is disabled in Gatus; left out")
                continue
            failures.append(
                (
                    count_of(merged.get("failure-threshold"), GATUS_FAILURE_THRESHOLD),
                    count_of(merged.get("success-threshold"), GATUS_SUCCESS_THRESHOLD),
                )
            )
            if merged.get("description"):
                descriptions.append(interpolated(str(merged["description"])))
            override = alert.get("provider-override")
            notifier = self.notifier(
                kind, provider, group, override, name, merged.get("send-on-resolved") is True
            )
            if notifier is None:
                continue
            if notifier not in self.uses.setdefault(name, []):
                self.uses[name].append(notifier)
            reminder = go_duration(merged.get("minimum-reminder-interval"))
            if reminder:
                self.reminders[name] = min(reminder, self.reminders.get(name, reminder))
        if not failures:
            return 1
        lowest = min(failures)
        # Gatus's defaults (3 and 2) are not ours (1 and 1): always written out
        check["failure_threshold"], check["success_threshold"] = lowest
        if len({f for f, _ in failures}) > 1:
            counts = ", ".join(str(f) for f in sorted({f for f, _ in failures}))
            self.note(
                path,
                f"Gatus alerted after {counts} failures in a row; ours has one "
                "failure_threshold per check: every notifier hears at the lowest",
            )
        if descriptions:
            check["description"] = "; ".join(dict.fromkeys(descriptions))
        return lowest[0]

    def notifier(self, kind, provider, group, override, check, resolved) -> str | None:
        config = {k: v for k, v in provider.items() if k not in ("default-alert", "overrides")}
        scope = ""
        for entry in listed(provider.get("overrides")):
            if isinstance(entry, dict) and group and entry.get("group") == group:
                config.update({k: v for k, v in entry.items() if k != "group"})
                scope = group
        if isinstance(override, dict) and override:
            config.update(override)
            scope = check
        if (kind, scope) not in self.built:
            self.built[kind, scope] = build_notifier(kind, config, scope, self)
        built = self.built[kind, scope]
        if built is None:
            return None
        notifier = dict(built)
        if not resolved:
            notifier["send_resolved"] = False  # Gatus's default; ours tells resolutions
        key = json.dumps(notifier, sort_keys=True)
        if key in self.notifier_keys:
            return self.notifier_keys[key]
        name = slug(f"{kind}-{scope}" if scope else kind)
        if name in self.notifiers:
            name += "-no-resolved" if not resolved else "-resolved"
        base, n = name, 1
        while name in self.notifiers:
            n += 1
            name = f"{base}-{n}"
        self.notifiers[name] = notifier
        self.notifier_keys[key] = name
        return name

    def routes(self) -> list[dict[str, Any]]:
        grouped: dict[tuple, list[str]] = {}
        for check, notifiers in self.uses.items():
            grouped.setdefault((tuple(notifiers), self.reminders.get(check)), []).append(check)
        routes = []
        for (notifiers, reminder), checks in grouped.items():
            # Gatus sends as soon as the threshold is reached: no gathering wait
            route: dict[str, Any] = {"match": {"check": checks}, "notify": list(notifiers)}
            route["group_wait"] = "0s"
            if reminder:
                route["repeat"] = duration_text(reminder)
            routes.append(route)
        return routes

    # - external endpoints -

    def external(self, endpoint: Any, index: int) -> None:
        if not isinstance(endpoint, dict):
            self.note((), f"external-endpoints[{index}] is not a mapping; left out")
            return
        raw = str(endpoint.get("name") or f"external-{index + 1}")
        group = str(endpoint["group"]) if endpoint.get("group") else None
        name = self.unique_name(raw, group)
        path: Path_ = ("checks", name)
        check: dict[str, Any] = {"probe": "heartbeat"}
        interval = (
            go_duration((endpoint.get("heartbeat") or {}).get("interval"))
            if isinstance(endpoint.get("heartbeat"), dict)
            else None
        )
        token = self.secret(
            endpoint.get("token"),
            env_name(name, "HEARTBEAT_TOKEN"),
            f"external-endpoints[{raw}].token",
        )
        if not interval:
            check["token"] = token
            self.result.commented[name] = check
            self.note(
                path,
                "an external endpoint without heartbeat.interval: ours needs "
                "`expect_every` (how often a beat is due); set it and uncomment",
            )
            return
        check["expect_every"] = {"every": duration_text(interval)}
        check["grace"] = "0s"  # Gatus alerts as soon as the interval passes without a push
        if token:
            check["token"] = token
        if endpoint.get("enabled") is False:
            check["enabled"] = False
        if group:
            check["labels"] = {"group": group}
        self.note(
            path,
            "jobs push to POST /api/heartbeat/" + name + "?status=ok|fail "
            "(Bearer token) instead of Gatus's /api/v1/endpoints/{key}/external",
        )
        self.alerts(endpoint, name, group, check, path)
        self.checks[name] = check

    # - maintenance -

    def maintenance(self) -> None:
        config = self.gatus.get("maintenance")
        if isinstance(config, dict) and config:
            self.window(config, None, ("maintenance",))

    def window(self, config: Any, check: str | None, path: Path_) -> None:
        if not isinstance(config, dict):
            return
        if config.get("enabled") is False:
            self.note(path, "a maintenance window disabled in Gatus; left out")
            return
        start = config.get("start")
        if isinstance(start, int) and not isinstance(start, bool):
            hour, minute = divmod(start, 60)  # YAML 1.1 reads an unquoted 23:00 as 1380
        else:
            match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(start or "").strip())
            hour, minute = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        duration = go_duration(config.get("duration"))
        if not (0 <= hour < 24 and 0 <= minute < 60) or not duration:
            self.note(
                path, "a maintenance window without a valid start (hh:mm) and duration; left out"
            )
            return
        days = [DAYS.get(str(d).strip().lower()) for d in listed(config.get("every"))]
        if None in days:
            self.note(path, "a maintenance window names a day that is not a weekday; left out")
            return
        cron = f"{minute} {hour} * * {','.join(dict.fromkeys(days)) if days else '*'}"  # type: ignore[arg-type]
        name = f"{check}-maintenance" if check else "maintenance"
        taken = {w["name"] for w in self.windows}
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        schedule: dict[str, Any] = {"cron": cron, "timezone": str(config.get("timezone") or "UTC")}
        window: dict[str, Any] = {
            "name": name,
            "schedule": schedule,
            "duration": duration_text(duration),
        }
        if check:
            window["checks"] = [check]
        self.windows.append(window)
