"""The WeCom app simulator's checks of a `message/send` body (developer.work.weixin.qq.com
/document/path/90236) and an `update_template_card` body (/94888), and WeCom's error answer.
Pure: a body in, a `Send`/`Update` or `Invalid(errcode, errmsg)` out.

Recipients as WeCom treats them: a malformed userid/party/tag id is returned in
`invaliduser`/`invalidparty`/`invalidtag` and the rest still get the card; none given is 82001
("指定的成员/部门/标签全部为空": "至少有一个参数非空", /90313), none valid 81013. More than
1000 users is 40058 (a list over its limit), more than 100 parties 82002, tags 82003.
`agentid` missing 41011, not this app's or not an integer 40056 ("agentid 为整型数字").
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from devstack.receivers.wecom_app_card import Invalid, array, check_card, integer, obj, text

USERID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # /90313 40003: 1~64 letters, digits, - _ .
NUMERIC = re.compile(r"[0-9]{1,20}")
MOST_USERS, MOST_PARTIES, MOST_TAGS = 1000, 100, 100
DUPLICATE_SECONDS, MOST_DUPLICATE_SECONDS = 1800, 4 * 3600  # "默认1800s，最大不超过4小时"
MOST_CONTENT_BYTES = 2048  # text and markdown: "最长不超过2048个字节"


def errmsg(code: int, message: str) -> str:
    """WeCom's errmsg shape (a product must branch on errcode only, /90313)."""
    hint = f"{int(time.time())}_{secrets.token_hex(8)}"
    return (
        f"{message}, hint: [{hint}], from ip: 127.0.0.1, more info at "
        f"https://open.work.weixin.qq.com/devtool/query?e={code}"
    )


@dataclass(frozen=True)
class Recipients:
    users: list[str] = field(default_factory=list)  # ["@all"]: everyone the app reaches
    parties: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    invalid: dict[str, list[str]] = field(default_factory=dict)  # invaliduser/party/tag

    def as_json(self) -> dict[str, list[str]]:
        return {"touser": self.users, "toparty": self.parties, "totag": self.tags}

    def answer(self, as_list: bool = False) -> dict[str, Any]:
        """`invaliduser` always ("" or "a|b"; update: a list), invalidparty/tag when any."""
        found: dict[str, Any] = {"invaliduser": self.invalid.get("invaliduser", [])}
        found |= {k: v for k, v in self.invalid.items() if v and k != "invaliduser"}
        return found if as_list else {k: "|".join(v) for k, v in found.items()}


@dataclass(frozen=True)
class Send:
    recipients: Recipients
    card: dict[str, Any] | None  # None: text or markdown
    title: str
    duplicate_seconds: int | None  # None: no duplicate check asked for
    digest: str  # the request's canonical JSON: "the same message" for the duplicate check
    body: dict[str, Any]
    warnings: list[str]


@dataclass(frozen=True)
class Update:
    response_code: str
    everyone: bool  # atall: 1
    recipients: Recipients
    replace_name: str | None  # button.replace_name, or
    card: dict[str, Any] | None  # a whole new template_card
    warnings: list[str]


def parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid(40058, "invalid Request Parameter: the body is not JSON") from None
    return obj(body, "the body", 40058)


def check_agent(body: dict[str, Any], agent_id: int) -> None:
    value = body.get("agentid")
    if value is None:
        raise Invalid(41011, "missing agentid")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(40056, f"invalid agentid {value!r}: an integer")
    if value != agent_id:
        raise Invalid(40056, f"invalid agentid {value}: this app's is {agent_id}")


def _split(body: dict[str, Any], key: str, most: int, code: int) -> list[str]:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(40058, f"{key} must be a '|'-joined string (Warning: wrong json format.)")
    found = [v for v in (value or "").split("|") if v]
    if len(found) > most:
        raise Invalid(code, f"{key} names {len(found)}, at most {most}")
    return found


