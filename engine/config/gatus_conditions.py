"""What Gatus conditions become: expectations and thresholds of a check."""

from __future__ import annotations

import re
from typing import Any

from watchkeeper.engine.config.gatus import (
    CERTIFICATE_PROBES,
    RCODES,
    RESPONSE_METRIC,
    Path_,
    contained,
    duration_text,
    glob_regex,
    go_duration,
    json_value,
    listed,
    merge_subsets,
    split_condition,
    status_codes,
)


class ConditionRules:
    """The converter's part that reads an endpoint's conditions."""

    # - conditions -

    def conditions(self, endpoint: dict, check: dict, path: Path_, runs: int) -> None:
        statuses: list[tuple[str, str]] = []
        for condition in listed(endpoint.get("conditions")):
            parts = split_condition(str(condition))
            done = parts is not None and self.condition(check, *parts, statuses, runs)
            if not done:
                self.note(path, f"condition `{condition}` has no equivalent; left out")
        if check["probe"] == "http":
            self.status(check, statuses, path)

    def condition(self, check, left, operator, right, statuses, runs) -> bool:
        probe = check["probe"]
        if left == "[CONNECTED]":
            return operator == "==" and right == "true"  # ours: every run must connect
        if left == "[STATUS]":
            if probe == "http":
                statuses.append((operator, right))
                return True
            if probe == "ssh" and operator == "==" and re.fullmatch(r"-?\d+", right):
                if int(right):
                    check["expect_status"] = int(right)
                return "command" in check or right == "0"
            return False
        if left == "[RESPONSE_TIME]":
            metric = RESPONSE_METRIC.get(probe)
            if probe in ("tcp", "websocket"):
                metric = (
                    "round_trip_time"
                    if probe == "websocket" and "send" in check
                    else "connect_time"
                )
            seconds = int(right) / 1000 if right.isdigit() else go_duration(right)
            return metric is not None and self.threshold(check, metric, operator, seconds, runs)
        if left == "[CERTIFICATE_EXPIRATION]":
            if probe not in CERTIFICATE_PROBES or (
                probe == "http" and not check["url"].startswith("https")
            ):
                return False
            if probe == "tcp":
                return False
            seconds = int(right) / 1000 if right.isdigit() else go_duration(right)
            return self.threshold(check, "certificate_expiry", operator, seconds, runs)
        if (
            left == "[DNS_RCODE]"
            and probe == "dns"
            and operator == "=="
            and right.upper() in RCODES
        ):
            check.setdefault("expect", {})["rcode"] = right.upper()
            return True
        if left == "[BODY]" and operator == "==":
            return self.body(check, right)
        if left.startswith("[BODY].") and operator == "==":
            if probe == "grpc":
                return left == "[BODY].status" and right == "SERVING"  # ours: SERVING is good
            if probe == "http" and not right.startswith(("pat(", "any(")) and "[" not in right:
                return self.json_expect(check, left[len("[BODY].") :], right)
        return False

    def threshold(self, check, metric, operator, seconds, runs) -> bool:
        if seconds is None or operator not in ("<", "<=", ">", ">="):
            return False
        direction = "above" if operator in ("<", "<=") else "below"
        rule: dict[str, Any] = {"metric": metric, direction: duration_text(seconds)}
        rule["severity"] = "critical"  # in Gatus a failed condition is the endpoint down
        if runs > 1:
            rule["for"] = runs
        check.setdefault("thresholds", []).append(rule)
        return True

    def body(self, check: dict, right: str) -> bool:
        probe = check["probe"]
        pattern = right[4:-1] if right.startswith("pat(") and right.endswith(")") else None
        if right.startswith("any("):
            return False
        plain = contained(pattern) if pattern is not None else None
        regex = glob_regex(pattern) if pattern is not None else r"(?s)\A" + re.escape(right) + r"\Z"
        expect = (
            check.setdefault("expect", {}) if probe in ("http", "dns", "udp", "websocket") else None
        )
        if probe == "http":
            key, value = ("body_contains", plain) if plain is not None else ("body_regex", regex)
            if key in expect:
                return False
            expect[key] = value
            return True
        if probe == "dns":
            if pattern is None:
                expect.setdefault("contains", []).append(right)
            elif "regex" not in expect:
                expect["regex"] = regex
            else:
                return False
            return True
        if probe in ("udp", "websocket"):
            if expect:
                return False
            if pattern is None:
                expect["exact"] = right
            elif plain is not None:
                expect["contains"] = plain
            else:
                expect["regex"] = regex
            return True
        if probe == "tcp" and "expect_regex" not in check:
            check["expect_regex"] = re.escape(plain) if plain is not None else regex
            return True
        if probe == "ssh" and "command" in check and "expect_output" not in check:
            check["expect_output"] = {"contains": plain} if plain is not None else {"regex": regex}
            return True
        return False

    def json_expect(self, check: dict, path: str, right: str) -> bool:
        steps: list[str | int] = []
        for part in path.split("."):
            match = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
            if not match:
                return False
            if match.group(1):
                steps.append(match.group(1))
            for index in re.findall(r"\[(\d+)\]", match.group(2)):
                if index != "0":
                    return False  # ours matches lists from their start: only [0] is exact
                steps.append(0)
        if not steps or not isinstance(steps[0], str):
            return False
        expect = check.setdefault("expect", {})
        value: Any = json_value(right)
        for step in reversed(steps):
            value = [value] if step == 0 else {step: value}
        merged = merge_subsets(expect.get("json"), value)
        if merged is None:
            return False
        expect["json"] = merged
        return True

    def status(self, check: dict, constraints: list[tuple[str, str]], path: Path_) -> None:
        if not constraints:
            self.note(path, "Gatus had no [STATUS] condition here; ours expects a 2xx or 3xx")
            return
        codes = set(range(100, 600))
        for operator, right in constraints:
            allowed = status_codes(operator, right)
            if allowed is None:
                self.note(path, f"condition `[STATUS] {operator} {right}` has no equivalent")
                continue
            codes &= allowed
        if codes and codes != set(range(100, 200)) and not codes <= set(range(100, 200)):
            codes -= set(range(100, 200))  # never a final status
        if not codes:
            self.note(path, "no status satisfies every [STATUS] condition; left to the default")
        elif codes != set(range(200, 400)):
            listed = sorted(codes)
            check.setdefault("expect", {})["status"] = listed[0] if len(listed) == 1 else listed
        if "expect" in check and not check["expect"]:
            del check["expect"]
