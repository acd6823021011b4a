"""Build the assessment task: the prompt, with the camera's recent history as context."""

from __future__ import annotations

from redis.asyncio import Redis
from temporalio import activity

from riskflow.models import AssessmentInput, AssessmentTask
from riskflow.names import camera_history_key
from riskflow.prompt import SYSTEM_PROMPT, user_prompt
from riskflow.settings import LLMSettings


class TaskActivities:
    def __init__(self, redis: Redis, llm: LLMSettings) -> None:
        self._redis = redis
        self._llm = llm

    @activity.defn(name="build_task")
    async def build_task(self, inp: AssessmentInput) -> AssessmentTask:
        event = inp.event
        history: list[str] = []
        if self._llm.history_context:
            raw = await self._redis.lrange(
                camera_history_key(event.camera_id), 0, self._llm.history_context - 1
            )
            history = [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
        image_ref = None
        if event.snapshot is not None:
            image_ref = f"{event.snapshot.store}:{event.snapshot.ref}"
        return AssessmentTask(
            assessment_id=inp.assessment_id,
            camera_id=event.camera_id,
            model=self._llm.vision_model if image_ref else self._llm.text_model,
            system_prompt=SYSTEM_PROMPT,
            user_prompt=user_prompt(event, inp.situation, history),
            image_ref=image_ref,
            text_model=self._llm.text_model,
            user_prompt_without_history=user_prompt(event, inp.situation, []) if history else None,
        )
