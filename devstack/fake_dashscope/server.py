"""The HTTP server: DashScope's generation endpoints (native and OpenAI-compatible), plus
/admin for faults and statistics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

from aiohttp import web

from devstack.fake_dashscope.answer import answer_for, prompt_tokens
from devstack.fake_dashscope.dialects import DASHSCOPE, OPENAI, Dialect, Request
from devstack.fake_dashscope.faults import ExactAnswer, FaultConfig, FaultPlan, Outcome
from devstack.fake_dashscope.limits import LimitBook, LimitsConfig, Window
from riskflow.config.keys import KeyRing, KeysConfig

logger = logging.getLogger(__name__)

TEXT_PATH = "/api/v1/services/aigc/text-generation/generation"
VISION_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
COMPAT_PATH = "/compatible-mode/v1/chat/completions"  # OpenAI-compatible (both text and vision)

STATE: web.AppKey[ServerState] = web.AppKey("state")
RECORDED_REQUESTS = 500  # the newest request bodies kept for /admin/requests


class ServerState:
    def __init__(self, keys: KeysConfig, ring: KeyRing) -> None:
        self.by_secret = {ring.secret(k): k for k in ring.key_ids()}
        self.keys = keys
        self.faults = FaultPlan.of(FaultConfig())
        self.reset()

    def reset(self) -> None:
        groups = {
            name: Window(g.qps_limit, g.rpm_limit, g.tpm_limit)
            for name, g in self.keys.quota_groups.items()
        }
        self.book = LimitBook(
            keys={
                k.key_id: Window(k.qps_limit, k.rpm_limit, k.tpm_limit) for k in self.keys.api_keys
            },
            groups=groups,
            key_group={k.key_id: k.quota_group for k in self.keys.api_keys if k.quota_group},
        )
        self.outcomes: dict[str, int] = {}
        self.endpoints: dict[str, int] = {}
        self.requests: deque[dict[str, Any]] = deque(maxlen=RECORDED_REQUESTS)


def _error(
    dialect: Dialect, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(dialect.error(code, message), status=status, headers=headers)


async def generation(request: web.Request) -> web.Response:
    """Both APIs: the native generation endpoints and the OpenAI-compatible route."""
    state = request.app[STATE]
    dialect = OPENAI if request.path == COMPAT_PATH else DASHSCOPE
    auth = request.headers.get("Authorization", "")
    key_id = state.by_secret.get(auth.removeprefix("Bearer ").strip())
    if key_id is None:
        return _error(dialect, 401, "InvalidApiKey", "Invalid API-key provided.")
    try:
        payload: dict[str, Any] = await request.json()
        req = dialect.parse(payload, request.path == VISION_PATH)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return _error(dialect, 400, "InvalidParameter", "messages are required")
    kind = "vision" if req.vision else "text"
    state.endpoints[kind] = state.endpoints.get(kind, 0) + 1
    state.requests.append({"key_id": key_id, "endpoint": kind, "api": dialect.name, **payload})
    broken = state.book.record(key_id, prompt_tokens(req.messages))
    if broken and state.faults.config.enforce_limits:
        retry = {"Retry-After": "1"}
        if broken == "tokens":  # DashScope: the account's token allocation per minute
            message = "Allocated quota exceeded, please increase your quota limit."
            return _error(dialect, 429, "Throttling.AllocationQuota", message, retry)
        message = "Requests rate limit exceeded, please try again later."
        return _error(dialect, 429, "Throttling.RateQuota", message, retry)
    exact = state.faults.rule_for(key_id, req.model, req.vision, json.dumps(req.messages))
    outcome = exact or state.faults.next()
    label = "exact" if isinstance(outcome, ExactAnswer) else outcome
    state.outcomes[label] = state.outcomes.get(label, 0) + 1
    if isinstance(outcome, ExactAnswer):
        if outcome.drop and request.transport is not None:
            request.transport.close()  # the client sees the connection drop, no answer
        return _exact(dialect, outcome, req)
    return await _respond(state, dialect, outcome, req)


def _exact(dialect: Dialect, answer: ExactAnswer, req: Request) -> web.Response:
    """The configured answer, as it is (a `content` shorthand becomes a 200 chat answer)."""
    if answer.content is not None:
        body = dialect.ok(answer.content, prompt_tokens(req.messages), req.model)
        return web.json_response(body, headers=answer.headers)
    if isinstance(answer.body, str) or answer.body is None:
        return web.Response(status=answer.status, text=answer.body or "", headers=answer.headers)
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


async def _respond(
    state: ServerState, dialect: Dialect, outcome: Outcome, req: Request
) -> web.Response:
    cfg = state.faults.config
    if cfg.latency_ms:
        await asyncio.sleep(cfg.latency_ms / 1000)
    if outcome == "429":
        retry = {"Retry-After": f"{cfg.retry_after_seconds:g}"}
        return _error(dialect, 429, "Throttling.RateQuota", "Requests rate limit exceeded.", retry)
    if outcome in ("500", "503"):
        message = "An internal error has occured, please retry."
        return _error(dialect, int(outcome), "InternalError", message)
    if outcome == "invalid_key":
        return _error(dialect, 401, "InvalidApiKey", "Invalid API-key provided.")
    if outcome == "content":
        message = "Input data may contain inappropriate content."
        return _error(dialect, 400, "DataInspectionFailed", message)
    if outcome == "hang":
        await asyncio.sleep(cfg.hang_seconds)
    text = json.dumps(req.messages)
    if outcome == "malformed":
        cut = '{"risk_level": "high", "risk_score": '
        return web.json_response(dialect.ok(cut, prompt_tokens(req.messages), req.model))
    if req.wants_json and "json" not in text.lower():
        message = "'messages' must contain the word 'json' in json mode"
        return _error(dialect, 400, "InvalidParameter", message)
    answer = answer_for(req.messages)
    return web.json_response(dialect.ok(answer, prompt_tokens(req.messages), req.model))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    stats = state.book.stats()
    stats["outcomes"] = state.outcomes
    stats["endpoints"] = state.endpoints
    return web.json_response(stats)


async def get_requests(request: web.Request) -> web.Response:
    """The newest request bodies (oldest first), each with its `key_id` and `endpoint`."""
    return web.json_response(list(request.app[STATE].requests))


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        config = FaultConfig.model_validate(await request.json())
    except (json.JSONDecodeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.faults = FaultPlan.of(config)
    return web.json_response(config.model_dump())


async def set_limits(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        config = LimitsConfig.model_validate(await request.json())
    except (json.JSONDecodeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.book = config.book(state.book)
    return web.json_response(config.model_dump())


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    state.faults = FaultPlan.of(FaultConfig())
    return web.json_response({"status": "reset"})


def build_app(keys: KeysConfig, ring: KeyRing) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE] = ServerState(keys, ring)
    app.router.add_post(TEXT_PATH, generation)
    app.router.add_post(VISION_PATH, generation)
    app.router.add_post(COMPAT_PATH, generation)
    app.router.add_get("/health", health)
    app.router.add_get("/admin/stats", get_stats)
    app.router.add_get("/admin/requests", get_requests)
    app.router.add_post("/admin/faults", set_faults)
    app.router.add_post("/admin/limits", set_limits)
    app.router.add_post("/admin/reset", reset)
    return app
