"""Check instances: each check expanded per environment, with every inherited setting resolved.

A check listing `environments: [production, staging]` becomes `name@production` and
`name@staging`, its string fields reading `${env.key}` from that environment. Settings a
check leaves out come from `defaults`, then from the built-in defaults.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from watchkeeper.engine.plugins import Registry
from watchkeeper.engine.run.probe import Probe
from watchkeeper.schema.checks import DEFAULTS, Threshold
from watchkeeper.schema.schedule import Schedule

DEFAULT_SCHEDULE = Schedule(every=300.0)
ENV_REF = re.compile(r"\$\{\s*env\.([A-Za-z0-9_.-]+)\s*\}")


def instance_key(check: str, environment: str | None) -> str:
    """Return `check@environment`, or the check's name."""
    return f"{check}@{environment}" if environment else check


def split_key(key: str) -> tuple[str, str | None]:
    """Return (check, environment) of an instance key (a `~replica` or `/location` suffix
    is dropped)."""
    check, _, environment = key.split("~", 1)[0].split("/", 1)[0].partition("@")
    return check, environment or None


def location_key(key: str, location: str) -> str:
    """Return the key of an instance's run from one location: `check@environment/eu`."""
    return f"{key}/{location}"


def location_of(key: str) -> str | None:
    """Return the location of a `…/location` instance key, None for any other key."""
    _, slash, location = key.partition("/")
    return location if slash else None


@dataclass(eq=False, slots=True)
class Instance:
    """One runnable check: a check in one environment with its settings resolved."""

    key: str
    check: str
    environment: str | None
    probe_type: str
    probe_class: type[Probe]
    options: Any  # the check's model, ${env.*} resolved; the probe reads its keys from it
    schedule: Schedule | None  # None for passive checks (heartbeat, composite)
    timezone: str
    timeout: float
    severity: str
    failure_threshold: int
    success_threshold: int
    min_samples: int
    flap_threshold: int
    flap_window: float
    labels: dict[str, str]
    thresholds: list[Threshold]
    runbook: str | None
    description: str | None
    depends_on: list[str] = field(default_factory=list)  # parent instance keys
    digest: str = field(default="", repr=False)  # `fingerprint`, once it is asked for
    replica: str | None = None  # host-scoped checks under replicas: one instance each
    # a check with `locations` is one judging instance (`locations` set, never run itself)
    # and one run instance per location (`location` and `parent` set), keyed `key/location`
    locations: Any = None
    location: str | None = None
    parent: str | None = None

    @property
    def fingerprint(self) -> str:
        """A digest of everything that defines how this instance runs and is judged,
        worked out when first asked for (a reload compares them; a start needs none)."""
        if not self.digest:
            self.digest = _fingerprint(self)
        return self.digest

    @fingerprint.setter
    def fingerprint(self, value: str) -> None:
        self.digest = value

    @property
    def passive(self) -> bool:
        return bool(getattr(self.probe_class, "passive", False))

    @property
    def runs(self) -> bool:
        """True when the scheduler runs this instance's probe (not a passive check, not
        the judging instance of a located check, whose locations run it)."""
        return not self.passive and self.locations is None

    @property
    def location_keys(self) -> list[str]:
        """The run instances of a located check, one per location in `from` order."""
        if self.locations is None:
            return []
        return [location_key(self.key, loc) for loc in self.locations.from_]

    @property
    def host_scoped(self) -> bool:
        return getattr(self.probe_class, "scope", "global") == "host"

    def window_needed(self) -> float:
        """Return the longest window any rule of this check looks back over (seconds)."""
        windows = [r.window or 0.0 for r in self.thresholds]
        windows += [r.for_ for r in self.thresholds if isinstance(r.for_, float)]
        return max([0.0, *windows])


def expand(
    config: Any,
    reg: Registry,
    *,
    replica: str | None = None,
    running: Mapping[str, Instance] | None = None,
    keep: Container[str] = (),
) -> dict[str, Instance]:
    """Return every enabled check instance of a validated config, by key.

    With `replica` (daemons sharing a store), host-scoped checks (system, command, env)
    watch each replica's own host: their instance is `key~replica`, one per replica.
    `keep` (a reload): names of checks whose instances would be built again just as they
    are in `running` (the running instances, by key); those are taken instead.
    """
    from watchkeeper.engine.run.sharing import Interner

    defaults = config.defaults
    out: dict[str, Instance] = {}
    share = Interner()  # equal labels and rule lists: one object for every instance
    env_lists = {name: check.environments for name, check in config.checks.items()}
    # what a check that leaves a setting out gets: worked out once, not per check
    fallbacks = {name: _setting(None, defaults, name) for name in SETTINGS}
    classes: dict[str, type[Probe]] = {}
    for name, check in config.checks.items():
        if not check.enabled:
            continue
        probe_class = classes.get(check.probe)
        if probe_class is None:
            probe_class = classes[check.probe] = reg.get("probe", check.probe)
        host = replica is not None and getattr(probe_class, "scope", "global") == "host"
        if running is not None and name in keep and _take_running(name, check, host, replica,
                                                                  running, out):  # fmt: skip
            continue
        for environment in check.environments or [None]:
            options = check
            if environment is not None:
                options = _with_environment(check, config.environments.get(environment, {}))
            key = instance_key(name, environment)
            if host:
                key = f"{key}~{replica}"
            out[key] = _instance(
                key,
                name,
                environment,
                probe_class,
                options,
                defaults,
                _parents(check.depends_on, environment, env_lists) if check.depends_on else [],
                share,
                fallbacks,
            )
            if host:
                out[key].replica = replica
            if check.locations is not None:
                out.update(_located(out[key], check.locations))
    return out


