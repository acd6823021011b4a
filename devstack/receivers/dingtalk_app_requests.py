"""The DingTalk app simulator's checks of the card API's request bodies, with the codes of each
API's error table (open.dingtalk.com/document/development/create-and-deliver-cards,
/interactive-card-update-interface, /register-card-callback-address). Pure functions: the
raw body in, a typed request out, or `Refused(status, code, message)`.

Where the tables name no code, the simulator uses `param.invalid` ("存在非法参数", the
create-and-deliver table's catch-all): a `cardParamMap` value that is not a string (the docs:
"属性字段只支持 String 类型"), a key over 100 bytes or a value over 1 KB ("key：参数名（最长不超过
100B）", "value: 参数值（最长不超过1KB）"), a `callbackType` other than "STREAM"/"HTTP", a
`userIdType` other than 1/2, an HTTP callback without a `callbackRouteKey`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SPACE_PREFIX = "dtv1.card//"
SPACE_TYPES = ("IM_GROUP", "IM_ROBOT")  # the docs' IM_SINGLE and ONE_BOX are not simulated
MAX_KEY_BYTES = 100
MAX_VALUE_BYTES = 1024


class Refused(Exception):
    """A request DingTalk refuses: HTTP status, its `code`, and a message."""

    def __init__(self, code: str, message: str | None = None, status: int = 400) -> None:
        super().__init__(f"{status} {code} {message or code}")
        self.status = status
        self.code = code
        self.message = message or code


@dataclass(frozen=True)
class Space:
    """One place a card goes: `IM_GROUP` + openConversationId, `IM_ROBOT` + userId."""

    space_type: str
    space_id: str


@dataclass(frozen=True)
class Create:
    """A checked `createAndDeliver` body."""

    out_track_id: str
    template_id: str
    callback_type: str | None
    route_key: str | None
    public: dict[str, str]
    private: dict[str, dict[str, str]]
    spaces: tuple[Space, ...]
    recipients: tuple[str, ...] | None  # imGroupOpenDeliverModel.recipients
    warnings: tuple[str, ...]
    body: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """A checked `PUT /v1.0/card/instances` body (or a click's answer): None leaves alone."""

    out_track_id: str
    public: dict[str, str] | None
    private: dict[str, dict[str, str]] | None
    public_by_key: bool
    private_by_key: bool


@dataclass(frozen=True)
class Register:
    route_key: str
    url: str
    api_secret: str | None
    force: bool


def body_of(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request: `param.empty` if there is none."""
    if not raw.strip():
        raise Refused("param.empty")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise Refused("param.invalid", f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Refused("param.invalid", "the body is not a JSON object")
    return data


def _text(data: dict[str, Any], key: str, empty_code: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise Refused(empty_code, f"{key} is empty")
    if not isinstance(value, str):
        raise Refused("param.invalid", f"{key} must be a string")
    return value


def param_map(value: Any, where: str) -> dict[str, str]:
    """A `cardParamMap`: string keys and string values, within DingTalk's sizes."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused("param.invalid", f"{where} must be an object")
    for key, item in value.items():
        if not isinstance(item, str):
            kind = type(item).__name__
            raise Refused("param.invalid", f"{where}.{key}: {kind}, not a string (String only)")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise Refused("param.invalid", f"{where}: key {key[:20]!r}… over 100 bytes")
        if len(item.encode()) > MAX_VALUE_BYTES:
            raise Refused("param.invalid", f"{where}.{key}: value over 1 KB")
    return dict(value)


def card_data(value: Any, where: str) -> dict[str, str]:
    """`{"cardParamMap": {...}}` -> the map."""
    if not isinstance(value, dict):
        raise Refused("param.invalid", f"{where} must be an object")
    return param_map(value.get("cardParamMap"), f"{where}.cardParamMap")


def private_data(value: Any) -> dict[str, dict[str, str]]:
    """`{userId: {"cardParamMap": {...}}}` -> userId -> map."""
    if not isinstance(value, dict):
        raise Refused("param.invalid", "privateData must be an object")
    return {str(user): card_data(item, f"privateData.{user}") for user, item in value.items()}


def spaces_of(open_space_id: str) -> tuple[Space, ...]:
    """`dtv1.card//IM_GROUP.cid…;IM_ROBOT.user1` -> its spaces (types in either case, as
    the docs' own example writes `im_group.`)."""
    if not open_space_id.startswith(SPACE_PREFIX):
        raise Refused("param.openSpaceIdInvalid", f"openSpaceId must start {SPACE_PREFIX!r}")
    found: list[Space] = []
    for part in open_space_id[len(SPACE_PREFIX) :].split(";"):
        kind, dot, space_id = part.partition(".")
        if not dot or not space_id or kind.upper() not in SPACE_TYPES:
            raise Refused("param.openSpaceIdInvalid", f"{part!r}: not one of {SPACE_TYPES}.<id>")
        found.append(Space(kind.upper(), space_id))
    return tuple(found)


def _robot_code(model: Any, name: str, app_key: str) -> dict[str, Any]:
    if model is None:
        raise Refused("param.openDeliverModelEmpty", f"{name} is needed for this space")
    if not isinstance(model, dict) or not isinstance(model.get("robotCode"), str):
        raise Refused("param.openDeliverModelError", f"{name}.robotCode must be a string")
    if model["robotCode"] != app_key:
        raise Refused("param.openDeliverModelError", f"{name}.robotCode is not the app's key")
    return model


def deliver_models(
    data: dict[str, Any], spaces: tuple[Space, ...], app_key: str
) -> tuple[tuple[str, ...] | None, list[str]]:
    """The group's `recipients` (None: everyone) and warnings, or `Refused`."""
    kinds, recipients, found = {s.space_type for s in spaces}, None, []
    if "IM_GROUP" in kinds:
        group = _robot_code(data.get("imGroupOpenDeliverModel"), "imGroupOpenDeliverModel", app_key)
        given = group.get("recipients")
        if given is not None and not (
            isinstance(given, list) and all(isinstance(u, str) for u in given)
        ):
            raise Refused("param.openDeliverModelError", "recipients must be a list of userIds")
        recipients = tuple(given) if given is not None else None
    if "IM_ROBOT" in kinds:
        robot = _robot_code(data.get("imRobotOpenDeliverModel"), "imRobotOpenDeliverModel", app_key)
        if robot.get("spaceType") not in (None, "IM_ROBOT"):
            raise Refused("param.openDeliverModelError", "imRobotOpenDeliverModel.spaceType")
        if robot.get("spaceType") is None:
            found.append("imRobotOpenDeliverModel.spaceType: the docs ask for 'IM_ROBOT'")
    for name in ("imGroupOpenSpaceModel", "imRobotOpenSpaceModel"):
        model = data.get(name)
        if model is not None and not (
            isinstance(model, dict) and isinstance(model.get("supportForward"), bool)
        ):
            raise Refused("param.openSpaceModelInvalid", f"{name}.supportForward is required")
    return recipients, found


def _callback(data: dict[str, Any]) -> tuple[str | None, str | None]:
    kind, route = data.get("callbackType"), data.get("callbackRouteKey")
    if kind is not None and kind not in ("STREAM", "HTTP"):
        raise Refused("param.invalid", "callbackType: 'STREAM' or 'HTTP' (upper case)")
    if route is not None and not isinstance(route, str):
        raise Refused("param.invalid", "callbackRouteKey must be a string")
    if kind == "HTTP" and not route:
        raise Refused("param.invalid", "an HTTP callback needs its callbackRouteKey")
    return kind, route or None


def check_create(raw: bytes, app_key: str) -> Create:
    data = body_of(raw)
    template = _text(data, "cardTemplateId", "param.cardTemplateIdEmpty")
    track = _text(data, "outTrackId", "param.outTrackIdEmpty")
    spaces = spaces_of(_text(data, "openSpaceId", "param.openSpaceIdEmpty"))
    if data.get("cardData") is None:
        raise Refused("param.cardPublicDataEmpty")
    public = card_data(data["cardData"], "cardData")
    private = private_data(data["privateData"]) if data.get("privateData") is not None else {}
    kind, route = _callback(data)
    recipients, found = deliver_models(data, spaces, app_key)
    if data.get("userIdType", 1) not in (1, 2):
        raise Refused("param.invalid", "userIdType: 1 (userId) or 2 (unionId)")
    return Create(
        track, template, kind, route, public, private, spaces, recipients, tuple(found), data
    )


def _flag(options: Any, key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise Refused("param.invalid", f"cardUpdateOptions.{key} must be a boolean")
    return value


def _update(data: dict[str, Any], track: str, private: dict[str, dict[str, str]] | None) -> Update:
    public = card_data(data["cardData"], "cardData") if data.get("cardData") is not None else None
    options = data.get("cardUpdateOptions") or {}
    if not isinstance(options, dict):
        raise Refused("param.invalid", "cardUpdateOptions must be an object")
    by_key = (_flag(options, "updateCardDataByKey"), _flag(options, "updatePrivateDataByKey"))
    return Update(track, public, private, *by_key)


def check_update(raw: bytes) -> Update:
    data = body_of(raw)
    track = _text(data, "outTrackId", "param.outTrackIdEmpty")
    if data.get("cardData") is None and data.get("privateData") is None:
        raise Refused("param.cardDataAndPrivateDataBothEmpty")
    given = data.get("privateData")
    return _update(data, track, private_data(given) if given is not None else None)


def answer_of(data: dict[str, Any], track: str, userid: str) -> Update:
    """A click's answer `{cardData, userPrivateData, cardUpdateOptions}` (event-callback-card,
    "事件回调响应": `userPrivateData` is the clicker's, not keyed by userId) as an update."""
    given = data.get("userPrivateData")
    private = {userid: card_data(given, "userPrivateData")} if given is not None else None
    return _update(data, track, private)


def check_register(raw: bytes) -> Register:
    data = body_of(raw)
    route = _text(data, "callbackRouteKey", "param.callbackRouteKeyEmpty")
    url = _text(data, "callbackUrl", "param.callbackUrlEmpty")
    secret, force = data.get("apiSecret"), data.get("forceUpdate", False)
    if secret is not None and not isinstance(secret, str):
        raise Refused("param.invalid", "apiSecret must be a string")
    if not isinstance(force, bool):
        raise Refused("param.invalid", "forceUpdate must be a boolean")
    return Register(route, url, secret or None, force)
