"""The WeCom app simulator's check of a `template_card` of card_type `button_interaction`
(按钮交互型), as developer.work.weixin.qq.com/document/path/90236 (message/send) and /94888
(update_template_card) describe it, answering with the codes of the global error list
(/90313). Pure functions: the card in, `Invalid(errcode, errmsg)` out, or the card accepted
with the warnings a developer should see.

Hard limits refuse (required fields, types, list lengths, `task_id` and key/id byte lengths,
duplicate keys and ids); the docs' "建议不超过 N 个字" (advised lengths), an unknown `style` or
`selected_id` (which WeCom replaces by its default: "不填或错填默认…") and fields the card type
does not have are accepted with a warning, as WeCom would show the card anyway. A field of the
wrong JSON type is refused: WeCom parses it as missing ("Warning: wrong json format.", /90313).

Codes: 40058 invalid parameter (also a list longer than allowed: /90313 "参数字段若是数组类型，
若元素个数超出限制，也同样报错 40058"), 42014 task_id 不合法, 42027-42051 the `Template_Card.*`
codes of /90313, 42031 CardType (the simulator models `button_interaction` only).
"""

from __future__ import annotations

import re
from typing import Any

TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")
CARD_FIELDS = frozenset(
    {"card_type", "source", "action_menu", "task_id", "main_title", "quote_area"}
    | {"emphasis_content", "sub_title_text", "horizontal_content_list", "jump_list"}
    | {"card_action", "button_selection", "button_list"}
)
CARD = "template_card"


