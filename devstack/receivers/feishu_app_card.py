"""The Feishu app simulator's check of an interactive card in card JSON 2.0, as the open
platform describes it (open.feishu.cn/document/uAjLw4CM/ukzMukzMukzM/feishu-cards/
card-json-v2-structure, card-json-v2-breaking-changes-release-notes, card-json-v2-components
button and select_static; the send and patch pages' 230099 sub-codes, mirrored in
riba2534/feishu-open-docs `im-v1/message/create.md`, `im-v1/message-card/patch.md`). Pure: the
`content` string in, a `Checked` card or `Invalid(code, msg)` out.

What refuses (JSON 2.0 "传入不支持的属性将报错"):
- `content` over 30 KB: 230025; not JSON, not an object: 230099 ErrCode 200621.
- `schema` other than "2.0" (the simulator models 2.0 only), a property the structure does not
  have (root, `config`, `header`, `body`, and the checked elements), `update_multi: false`
  (2.0 cards are shared only): 230099 ErrCode 200621 ("parse card json err").
- A 1.0-only tag (`action`, `note`): 230099 ErrCode 200861 ("cards of schema V2 no longer
  support this capability"); an unknown tag: 200621.
- More than 200 elements: 230099 ErrCode 11310 ("element exceeds the limit").
- `element_id` not a letter then up to 19 letters, digits or `_`, or repeated in the card;
  a button `type` or select option the component does not have; a callback behaviour whose
  `value` is not an object: 200621. Feishu itself accepts a string `value`; the simulator
  refuses it on purpose (lark-oapi answers a string value with HTTP 500, which Feishu's client
  shows as 200671, docs/design/chat-app-actions.md "Pitfalls").
Warnings (shown, not refused): an unknown header `template` colour, a select's
`initial_option` that is no option, a callback element without `element_id` (it cannot be
pressed through `/admin/feishu-app/click`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MOST_CONTENT_BYTES = 30 * 1024  # "卡片消息、富文本消息请求体最大不能超过 30 KB"
MOST_ELEMENTS = 200  # 11310 "element exceeds the limit" (JSON 2.0: 200 components)
ELEMENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,19}")
ROOT_KEYS = frozenset({"schema", "config", "card_link", "header", "body"})
CONFIG_KEYS = frozenset(
    {"streaming_mode", "streaming_config", "summary", "locales", "enable_forward"}
    | {"update_multi", "width_mode", "use_custom_translation", "enable_forward_interaction"}
    | {"style"}
)
HEADER_KEYS = frozenset(
    {"title", "subtitle", "template", "icon", "ud_icon", "text_tag_list", "padding"}
    | {"i18n_text_tag_list", "i18n_title", "i18n_subtitle"}
)
BODY_KEYS = frozenset(
    {"direction", "padding", "horizontal_spacing", "horizontal_align", "vertical_spacing"}
    | {"vertical_align", "elements"}
)
COLOURS = frozenset(
    {"blue", "wathet", "turquoise", "green", "yellow", "orange", "red", "carmine", "violet"}
    | {"purple", "indigo", "grey", "default"}
)
COMMON = frozenset({"tag", "element_id", "margin"})
KEYS = {
    "markdown": COMMON | {"content", "text_align", "text_size", "icon", "i18n_content", "href"},
    "button": COMMON
    | {"type", "size", "width", "text", "icon", "hover_tips", "disabled", "disabled_tips"}
    | {"confirm", "behaviors", "form_action_type", "name"},
    "select_static": COMMON
    | {"type", "name", "required", "disabled", "placeholder", "initial_option"}
    | {"initial_index", "width", "options", "behaviors", "confirm"},
    "column_set": COMMON
    | {"flex_mode", "horizontal_spacing", "horizontal_align", "background_style", "columns"}
    | {"behaviors"},
    "column": COMMON
    | {"background_style", "width", "weight", "vertical_align", "vertical_spacing"}
    | {"horizontal_spacing", "horizontal_align", "direction", "padding", "elements"}
    | {"behaviors"},
}
BUTTON_TYPES = frozenset(
    {"default", "primary", "danger", "text", "primary_text", "danger_text", "primary_filled"}
    | {"danger_filled", "laser"}
)
CONTAINERS = frozenset({"form", "collapsible_panel", "interactive_container"})
OPAQUE = frozenset(
    {"div", "hr", "img", "img_combination", "chart", "table", "person", "person_list"}
    | {"avatar", "audio", "input", "checker", "overflow", "multi_select_static"}
    | {"select_person", "multi_select_person", "date_picker", "picker_time", "picker_datetime"}
    | {"select_img"}
)
V1_ONLY = frozenset({"action", "note"})


class Invalid(Exception):
    """A request Feishu refuses: its `code`, `msg` and HTTP status."""

    def __init__(
        self, code: int, message: str, status: int = 400, field: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.status = status
        self.field = field  # 99992402's `field_violations` item


def card_error(sub: int, path: str, message: str, value: Any = "") -> Invalid:
    """230099 with the sub-code in `msg`, as the send page's examples show it."""
    return Invalid(
        230099,
        f"Failed to create card content, ext=ErrCode: {sub}; ErrPath: {path}; "
        f"ErrMsg: {message}; ErrorValue: {value}; ",
    )


