"""The paths of CardClickWorkflow (tests/histories/paths.py), as tests/test_wecom_app_actions.py
drives them: a WeCom card sent through the app simulator, clicked, acted on and updated."""

from __future__ import annotations

import tempfile
from pathlib import Path

from riskflow.contracts.card_actions import CardAction
from tests.histories.record import DEV, Recorder, expect
from tests.test_wecom_app_actions import click_id, fall_told, wecom_world

QUEUE = "histories-cards"


async def card_clicks(rec: Recorder) -> None:
    """On the dev server: a click from somebody the site does not allow (refused, told on
    their card), then a claim with an ETA (acted, the card updated for everyone)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with wecom_world(rec.dev, rec.settings, rec.stack, QUEUE, Path(tmp)) as world:
            _, _, card = await fall_told(world, rec.dev, QUEUE, "rec-card")
            clicks: list[tuple[str, CardAction, str]] = [
                ("LiWei", "claim", "card-click-refused"),
                ("WangGong", "on_my_way", "card-click-acted"),
            ]
            picked = [{"question_key": "eta", "option_ids": ["10"]}]
            for userid, action, name in clicks:
                answer = await world.click(card, userid, action, selected=picked)
                handle = rec.dev.get_workflow_handle(click_id(card, userid, answer, action))
                outcome = await handle.result()
                expected = "refused" if userid == "LiWei" else "acted"
                expect(outcome["result"] == expected, f"{name}: {outcome}")
                await rec.save(name, handle, DEV, f"a WeCom click: {expected}, card told")