class Invalid(Exception):
    """A request WeCom refuses: its `errcode` and what is wrong."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def obj(value: Any, path: str, code: int) -> dict[str, Any]:
    if value is None:
        raise Invalid(code, f"{path} missing")
    if not isinstance(value, dict):
        raise Invalid(code, f"{path} must be an object (Warning: wrong json format.)")
    return value


def text(
    parent: dict[str, Any],
    key: str,
    path: str,
    code: int,
    *,
    required: bool = False,
    max_bytes: int | None = None,
) -> str | None:
    """`parent[key]`, a string (None: absent and not required)."""
    value = parent.get(key)
    if value is None or (required and value == ""):
        if required:
            raise Invalid(code, f"{path}.{key} missing or empty")
        return None
    if not isinstance(value, str):
        raise Invalid(code, f"{path}.{key} must be a string (Warning: wrong json format.)")
    if max_bytes is not None and len(value.encode()) > max_bytes:
        raise Invalid(code, f"{path}.{key} is longer than {max_bytes} bytes")
    return value


def integer(
    parent: dict[str, Any], key: str, path: str, code: int, allowed: range, default: int = 0
) -> int:
    """`parent[key]`, an integer in `allowed` (absent: `default`, WeCom's)."""
    value = parent.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise Invalid(code, f"{path}.{key} must be an integer in {allowed[0]}..{allowed[-1]}")
    return value


def array(
    parent: dict[str, Any], key: str, path: str, code: int, most: int, least: int = 0
) -> list[Any]:
    """`parent[key]`, a list of `least`..`most` items (absent: [] if `least` is 0)."""
    value = parent.get(key)
    if value is None and least == 0:
        return []
    if not isinstance(value, list):
        raise Invalid(code, f"{path}.{key} missing or not a list")
    if not least <= len(value) <= most:
        raise Invalid(code, f"{path}.{key} has {len(value)} items, allowed {least}..{most}")
    return value


def advise(warnings: list[str], value: str | None, path: str, most: int) -> None:
    """Note a text longer than the docs advise (WeCom shows it, perhaps cut)."""
    if value is not None and len(value) > most:
        warnings.append(f"{path}: {len(value)} characters, WeCom advises at most {most}")


def check_card(value: Any, warnings: list[str]) -> dict[str, Any]:
    """The `template_card` if WeCom accepts it (warnings appended), else `Invalid`."""
    card = obj(value, CARD, 40058)
    if card.get("card_type") != "button_interaction":
        kind = card.get("card_type")
        raise Invalid(42031, f"{CARD}.card_type {kind!r}: the simulator has button_interaction")
    check_task_id(card)
    _main_title(card, warnings)
    _decorations(card, warnings)
    _horizontal_contents(card, warnings)
    _jumps(card)
    _selection(card, warnings)
    _buttons(card, warnings)
    unknown = sorted(set(card) - CARD_FIELDS)
    if unknown:
        warnings.append(f"{CARD}: fields button_interaction does not have: {unknown}")
    return card


def check_task_id(card: dict[str, Any]) -> str:
    value = card.get("task_id")
    if not isinstance(value, str) or not TASK_ID.fullmatch(value):
        raise Invalid(42014, f"{CARD}.task_id missing or not [0-9A-Za-z_-@]{{1,128}}")
    return value


def _main_title(card: dict[str, Any], warnings: list[str]) -> None:
    path = f"{CARD}.main_title"
    title = obj(card.get("main_title"), path, 42033)
    advise(warnings, text(title, "title", path, 42033, required=True), f"{path}.title", 36)
    advise(warnings, text(title, "desc", path, 40058), f"{path}.desc", 44)


def _link(area: dict[str, Any], path: str, code: int) -> None:
    """An area's click: type 0 none, 1 `url`, 2 mini program `appid` (+ `pagepath`)."""
    kind = integer(area, "type", path, code, range(3))
    text(area, "url", path, 42028, required=kind == 1)
    text(area, "appid", path, 42030, required=kind == 2)
    text(area, "pagepath", path, 40058)


def _decorations(card: dict[str, Any], warnings: list[str]) -> None:
    """source, action_menu, quote_area, emphasis_content, sub_title_text, card_action."""
    if card.get("source") is not None:
        source = obj(card["source"], f"{CARD}.source", 40058)
        text(source, "icon_url", f"{CARD}.source", 40058)
        advise(warnings, text(source, "desc", f"{CARD}.source", 40058), "source.desc", 13)
        integer(source, "desc_color", f"{CARD}.source", 40058, range(4))
    if card.get("action_menu") is not None:
        _action_menu(obj(card["action_menu"], f"{CARD}.action_menu", 40058))
    if card.get("quote_area") is not None:
        quote = obj(card["quote_area"], f"{CARD}.quote_area", 40058)
        _link(quote, f"{CARD}.quote_area", 40058)
        text(quote, "title", f"{CARD}.quote_area", 40058)
        text(quote, "quote_text", f"{CARD}.quote_area", 40058)
    if card.get("emphasis_content") is not None:
        emphasis = obj(card["emphasis_content"], f"{CARD}.emphasis_content", 40058)
        text(emphasis, "title", f"{CARD}.emphasis_content", 40058)
        text(emphasis, "desc", f"{CARD}.emphasis_content", 40058)
    advise(warnings, text(card, "sub_title_text", CARD, 40058), "sub_title_text", 160)
    if card.get("card_action") is not None:
        _link(obj(card["card_action"], f"{CARD}.card_action", 42045), f"{CARD}.card_action", 42045)


def _action_menu(menu: dict[str, Any]) -> None:
    path = f"{CARD}.action_menu"
    text(menu, "desc", path, 40058)
    keys: set[str] = set()
    for i, value in enumerate(array(menu, "action_list", path, 40058, most=3, least=1)):
        action = obj(value, f"{path}.action_list[{i}]", 40058)
        text(action, "text", f"{path}.action_list[{i}]", 40058, required=True)
        key = text(action, "key", f"{path}.action_list[{i}]", 40058, required=True, max_bytes=1024)
        if key in keys:
            raise Invalid(42051, f"{path}.action_list.key {key!r} repeats")
        keys.add(str(key))


def _horizontal_contents(card: dict[str, Any], warnings: list[str]) -> None:
    for i, value in enumerate(array(card, "horizontal_content_list", CARD, 42035, most=6)):
        path = f"{CARD}.horizontal_content_list[{i}]"
        item = obj(value, path, 40058)
        kind = integer(item, "type", path, 40058, range(4))
        advise(warnings, text(item, "keyname", path, 42027, required=True), f"{path}.keyname", 5)
        advise(warnings, text(item, "value", path, 40058), f"{path}.value", 30)
        text(item, "url", path, 42028, required=kind == 1)
        text(item, "media_id", path, 42029, required=kind == 2)
        text(item, "userid", path, 42050, required=kind == 3)


def _jumps(card: dict[str, Any]) -> None:
    for i, value in enumerate(array(card, "jump_list", CARD, 42042, most=3)):
        path = f"{CARD}.jump_list[{i}]"
        jump = obj(value, path, 40058)
        _link(jump, path, 40058)
        text(jump, "title", path, 42033, required=True)


def _selection(card: dict[str, Any], warnings: list[str]) -> None:
    if card.get("button_selection") is None:
        return
    path = f"{CARD}.button_selection"
    selection = obj(card["button_selection"], path, 42043)
    text(selection, "question_key", path, 42043, required=True, max_bytes=1024)
    text(selection, "title", path, 40058)
    ids: list[str] = []
    for i, value in enumerate(array(selection, "option_list", path, 42037, most=10, least=1)):
        option = obj(value, f"{path}.option_list[{i}]", 42040)
        found = text(option, "id", f"{path}.option_list[{i}]", 42040, required=True, max_bytes=128)
        if found in ids:
            raise Invalid(42040, f"{path}.option_list[{i}].id {found!r} repeats")
        ids.append(str(found))
        label = text(option, "text", f"{path}.option_list[{i}]", 42041, required=True)
        advise(warnings, label, f"{path}.option_list[{i}].text", 16)
    selected = text(selection, "selected_id", path, 40058)
    if selected is not None and selected not in ids:
        warnings.append(f"{path}.selected_id {selected!r} is no option: WeCom selects the first")
    if not isinstance(selection.get("disable", False), bool):
        raise Invalid(40058, f"{path}.disable must be true or false")


def _buttons(card: dict[str, Any], warnings: list[str]) -> None:
    keys: set[str] = set()
    for i, value in enumerate(array(card, "button_list", CARD, 40058, most=6, least=1)):
        path = f"{CARD}.button_list[{i}]"
        button = obj(value, path, 42038)
        advise(warnings, text(button, "text", path, 42038, required=True), f"{path}.text", 10)
        kind = integer(button, "type", path, 40058, range(2))  # 0 callback, 1 open `url`
        style = button.get("style")
        if style is not None and (isinstance(style, bool) or not isinstance(style, int)):
            raise Invalid(40058, f"{path}.style must be an integer")
        if style is not None and style not in range(1, 5):
            warnings.append(f"{path}.style {style} is not 1..4: WeCom shows style 1")
        text(button, "url", path, 42028, required=kind == 1)
        key = text(button, "key", path, 42039, required=kind == 0, max_bytes=1024)
        if key is not None and key in keys:
            raise Invalid(42039, f"{path}.key {key!r} repeats another button's key")
        if key is not None:
            keys.add(key)