def _take_running(
    name: str,
    check: Any,
    host: bool,
    replica: str | None,
    running: Mapping[str, Instance],
    out: dict[str, Instance],
) -> bool:
    """Put a check's running instances in `out` under the keys `expand` would give them;
    False if one is missing (then `expand` builds them all, over what was put)."""
    for environment in check.environments or [None]:
        key = instance_key(name, environment)
        if host:
            key = f"{key}~{replica}"
        instance = running.get(key)
        if instance is None:
            return False
        out[key] = instance
        if instance.locations is not None:
            for location in instance.location_keys:
                run = running.get(location)
                if run is None:
                    return False
                out[location] = run
    return True


def _located(judge: Instance, spec: Any) -> dict[str, Instance]:
    """Split a located check into its judging instance and one run per location.

    Each location counts its own failures and successes (the check's thresholds); the
    judging instance turns the locations' states into one `up` verdict, so its own
    counters pass every verdict on at once, and it judges the threshold rules on the
    values combined over the locations.
    """
    from dataclasses import replace

    runs = {}
    for location in spec.from_:
        key = location_key(judge.key, location)
        run = replace(judge, key=key, thresholds=[], location=location, parent=judge.key)
        run.digest = ""  # its own, worked out when asked for
        runs[key] = run
    judge.locations = spec
    judge.schedule = None  # never run itself: its locations run it on the check's schedule
    judge.failure_threshold = judge.success_threshold = 1
    judge.digest = ""  # changed above: worked out again when asked for
    return runs


def _setting(check: Any, defaults: Any, name: str) -> Any:
    value = getattr(check, name, None)
    if value is None:
        value = getattr(defaults, name, None)
    return DEFAULTS[name] if value is None else value


def check_schedule(check: Any, defaults: Any) -> tuple[Schedule, str]:
    """Return the schedule a (non-passive) check runs on, and its timezone.

    The schedule is the check's, else `defaults.schedule`, else every 5m; the zone is the
    schedule's `timezone`, else the check's, else `defaults.timezone`, else UTC.
    """
    schedule = check.schedule or defaults.schedule or DEFAULT_SCHEDULE
    zone = schedule.timezone or check.timezone or defaults.timezone or DEFAULTS["timezone"]
    return schedule, zone


SETTINGS = ("timeout", "severity", "failure_threshold", "success_threshold", "min_samples",
            "flap_threshold", "flap_window")  # fmt: skip
"""The settings a check may leave to `defaults`, then to the built-in `DEFAULTS`."""


def _instance(
    key: str,
    name: str,
    environment: str | None,
    probe_class: type[Probe],
    options: Any,
    defaults: Any,
    parents: list[str],
    share: Any = None,
    fallbacks: dict[str, Any] | None = None,
) -> Instance:
    passive = bool(getattr(probe_class, "passive", False))
    schedule, timezone = check_schedule(options, defaults)
    if passive:
        schedule = None
    labels = {**defaults.labels, **options.labels}
    thresholds = list(options.thresholds)
    if share is not None:  # neither is changed once built
        labels, thresholds = share(labels), share(thresholds)
    if fallbacks is None:
        fallbacks = {name: _setting(None, defaults, name) for name in SETTINGS}
    settings = {}
    for setting in SETTINGS:
        value = getattr(options, setting, None)
        settings[setting] = fallbacks[setting] if value is None else value
    return Instance(
        key=key,
        check=name,
        environment=environment,
        probe_type=options.probe,
        probe_class=probe_class,
        options=options,
        schedule=schedule,
        timezone=timezone,
        **settings,
        labels=labels,
        thresholds=thresholds,
        runbook=options.runbook,
        description=options.description,
        depends_on=parents,
    )


def _parents(
    depends_on: list[str], environment: str | None, env_lists: dict[str, list[str] | None]
) -> list[str]:
    """Pair a dependency with the same environment when the parent has environments."""
    parents = []
    for dep in depends_on:
        if "@" in dep:
            parents.append(dep)
            continue
        parent_envs = env_lists.get(dep)
        if not parent_envs:
            parents.append(dep)
        elif environment in parent_envs:
            parents.append(instance_key(dep, environment))
        elif environment is None:
            parents.extend(instance_key(dep, e) for e in parent_envs)
        # a parent with environments but not this one: nothing to pair with, no hold
    return parents


def _with_environment(check: BaseModel, values: dict[str, str]) -> BaseModel:
    from watchkeeper.engine.observe.redaction import REDACTOR

    data = check.model_dump(by_alias=True, exclude_unset=True)
    model = type(check).model_validate(_substitute(data, values))
    REDACTOR.add_from(model)  # a secret field may have read its value from the environment
    return model


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return (
            ENV_REF.sub(lambda m: values.get(m.group(1), m.group(0)), value)
            if "${" in value
            else value
        )
    if isinstance(value, SecretStr):
        return SecretStr(_substitute(value.get_secret_value(), values))
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def _fingerprint(instance: Instance) -> str:
    """Return a digest of everything that defines how an instance runs and is judged."""
    payload = "|".join(
        [
            instance.options.model_dump_json(by_alias=True),
            # as JSON: a pydantic repr costs five times as much, 10,000 times at start-up
            instance.schedule.model_dump_json() if instance.schedule is not None else "None",
            instance.timezone,
            str(instance.timeout),
            instance.severity,
            str(instance.failure_threshold),
            str(instance.success_threshold),
            str(instance.min_samples),
            str(instance.flap_threshold),
            str(instance.flap_window),
            repr(sorted(instance.labels.items())),
            ",".join(instance.depends_on),
            instance.location or "",
        ]
    )
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()