def _sorted(users: list[str], parties: list[str], tags: list[str]) -> Recipients:
    """Split well-formed ids from those WeCom returns as invalid; 81013 if none is left."""
    invalid = {
        "invaliduser": [u for u in users if u != "@all" and not USERID.fullmatch(u)],
        "invalidparty": [p for p in parties if not NUMERIC.fullmatch(p)],
        "invalidtag": [t for t in tags if not NUMERIC.fullmatch(t)],
    }
    users = [u for u in users if u not in invalid["invaliduser"]]
    parties = [p for p in parties if p not in invalid["invalidparty"]]
    tags = [t for t in tags if t not in invalid["invalidtag"]]
    if not (users or parties or tags):
        raise Invalid(81013, "user & party & tag all invalid")
    if "@all" in users:  # "指定为"@all"，则向该企业应用的全部成员发送" (toparty/totag ignored)
        return Recipients(["@all"], [], [], invalid)
    return Recipients(users, parties, tags, invalid)


def _message(body: dict[str, Any], warnings: list[str]) -> tuple[dict[str, Any] | None, str]:
    """The card (None for text and markdown) and the message's title."""
    kind = body.get("msgtype")
    if kind == "template_card":
        card = check_card(body.get("template_card"), warnings)
        return card, card["main_title"]["title"]
    if kind not in ("text", "markdown"):
        raise Invalid(
            40008, f"invalid message type {kind!r} (simulated: template_card, text, markdown)"
        )
    content = text(obj(body.get(kind), kind, 44004), "content", kind, 44004, required=True)
    size = len(str(content).encode())
    if size > MOST_CONTENT_BYTES and kind == "markdown":
        raise Invalid(45002, f"markdown.content has {size} bytes, at most {MOST_CONTENT_BYTES}")
    if size > MOST_CONTENT_BYTES:
        warnings.append(f"text.content has {size} bytes: WeCom cuts it at {MOST_CONTENT_BYTES}")
    return None, str(content).split("\n", 1)[0].lstrip("# ")


def check_send(raw: bytes, agent_id: int) -> Send:
    """A `message/send` body (template_card of type button_interaction, text or markdown), or
    `Invalid`."""
    body = parse(raw)
    users = _split(body, "touser", MOST_USERS, 40058)
    parties = _split(body, "toparty", MOST_PARTIES, 82002)
    tags = _split(body, "totag", MOST_TAGS, 82003)
    if not (users or parties or tags):
        raise Invalid(82001, "touser, toparty and totag are all empty")
    check_agent(body, agent_id)
    for flag in ("safe", "enable_id_trans", "enable_duplicate_check"):
        integer(body, flag, "message", 40058, range(2))
    allowed = range(1, MOST_DUPLICATE_SECONDS + 1)
    seconds = integer(
        body, "duplicate_check_interval", "message", 40058, allowed, DUPLICATE_SECONDS
    )
    warnings: list[str] = []
    card, title = _message(body, warnings)
    return Send(
        recipients=_sorted(users, parties, tags),
        card=card,
        title=title,
        duplicate_seconds=seconds if body.get("enable_duplicate_check") == 1 else None,
        digest=json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
        body=body,
        warnings=warnings,
    )


def _ids(body: dict[str, Any], key: str, kind: type, most: int) -> list[str]:
    values = array(body, key, "update", 40058, most=most)
    if any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        raise Invalid(40058, f"{key} must list {kind.__name__}s (Warning: wrong json format.)")
    return [str(v) for v in values]


def check_update(raw: bytes, agent_id: int) -> Update:
    """An `update_template_card` body: targets, `response_code` and either `button`
    (`replace_name`) or `template_card`, or `Invalid`."""
    body = parse(raw)
    check_agent(body, agent_id)
    code = text(body, "response_code", "update", 40058, required=True)
    everyone = integer(body, "atall", "update", 40058, range(2)) == 1
    users = _ids(body, "userids", str, MOST_USERS)
    parties, tags = _ids(body, "partyids", int, MOST_PARTIES), _ids(body, "tagids", int, MOST_TAGS)
    integer(body, "enable_id_trans", "update", 40058, range(2))
    if not (everyone or users or parties or tags):
        raise Invalid(82001, "userids, partyids and tagids are all empty and atall is not 1")
    if ("button" in body) == ("template_card" in body):
        raise Invalid(40058, "give either button or template_card")
    warnings: list[str] = []
    name, card = None, None
    if "button" in body:
        button = obj(body["button"], "button", 40058)
        name = text(button, "replace_name", "button", 40058, required=True)
    else:
        card = check_card(body["template_card"], warnings)
    targets = Recipients(users, parties, tags) if everyone else _sorted(users, parties, tags)
    return Update(str(code), everyone, targets, name, card, warnings)
