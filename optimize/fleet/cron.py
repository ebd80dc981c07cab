"""Cron schedules as a Kubernetes CronJob accepts them (the API server parses `spec.schedule`
with robfig/cron's standard parser), checked here so a bad one is a one-line error when the
manifests are written rather than a rejected apply on the cluster."""

from __future__ import annotations

import re

from optimize.errors import UsageError

VALID = (
    "valid: five fields 'minute hour day-of-month month day-of-week' (e.g. '0 3 * * *': 03:00 "
    "every day) or @yearly, @monthly, @weekly, @daily, @hourly, @every DURATION (e.g. @every 12h)"
)
DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names of the values from `lowest` on) of the five fields, in order
FIELDS = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day-of-month", 1, 31, []),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 6, WEEKDAYS),
)
GO_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+")
RANGE = re.compile(r"(?P<start>\*|\?|[A-Za-z0-9]+)(?:-(?P<end>[A-Za-z0-9]+))?(?:/(?P<step>[0-9]+))?")


def check_schedule(schedule: str, option: str = "--schedule") -> str:
    """`schedule` as given, when Kubernetes will accept it; a UsageError naming the field that is
    wrong otherwise. A time zone belongs in the CronJob's `timeZone`, never in the schedule."""
    text = schedule.strip()

    def refuse(problem: str) -> UsageError:
        return UsageError(f"{option} '{schedule}': {problem}; {VALID}")

    if "TZ" in text:
        raise refuse("a time zone goes in --time-zone, not in the schedule")
    if text.startswith("@every "):
        if not GO_DURATION.fullmatch(text.removeprefix("@every ").strip()):
            raise refuse("@every takes a duration such as 30m, 12h or 1h30m")
        return text
    if text.startswith("@"):
        if text.lower() not in DESCRIPTORS:
            raise refuse(f"{text} is not a descriptor")
        return text
    fields = text.split()
    if len(fields) != len(FIELDS):
        raise refuse(f"{len(fields)} field{'s' * (len(fields) != 1)}, not {len(FIELDS)}")
    for value, field in zip(fields, FIELDS, strict=True):
        problem = _field_problem(value, *field)
        if problem:
            raise refuse(problem)
    return text


def _field_problem(value: str, name: str, lowest: int, highest: int, names: list[str]) -> str | None:
    """What is wrong with one field (a comma-separated list of *, N, N-M, each with an optional
    /STEP; months and weekdays also by their three-letter names), or None."""
    for part in value.split(","):
        match = RANGE.fullmatch(part)
        if match is None:
            return f"{name} '{part}' is not *, N, N-M or one of those with /STEP"
        if match["step"] is not None and int(match["step"]) == 0:
            return f"{name} '{part}' has a step of 0"
        if match["start"] in ("*", "?"):
            if match["end"] is not None:
                return f"{name} '{part}' is not *, N, N-M or one of those with /STEP"
            continue
        bounds = []
        for token in (match["start"], match["end"]):
            if token is None:
                continue
            number = _number(token, lowest, names)
            if number is None or not lowest <= number <= highest:
                allowed = f"{lowest}-{highest}" + (f" or {names[0]}-{names[-1]}" if names else "")
                return f"{name} '{token}' is out of range {allowed}"
            bounds.append(number)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            return f"{name} '{part}' starts after it ends"
    return None


def _number(token: str, lowest: int, names: list[str]) -> int | None:
    if token.isdigit():
        return int(token)
    if token.lower() in names:
        return lowest + names.index(token.lower())
    return None