@dataclass(frozen=True)
class Target:
    """An element one can press: a button or select with a callback behaviour."""

    element_id: str
    tag: str
    value: dict[str, Any]
    options: tuple[str, ...]  # a select's option values
    disabled: bool


@dataclass
class Checked:
    card: dict[str, Any]
    title: str
    update_multi: bool  # `config.update_multi` given as true (PATCH needs it said)
    targets: dict[str, Target] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_card(content: str) -> Checked:
    """The card in `content` (a JSON string) if Feishu accepts it, else `Invalid`."""
    size = len(content.encode())
    if size > MOST_CONTENT_BYTES:
        raise Invalid(230025, f"The length of the message content reaches its limit: {size} B")
    try:
        card = json.loads(content)
    except json.JSONDecodeError as exc:
        raise card_error(200621, "ROOT", "parse card json err", exc) from None
    if not isinstance(card, dict):
        raise card_error(200621, "ROOT", "parse card json err", "not a JSON object")
    return check_card(card)


def check_card(card: dict[str, Any]) -> Checked:
    if card.get("schema") != "2.0":
        raise card_error(200621, "ROOT -> schema", "the simulator models JSON 2.0 only")
    _keys(card, ROOT_KEYS, "ROOT")
    update_multi = _config(card.get("config"))
    walk = _Walk()
    title = _header(card.get("header"), walk.warnings)
    body = card.get("body")
    if not isinstance(body, dict):
        raise card_error(200621, "ROOT -> body", "body must be an object")
    _keys(body, BODY_KEYS, "ROOT -> body")
    walk.elements(body.get("elements", []), "ROOT -> body -> elements")
    return Checked(card, title, update_multi, walk.targets, walk.warnings)


