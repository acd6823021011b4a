"""`callbacks:` in riskflow.yaml: the callback listener (`riskflow callbacks run`), where chat
apps deliver the clicks on riskflow's incident cards.

```yaml
callbacks:
  host: 127.0.0.1              # behind the reverse proxy that the vendors reach over HTTPS
  port: 8310
  replay_window_seconds: 300   # a click signed further from now than this is refused
  max_requests_per_second: 50  # refused requests logged a second; beyond: 429, unlogged
```

Each app channel's receive URL is `https://<public host>/callbacks/<vendor>/<channel name>`
(for WeCom: `/callbacks/wecom/shift-lead-app`), entered on the vendor's app page with the
channel's callback token and key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CallbackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8310, gt=0, lt=65536)
    replay_window_seconds: float = Field(
        default=300.0, gt=0, description="a callback signed longer ago than this is refused"
    )
    max_requests_per_second: int = Field(
        default=50,
        gt=0,
        description="refused requests a receive URL answers 400 (and logs) a second, per "
        "listener process; beyond: 429 (clicks that pass their checks are never paced)",
    )
