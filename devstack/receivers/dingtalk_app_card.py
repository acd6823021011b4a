"""The one card template riskflow ships for `dingtalk_app` channels, as the DingTalk app
simulator (`devstack.receivers.dingtalk_app`) holds it: the operator builds it in DingTalk's
card builder (卡片平台) from this spec and puts its id in the channel's `card_template_id`; the
simulator knows exactly that id (anything else: `param.templateNotExist`).

Variables (DingTalk's card data are `Map<String, String>`: "属性字段只支持 String 类型",
open.dingtalk.com/document/development/create-and-deliver-cards; a list is a JSON string,
/instructions-for-filling-in-api-card-data):

- `title` (required): the header, e.g. "Fall at Plant A".
- `lead`: one line under it (level, site, camera).
- `summary`: markdown, what the model saw.
- `fields`: markdown, one "**label**: value" per line.
- `status`: markdown, what has happened ("Claimed by Zhang 14:03").
- `state` (required): "open" | "claimed" | "closed" | "reasons"; which buttons show.
- `incident_id` (required): sent back with every click as `params.incident`.
- `console_url`: an http(s) link button to the incident in the console (no callback).
- `eta_options`: the "On my way" select's options, a JSON array of minute strings
  (default `["5","10","15","30"]`); the chosen one comes back as `params.eta`.
- the labels, in the site's language (one template serves every language): `label_claim`,
  `label_on_my_way`, `label_false_alarm`, `label_resolve`, `label_reason_detector`,
  `label_reason_drill`, `label_reason_work`, `label_reason_other`, `label_eta`, `label_why`,
  `label_eta_5`, `label_eta_10`, `label_eta_15`, `label_eta_30`.

Everybody sees the public data (`cardData`); one user sees their private data
(`privateData[userId]` / a click answer's `userPrivateData`) over it, key by key. The product
puts `{"state": "reasons"}` in the clicker's private data to show them the reasons.

Buttons (their `actionId`s, "回传请求" to the registered callback route), by the state the
user sees: open: `claim`, `on_my_way`, `false_alarm`, `resolve`; claimed: `false_alarm`,
`resolve`; closed: none; reasons: `false_alarm.detector`, `false_alarm.drill`,
`false_alarm.work`, `false_alarm.other`. Each click's `params` is `{"incident": incident_id}`,
`on_my_way`'s also `{"eta": <an eta option>}`.

Template problems that DingTalk would render silently (an unknown variable, a state outside
the four, a missing required variable) are accepted with warnings, as a real card would show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

STATES = ("open", "claimed", "closed", "reasons")
REASONS = ("false_alarm.detector", "false_alarm.drill", "false_alarm.work", "false_alarm.other")
ACTIONS: dict[str, tuple[str, ...]] = {
    "open": ("claim", "on_my_way", "false_alarm", "resolve"),
    "claimed": ("false_alarm", "resolve"),
    "closed": (),
    "reasons": REASONS,
}
DEFAULT_ETA = ("5", "10", "15", "30")
LABELS = frozenset(
    {f"label_{a}" for a in ("claim", "on_my_way", "false_alarm", "resolve", "eta", "why")}
    | {f"label_reason_{r.split('.')[1]}" for r in REASONS}
    | {f"label_eta_{n}" for n in DEFAULT_ETA}
)
VARIABLES = (
    frozenset({"title", "lead", "summary", "fields", "status", "state", "incident_id"})
    | {"console_url", "eta_options"}
    | LABELS
)
REQUIRED = ("title", "state", "incident_id")


class BadClick(ValueError):
    """A click's params the template cannot send."""


def view(public: Mapping[str, str], private: Mapping[str, str] | None) -> dict[str, str]:
    """What one user sees: their private data over the public data, key by key."""
    return {**public, **(private or {})}


def actions(seen: Mapping[str, str]) -> tuple[str, ...]:
    """The actionIds of the buttons a user who sees `seen` can press."""
    return ACTIONS.get(seen.get("state", ""), ())


def _eta_list(raw: str) -> tuple[str, ...] | None:
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    ok = isinstance(found, list) and found and all(isinstance(o, str) for o in found)
    return tuple(found) if ok else None


def eta_options(seen: Mapping[str, str]) -> tuple[str, ...]:
    """The select's options: `eta_options` if it is a JSON array of strings, else the
    default."""
    raw = seen.get("eta_options")
    return (_eta_list(raw) if raw is not None else None) or DEFAULT_ETA


def click_params(
    seen: Mapping[str, str], action_id: str, extra: Mapping[str, str]
) -> dict[str, str]:
    """The `params` a click on `action_id` sends: the incident, the ETA for `on_my_way` (the
    first option unless `extra` picks one), and whatever else `extra` adds."""
    params = {"incident": seen.get("incident_id", "")}
    if action_id == "on_my_way":
        options = eta_options(seen)
        eta = extra.get("eta", options[0])
        if eta not in options:
            raise BadClick(f"eta {eta!r} is not one of the select's options {list(options)}")
        params["eta"] = eta
    elif "eta" in extra:
        raise BadClick(f"{action_id!r} sends no eta (only on_my_way does)")
    return params | {k: v for k, v in extra.items() if k != "eta"}


def warnings(data: Mapping[str, str], *, whole: bool, where: str) -> list[str]:
    """What the template would render wrongly: unknown variables, a state outside the four,
    a bad `eta_options` or `console_url`; with `whole`, missing required variables."""
    found = [f"{where}.{k}: not a variable of the template" for k in data if k not in VARIABLES]
    if whole:
        found += [f"{where}.{k}: required by the template" for k in REQUIRED if k not in data]
    state = data.get("state")
    if state is not None and state not in STATES:
        found.append(f"{where}.state: {state!r} is not one of {list(STATES)}: no buttons")
    if "eta_options" in data and _eta_list(data["eta_options"]) is None:
        found.append(f"{where}.eta_options: not a JSON array of strings: the default shows")
    url = data.get("console_url")
    if url and not url.startswith(("http://", "https://")):
        found.append(f"{where}.console_url: not an http(s) URL")
    return found
