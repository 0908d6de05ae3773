"""What makes an alert rule unusable, field by field, in words that say what to change:
AlertRule.clean, and so the admin's form and the API's serializer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.values import RATES
from metrics.models import Series
from metrics.selection import HOST_TOTAL, SelectionError, check_entry
from usage.models import InterfacePlan

if TYPE_CHECKING:
    from alerts.models import AlertRule


def rule_errors(rule: AlertRule) -> dict[str, str]:
    """The rule's errors by field (empty: none). A field that failed its own validation is
    None here, and is not judged again."""
    errors = {**_levels(rule), **_metric(rule), **_emails(rule)}
    interface = _interface(rule.interface)
    if interface:
        errors["interface"] = interface
    elif rule.metric == rule.QUOTA and not _has_quota(rule):
        errors["metric"] = (
            "no interface this rule matches has a quota: set one on its plan (Usage, "
            "Interface plans) first"
        )
    return errors


def _levels(rule: AlertRule) -> dict[str, str]:
    errors = {}
    for field, value in (("level", rule.level), ("clear_level", rule.clear_level)):
        if value is not None and not math.isfinite(value):
            errors[field] = "must be a finite number"
        elif value is not None and value < 0:
            errors[field] = f"may not be negative: every metric is 0 or more ({value:g})"
    if errors or rule.level is None or rule.clear_level is None:
        return errors
    if rule.condition == rule.ABOVE and rule.clear_level > rule.level:
        errors["clear_level"] = (
            "must be at most level for a rule on 'above': the alert closes once the value is "
            f"back below it ({rule.clear_level:g} > {rule.level:g})"
        )
    elif rule.condition == rule.BELOW and rule.clear_level < rule.level:
        errors["clear_level"] = (
            "must be at least level for a rule on 'below': the alert closes once the value is "
            f"back above it ({rule.clear_level:g} < {rule.level:g})"
        )
    return errors


def _metric(rule: AlertRule) -> dict[str, str]:
    errors = {}
    if rule.baseline and rule.metric not in RATES:
        errors["baseline"] = (
            f"only a rate has a baseline (the median of its hourly averages): not {rule.metric}"
        )
    if rule.metric == rule.STALE and rule.condition != rule.ABOVE:
        errors["condition"] = (
            "a stale rule fires when the last sample is older than level seconds: its condition "
            "is 'above'"
        )
    return errors


def _emails(rule: AlertRule) -> dict[str, str]:
    for address in filter(None, (a.strip() for a in (rule.emails or "").split(","))):
        try:
            validate_email(address)
        except ValidationError:
            return {"emails": f"'{address}' is not an e-mail address"}
    return {}


def _interface(interface: str) -> str | None:
    """Why a rule's interface is no name, pattern, '' or 'all', if it is not."""
    if interface in ("", HOST_TOTAL):
        return None
    try:
        check_entry(interface)
    except SelectionError as exc:
        return str(exc)
    return None


def _has_quota(rule: AlertRule) -> bool:
    """Whether the rule matches an interface whose plan has a quota."""
    plans = InterfacePlan.objects.filter(quota_bytes__isnull=False)
    if rule.host_id is not None:
        plans = plans.filter(host_id=rule.host_id)
    pairs = plans.values_list("host_id", "interface")
    return any(rule.matches(Series(host, iface)) for host, iface in pairs)
