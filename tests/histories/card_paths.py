"""The paths of CardClickWorkflow (tests/histories/paths.py), as tests/test_wecom_app_actions.py
drives them: a WeCom card sent through the app simulator, clicked, acted on and updated."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from riskflow.contracts.card_actions import ButtonKey, CardAction
from riskflow.names import card_click_workflow_id
from tests.histories.record import DEV, Recorder, expect
from tests.test_wecom_app_actions import APP, _fall_told, wecom_world

QUEUE = "histories-cards"


def _click_id(card: dict[str, object], userid: str, key: str, created: int) -> str:
    """The listener's event id of a WeCom click (workers.callbacks.wecom)."""
    text = f"{userid}\n{created}\n{card['task_id']}\n{key}"
    return card_click_workflow_id(APP, hashlib.sha256(text.encode()).hexdigest()[:40])


async def card_clicks(rec: Recorder) -> None:
    """On the dev server: a click from somebody the site does not allow (refused, told on
    their card), then a claim with an ETA (acted, the card updated for everyone)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with wecom_world(rec.dev, rec.settings, rec.stack, QUEUE, Path(tmp)) as world:
            _, view, card = await _fall_told(world, rec.dev, QUEUE, "rec-card")
            clicks: list[tuple[str, CardAction, str]] = [
                ("LiWei", "claim", "card-click-refused"),
                ("WangGong", "on_my_way", "card-click-acted"),
            ]
            picked = [{"question_key": "eta", "option_ids": ["10"]}]
            for userid, action, name in clicks:
                key = ButtonKey(action, view.incident_id).encode()
                answer = await world.click(card, userid, action, selected=picked)
                click_id = _click_id(card, userid, key, answer["create_time"])
                handle = rec.dev.get_workflow_handle(click_id)
                outcome = await handle.result()
                expected = "refused" if userid == "LiWei" else "acted"
                expect(outcome["result"] == expected, f"{name}: {outcome}")
                await rec.save(name, handle, DEV, f"a WeCom click: {expected}, card told")
