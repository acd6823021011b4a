"""Each vendor's published send limits per robot, and the windows riskflow paces a robot by.

Published limits (per robot, i.e. per webhook URL):
- DingTalk custom robot: 20 messages a minute; a robot that sends more is throttled for 10
  minutes (errcode 130101 "send too fast, exceed 20 times per minute"). DingTalk's custom robot
  guide, "消息发送频率限制": "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟"
  (https://open.dingtalk.com/document/robots/custom-robot-access, also quoted at
  https://blog.csdn.net/lxw1844912514/article/details/125780346). The guide's own advice for
  alarms is what `activities.notify.digest` does: merge them into one markdown summary.
- Feishu custom bot: 100 a minute and 5 a second per bot and tenant; either rate exceeded is
  refused (code 11232, frequency limited). "自定义机器人的频率控制和普通应用不同，为单租户单机器人
  100 次/分钟，5 次/秒" (https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control,
  Chinese edition https://open.larkoffice.com/document/ukTMukTMukTM/uUzN04SN3QjL1cDN). No block
  time is published: a refusal closes the bot for a minute (or the `x-ogw-ratelimit-reset` /
  Retry-After the answer names, when the classifier passes it on).
- WeCom group robot: 20 messages a minute (errcode 45009). "每个机器人发送的消息不能超过20条/分钟"
  (https://developer.work.weixin.qq.com/document/path/91770, 消息发送频率限制); WeCom's rate
  page says a per-minute limit blocks for 60 seconds ("按分钟拦截则被屏蔽60秒",
  https://developer.work.weixin.qq.com/document/path/90454).
- Generic webhook: no published limit; paced only when `rate_per_minute` is set. An HTTP 429
  closes it for its Retry-After (a minute without one).

Digest sizes: a digest's text stays under what each vendor module sends whole (DingTalk's
markdown text cut at 20,000 bytes, WeCom's markdown content at 4,096 bytes, Feishu's card text
at 15,000 bytes of a 20 KB request), measured as JSON-escaped UTF-8 with room to spare for the
fixed parts of each message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINUTE = 60.0


@dataclass(frozen=True)
class Window:
    """At most `limit` sends in any `seconds`."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class VendorLimits:
    """A vendor's published `windows`, how long its "too fast" answer closes a robot
    (`block_seconds`; None where nothing is published), and the largest digest text its
    messages carry (`digest_bytes`)."""

    windows: tuple[Window, ...]
    block_seconds: float | None
    digest_bytes: int


DINGTALK_BLOCK_SECONDS = 600.0  # a robot over 20 a minute is throttled for 10 minutes
VENDOR_LIMITS: dict[str, VendorLimits] = {
    "dingtalk": VendorLimits(
        (Window(20, MINUTE),), block_seconds=DINGTALK_BLOCK_SECONDS, digest_bytes=18_000
    ),
    "feishu": VendorLimits(
        (Window(100, MINUTE), Window(5, 1.0)), block_seconds=None, digest_bytes=13_000
    ),
    "wecom": VendorLimits((Window(20, MINUTE),), block_seconds=MINUTE, digest_bytes=3_600),
    "webhook": VendorLimits((), block_seconds=None, digest_bytes=18_000),
}


def paced_windows(vendor: str, rate_per_minute: int | None, margin: float) -> tuple[Window, ...]:
    """The windows a robot of `vendor` is paced by: each published window with `margin` taken
    off its limit (rounded down, at least 1), the one-minute window replaced by
    `rate_per_minute` as given when set. Empty: not paced."""
    published = VENDOR_LIMITS[vendor].windows
    windows = [
        Window(max(1, math.floor(w.limit * (1 - margin) + 1e-9)), w.seconds)
        for w in published
        if not (rate_per_minute is not None and w.seconds == MINUTE)
    ]
    if rate_per_minute is not None:
        windows.insert(0, Window(rate_per_minute, MINUTE))
    return tuple(windows)


def block_seconds(vendor: str, retry_after_seconds: float | None) -> float:
    """How long a vendor's "too fast" answer closes the robot for every worker: the vendor's
    published block, or the delay its answer named when that is longer; without a published
    block, the named delay, or a minute."""
    published = VENDOR_LIMITS[vendor].block_seconds
    if published is None:
        return retry_after_seconds if retry_after_seconds else MINUTE
    return max(published, retry_after_seconds or 0.0)
