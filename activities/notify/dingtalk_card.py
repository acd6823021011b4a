"""The DingTalk app's incident card: an interactive card of riskflow's template
(`deploy/dingtalk/incident-card.md` says how to make it in DingTalk's card builder),
delivered by `activities.notify.dingtalk_app` to each group and person of the channel, and
updated when somebody acts on it.

DingTalk draws a card from a template made once in its card builder; riskflow fills the
template's variables (`cardParamMap`: strings only) and the template decides what they look
like. The variables: `title`, `lead`, `summary`, `fields` (one "label: value" a line),
`status` (who acted: "认领: 王工 14:03, 预计 5 分钟到场"; empty at first), `state` (`open`:
Claim, On my way with its arrival-time choice, False alarm, Resolved; `claimed`: False alarm
and Resolved; `closed`: no buttons; `reasons`: the four reasons of a false alarm),
`incident_id`, `console_url`, and the buttons' labels in the site's language
(`label_claim`, ...: a template serves every language). Each button's callback carries its
action id (`claim`, `on_my_way`, `false_alarm`, `resolve`, `false_alarm.<reason>`) and the
params `incident` (= `incident_id`) and, for On my way, `eta` (the minutes picked). The card's
data is public (everyone in the group sees it); one person's `privateData` overrides it for
them alone: how a refusal, or the choice of reasons, reaches only the presser.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

from activities.notify.cards import LABELS, lasting_fields, plain
from activities.notify.markup import ELLIPSIS
from activities.notify.texts import Message, clip
from riskflow.config.channels import DingTalkAppChannel
from riskflow.config.sites import Language
from riskflow.contracts.card_actions import ETA_MINUTES, REASONS

CardState = Literal["open", "claimed", "closed", "reasons"]
TITLE, LEAD, SUMMARY, FIELD, STATUS = 100, 200, 1000, 200, 200
MAX_VALUE_BYTES = 1000  # "cardParamMap ... value 最长不超过1KB" (create-and-deliver-cards)
STATES: tuple[CardState, ...] = ("open", "claimed", "closed", "reasons")


def out_track_id(idempotency_key: str, incident_id: str, secret: str) -> str:
    """The card's `outTrackId`: one per message, the same for every attempt, and
    sealed for its incident with the route's apiSecret (`ours`): DingTalk signs only the
    time of a click, so the card and incident its body names are checked by this seal."""
    base = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return f"rf-{base}-{_seal(base, incident_id, secret)}"


def seal_key(callback: tuple[str, ...] | None, app_secret: str | None) -> str:
    """The key of the cards' seal: the route's apiSecret in HTTP mode (`callback` as
    `ChannelSecrets.callback` gives it), else (Stream mode) the app's own secret."""
    return callback[0] if callback else app_secret or ""


def ours(track: str, incident_id: str, secret: str) -> bool:
    """Whether `track` is a card riskflow sent for `incident_id` (`out_track_id`)."""
    prefix, _, rest = track.partition("-")
    base, _, seal = rest.partition("-")
    return prefix == "rf" and hmac.compare_digest(seal, _seal(base, incident_id, secret))


def _seal(base: str, incident_id: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"{base}\n{incident_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:24]


def spaces(channel: DingTalkAppChannel) -> list[str]:
    """Each group and person the channel delivers to (`IM_GROUP.<cid>`, `IM_ROBOT.<userid>`)."""
    groups = [f"IM_GROUP.{cid}" for cid in channel.open_conversation_ids]
    return groups + [f"IM_ROBOT.{user}" for user in channel.to_users]


def labels(language: Language) -> dict[str, str]:
    t = LABELS[language]
    found = {f"label_{a}": t[a] for a in ("claim", "on_my_way", "false_alarm", "resolve")}
    found |= {f"label_reason_{r}": t[f"reason:{r}"] for r in REASONS}
    found |= {"label_eta": t["eta"], "label_why": t["why"]}
    found |= {f"label_eta_{n}": t["minutes"].format(n=n) for n in ETA_MINUTES}
    return found


def params(
    message: Message, incident_id: str, language: Language, console_url: str
) -> dict[str, str]:
    """The template's variables for an incident message (all strings)."""
    fields = lasting_fields(message, language)
    lines = [f"{label}: {clip(plain(value), FIELD)}" for label, value in fields]
    found = {
        "title": clip(message.title(plain), TITLE),
        "lead": clip(message.lead, LEAD),
        "summary": clip(plain(message.summary), SUMMARY),
        "fields": "\n".join(lines),
        "status": "",
        "state": "closed" if message.closing else "open",
        "incident_id": incident_id,
        "console_url": console_url,
        **labels(language),
    }
    return {k: within_bytes(v) for k, v in found.items()}


def plainer(card_params: dict[str, str], language: Language) -> dict[str, str]:
    """The variables without the detector's and the model's words (camera labels, summary,
    fields): what is sent when DingTalk's content review refuses them. The title says only
    that an incident needs an answer; the console link and the buttons stay."""
    title = {"en": "riskflow: an incident needs an answer", "zh-CN": "riskflow: 有事件待处理"}
    return card_params | {"title": title[language], "lead": "", "summary": "", "fields": ""}


def within_bytes(text: str, limit: int = MAX_VALUE_BYTES) -> str:
    """`text` cut to `limit` UTF-8 bytes (DingTalk's limit on a variable's value), ending
    with … when cut, never inside a character."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[: limit - len(ELLIPSIS.encode())].decode(errors="ignore")
    return cut + ELLIPSIS


def delivery(
    channel: DingTalkAppChannel, track_id: str, card_params: dict[str, str]
) -> dict[str, Any]:
    """The `createAndDeliver` body of one card delivered to every space of the channel
    (`openSpaceId` lists them, `;`-separated): one card instance, so one update changes
    every copy. Not forwardable: a copy in another chat would carry live buttons."""
    body: dict[str, Any] = {
        "cardTemplateId": channel.card_template_id,
        "outTrackId": track_id,
        "callbackType": channel.callback_mode.upper(),  # HTTP | STREAM
        "cardData": {"cardParamMap": card_params},
        "openSpaceId": "dtv1.card//" + ";".join(spaces(channel)),
        "userIdType": 1,  # userid, not unionid
    }
    if channel.callback_route_key is not None:
        body["callbackRouteKey"] = channel.callback_route_key
    if channel.open_conversation_ids:
        body["imGroupOpenSpaceModel"] = {"supportForward": False}
        body["imGroupOpenDeliverModel"] = {"robotCode": channel.app_key}
    if channel.to_users:
        body["imRobotOpenSpaceModel"] = {"supportForward": False}
        body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": channel.app_key}
    return body


def update(
    track_id: str,
    public: dict[str, str] | None = None,
    private: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The `PUT /v1.0/card/instances` body: `public` variables for everyone, `private` ones
    per userid, each merged into what the card has (never replacing it)."""
    body: dict[str, Any] = {
        "outTrackId": track_id,
        "cardUpdateOptions": {"updateCardDataByKey": True, "updatePrivateDataByKey": True},
    }
    if public:
        body["cardData"] = {"cardParamMap": public}
    if private:
        body["privateData"] = {user: {"cardParamMap": p} for user, p in private.items()}
    return body


def status(line: str) -> str:
    return within_bytes(clip(line, STATUS))