def _keys(found: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(set(found) - allowed)
    if unknown:
        raise card_error(200621, path, "unsupported property in schema 2.0", unknown)


def _config(config: Any) -> bool:
    if config is None:
        return False
    if not isinstance(config, dict):
        raise card_error(200621, "ROOT -> config", "config must be an object")
    _keys(config, CONFIG_KEYS, "ROOT -> config")
    value = config.get("update_multi")
    if value is not None and value is not True:
        raise card_error(200621, "ROOT -> config -> update_multi", "2.0 cards are shared", value)
    return value is True


def _text(value: Any, path: str, required: bool = True) -> str:
    """A text object `{"tag": "plain_text"|"lark_md", "content"}`: its content."""
    if value is None and not required:
        return ""
    if not isinstance(value, dict) or value.get("tag") not in ("plain_text", "lark_md"):
        raise card_error(200621, path, "a text object {tag: plain_text|lark_md, content}")
    content = value.get("content")
    if not isinstance(content, str):
        raise card_error(200621, f"{path} -> content", "content must be a string", content)
    return content


def _header(header: Any, warnings: list[str]) -> str:
    if header is None:
        return ""
    if not isinstance(header, dict):
        raise card_error(200621, "ROOT -> header", "header must be an object")
    _keys(header, HEADER_KEYS, "ROOT -> header")
    title = _text(header.get("title"), "ROOT -> header -> title")
    _text(header.get("subtitle"), "ROOT -> header -> subtitle", required=False)
    colour = header.get("template")
    if colour is not None and colour not in COLOURS:
        warnings.append(f"header.template {colour!r} is no Feishu colour: shown as default")
    return title


class _Walk:
    """One pass over the elements: counts them, checks ids, finds what can be pressed."""

    def __init__(self) -> None:
        self.count = 0
        self.ids: set[str] = set()
        self.targets: dict[str, Target] = {}
        self.warnings: list[str] = []

    def elements(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise card_error(200621, path, "elements must be a list")
        for i, element in enumerate(value):
            self.element(element, f"{path} -> [{i}]")

    def element(self, element: Any, path: str) -> None:
        if not isinstance(element, dict) or not isinstance(element.get("tag"), str):
            raise card_error(200621, path, "an element is an object with a tag")
        tag = element["tag"]
        path = f"{path}(tag: {tag})"
        self.count += 1
        if self.count > MOST_ELEMENTS:
            raise card_error(11310, path, "element exceeds the limit", MOST_ELEMENTS)
        if tag in V1_ONLY:
            raise card_error(
                200861, path, "cards of schema V2 no longer support this capability", tag
            )
        if tag in KEYS:
            _keys(element, KEYS[tag], path)
        elif tag not in CONTAINERS | OPAQUE:
            raise card_error(200621, path, "unknown tag", tag)
        self.element_id(element, path)
        self.inside(tag, element, path)

    def element_id(self, element: dict[str, Any], path: str) -> None:
        value = element.get("element_id")
        if value is None:
            return
        if not isinstance(value, str) or not ELEMENT_ID.fullmatch(value):
            raise card_error(200621, path, "element_id: a letter, then [A-Za-z0-9_], ≤20", value)
        if value in self.ids:
            raise card_error(200621, path, "element_id repeats in the card", value)
        self.ids.add(value)

    def inside(self, tag: str, element: dict[str, Any], path: str) -> None:
        if tag == "markdown" and not isinstance(element.get("content"), str):
            raise card_error(200621, f"{path} -> content", "markdown content must be a string")
        if tag == "column_set":
            self.columns(element.get("columns", []), f"{path} -> columns")
        if tag in CONTAINERS and "elements" in element:
            self.elements(element["elements"], f"{path} -> elements")
        if tag == "button":
            self.button(element, path)
        if tag == "select_static":
            self.select(element, path)

    def columns(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise card_error(200621, path, "columns must be a list")
        for i, column in enumerate(value):
            where = f"{path} -> [{i}](tag: column)"
            if not isinstance(column, dict) or column.get("tag") != "column":
                raise card_error(200621, where, "a column is {tag: column, elements}")
            _keys(column, KEYS["column"], where)
            self.element_id(column, where)
            self.elements(column.get("elements", []), f"{where} -> elements")

    def button(self, button: dict[str, Any], path: str) -> None:
        _text(button.get("text"), f"{path} -> text", required=False)
        kind = button.get("type", "default")
        if kind not in BUTTON_TYPES:
            raise card_error(200621, f"{path} -> type", "no such button type", kind)
        if button.get("size", "medium") not in ("tiny", "small", "medium", "large"):
            raise card_error(200621, f"{path} -> size", "no such size", button.get("size"))
        self.target(button, path, ())

    def select(self, select: dict[str, Any], path: str) -> None:
        _text(select.get("placeholder"), f"{path} -> placeholder", required=False)
        options = select.get("options")
        if not isinstance(options, list) or not options:
            raise card_error(200621, f"{path} -> options", "a select needs options")
        values: list[str] = []
        for i, option in enumerate(options):
            where = f"{path} -> options -> [{i}]"
            if not isinstance(option, dict) or not isinstance(option.get("value"), str):
                raise card_error(200621, where, "an option is {text, value: string}")
            _text(option.get("text"), f"{where} -> text")
            if option["value"] in values:
                raise card_error(200621, where, "option values repeat", option["value"])
            values.append(option["value"])
        initial = select.get("initial_option")
        if initial is not None and initial not in values:
            self.warnings.append(f"{path}: initial_option {initial!r} is no option")
        self.target(select, path, tuple(values))

    def target(self, element: dict[str, Any], path: str, options: tuple[str, ...]) -> None:
        value = _behaviors(element.get("behaviors"), f"{path} -> behaviors")
        if value is None:
            return
        element_id = element.get("element_id")
        if element_id is None:
            self.warnings.append(f"{path}: a callback without element_id cannot be pressed here")
            return
        disabled = element.get("disabled", False) is True
        self.targets[element_id] = Target(element_id, element["tag"], value, options, disabled)


def _behaviors(value: Any, path: str) -> dict[str, Any] | None:
    """The callback `value` among the behaviours, if one is a callback."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise card_error(200621, path, "behaviors must be a list")
    found: dict[str, Any] | None = None
    for i, behaviour in enumerate(value):
        where = f"{path} -> [{i}]"
        if not isinstance(behaviour, dict):
            raise card_error(200621, where, "a behaviour is an object")
        kind = behaviour.get("type")
        if kind == "callback":
            callback = behaviour.get("value")
            if not isinstance(callback, dict):
                raise card_error(200621, f"{where} -> value", "value must be an object", callback)
            found = callback
        elif kind == "open_url":
            urls = [behaviour.get(k) for k in ("default_url", "pc_url", "ios_url", "android_url")]
            if not any(isinstance(u, str) and u for u in urls):
                raise card_error(200621, where, "open_url needs default_url")
        elif kind != "form_action":
            raise card_error(200621, where, "behaviour type: callback, open_url, form_action", kind)
    return found
