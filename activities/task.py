"""Build the assessment task: the prompt for the camera's site and context, with the camera's
recent history; and the same for a replay candidate (no history: a replay reads nothing live)."""

from __future__ import annotations

from temporalio import activity

from activities.spend import SpendLedger
from riskflow.config.capacity import FailoverStep
from riskflow.config.llm import LLMSettings
from riskflow.config.replay import Candidate
from riskflow.config.settings import Settings
from riskflow.config.significance import SignificanceConfig
from riskflow.config.sites import SiteConfig, site_of
from riskflow.contracts.assessment import AssessmentInput, AssessmentTask
from riskflow.contracts.replay import ReplayTaskInput
from riskflow.infra.redis import RedisClient
from riskflow.llm_text.prompt import PromptSpec, prompt_spec, system_prompt, user_prompt
from riskflow.names import camera_history_key

PROVIDER = "dashscope"  # the provider asked by default; the answer records the one that answered


class PromptBook:
    """The prompt spec of each camera: its site (language, context, rubric) and its zones (the
    camera's significance zones, else the default zones)."""

    def __init__(self, sites: list[SiteConfig], significance: SignificanceConfig) -> None:
        self._sites = sites
        self._significance = significance

    @classmethod
    def of(cls, settings: Settings) -> PromptBook:
        return cls(settings.sites, settings.significance)

    def severity(self, situation: str) -> int:
        """The situation's severity in the significance rules (0 when no rule names it)."""
        return max((r.severity for r in self._significance.rules if r.name == situation), default=0)

    def site(self, camera_id: str) -> SiteConfig:
        return site_of(self._sites, camera_id)

    def failover(self, camera_id: str, site: SiteConfig | None = None) -> list[FailoverStep]:
        """The camera's failover chain (its site's `capacity`; empty: none)."""
        return (site or self.site(camera_id)).capacity.chain(camera_id)

    def spec(self, camera_id: str, site: SiteConfig | None = None) -> PromptSpec:
        rules = self._significance.cameras.get(camera_id)
        zones = rules.zones if rules is not None and rules.zones is not None else None
        site = site or self.site(camera_id)
        return prompt_spec(
            site, camera_id, zones if zones is not None else self._significance.zones
        )


def estimate(task: AssessmentTask, llm: LLMSettings) -> int:
    """The tokens one call of `task` is reserved for (see `LLMSettings.chars_per_token`):
    at least its real count for prompts of our shape, settled with the real count after."""
    chars = len(task.system_prompt) + len(task.user_prompt)
    images = 1 if task.image_ref else 0
    return int(chars / llm.chars_per_token) + images * llm.image_tokens + llm.output_tokens


def candidate_spec(spec: PromptSpec, candidate: Candidate) -> PromptSpec:
    """The live spec with a candidate's overrides."""
    update: dict[str, object] = {"template": candidate.prompt}
    if candidate.language is not None:
        update["language"] = candidate.language
    if candidate.rubric is not None:
        update["rubric"] = candidate.rubric
    if candidate.instructions is not None:
        update["context"] = spec.context.model_copy(update={"instructions": candidate.instructions})
    return spec.model_copy(update=update)


class TaskActivities:
    def __init__(
        self,
        redis: RedisClient,
        llm: LLMSettings,
        book: PromptBook | None = None,
        ledger: SpendLedger | None = None,
    ) -> None:
        """`ledger`: where site budgets are read (None: budgets are not applied)."""
        self._redis = redis
        self._llm = llm
        self._book = book or PromptBook([], SignificanceConfig())
        self._ledger = ledger

    @activity.defn(name="build_task")
    async def build_task(self, inp: AssessmentInput) -> AssessmentTask:
        event = inp.event
        history: list[str] = []
        if self._llm.history_context:
            raw = await self._redis.lrange(
                camera_history_key(event.camera_id), 0, self._llm.history_context - 1
            )
            history = [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
        site = self._book.site(event.camera_id)  # once for the event: carried in the task
        spec = self._book.spec(event.camera_id, site)
        model = self._llm.vision_model if event.snapshot else self._llm.text_model
        task = _task(inp, spec, history, PROVIDER, model, self._llm.text_model)
        update = {
            "site_id": site.id,
            "failover": self._book.failover(event.camera_id, site),
            "estimated_tokens": estimate(task, self._llm),
            "severity": self._book.severity(inp.situation),
        }
        return task.model_copy(update=update | await self._budget(event.camera_id, site))

    async def _budget(self, camera_id: str, site: SiteConfig) -> dict[str, object]:
        """Over its site's budget: the fallback chain (`on_exhausted: fallback`) or no call
        (`stop`), and the limit reached; within it: nothing changes."""
        standing = await self._ledger.standing(camera_id, site) if self._ledger else None
        if standing is None or not standing[2].exhausted:
            return {}
        site, budget, verdict = standing
        if budget.on_exhausted == "stop":
            return {"over_budget": verdict.exhausted, "budget_stop": True}
        chain = site.capacity.over_budget_chain(camera_id)
        return {"over_budget": verdict.exhausted, "failover": chain}

    @activity.defn(name="build_replay_task")
    async def build_replay_task(self, inp: ReplayTaskInput) -> AssessmentTask:
        """The task a candidate would build; no history (it would differ between runs)."""
        cand = inp.candidate
        spec = candidate_spec(self._book.spec(inp.assessment.event.camera_id), cand)
        if inp.assessment.event.snapshot:
            model = cand.vision_model or self._llm.vision_model
        else:
            model = cand.model or self._llm.text_model
        return _task(
            inp.assessment, spec, [], cand.provider, model, cand.model or self._llm.text_model
        )


def _task(
    inp: AssessmentInput,
    spec: PromptSpec,
    history: list[str],
    provider: str,
    model: str,
    text_model: str,
) -> AssessmentTask:
    """The task: prompts from `spec`, `model` for the call, `text_model` for a text-only
    retry (an image the provider could not read, a moderation refusal)."""
    event = inp.event
    provenance = spec.provenance(provider, model, event)
    return AssessmentTask(
        assessment_id=inp.assessment_id,
        camera_id=event.camera_id,
        model=model,
        system_prompt=system_prompt(spec),
        user_prompt=user_prompt(event, inp.situation, history, spec),
        image_ref=provenance.image_ref,
        provenance=provenance,
        text_model=text_model,
        user_prompt_without_history=(
            user_prompt(event, inp.situation, [], spec) if history else None
        ),
    )
