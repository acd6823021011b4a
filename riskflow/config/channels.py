"""Notification channels (`notifications:` in riskflow.yaml) and their secrets.

```yaml
notifications:
  claim_seconds: 60            # a send attempt older than this that left no outcome is unknown
  marker_ttl_seconds: 604800   # how long an idempotency key is remembered
  pacing_margin: 0.1           # pace robots this fraction below their vendor's published limit
  channels:
    ops-group: {type: dingtalk, url_env: DINGTALK_OPS_URL, secret_env: DINGTALK_OPS_SECRET,
                rate_per_minute: 10}   # optional: this robot's own per-minute budget
    shift-lead: {type: wecom, url_env: WECOM_SHIFT_URL}
    site-manager: {type: feishu, url_env: FEISHU_URL, secret_env: FEISHU_SECRET}
    ticketing: {type: webhook, url: "https://hooks.example.com/riskflow", secret_env: HOOK_SECRET}
    mail: {type: email, host: smtp.example.com, port: 587, username: riskflow,
           password_env: SMTP_PASSWORD, sender: riskflow@example.com, recipients: [ops@example.com]}
```

Secrets are named like `key_env` in api_keys.yaml: `secret_env`, `url_env` (a robot's URL
holds its access token), `password_env`; a literal `secret`/`url`/`password` is for the local
receiver's placeholders. `ChannelSecrets` resolves them inside the worker and nowhere else; they
never enter workflow history or logs. A channel without `url` (or, for e-mail, without `host`)
goes to the local receiver of `riskflow dev up` (`devstack.receivers`), with the
channel's name as its access token.

Pacing (`activities.notify.pacing`): every robot (one URL) is sent to at most its vendor's
published rate less `pacing_margin` (DingTalk and WeCom 20 a minute, Feishu 100 a minute and 5
a second), shared by every worker; `rate_per_minute` replaces a channel's per-minute budget
(used as given, no margin), and paces a generic webhook, which has no vendor limit of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from riskflow.errors import ConfigError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
CHANNEL_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class _HttpChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr | None = None
    url_env: str | None = Field(default=None, pattern=ENV_NAME)
    secret: SecretStr | None = None
    secret_env: str | None = Field(default=None, pattern=ENV_NAME)
    timeout_seconds: float = Field(default=10.0, gt=0)
    rate_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="this robot's messages a minute, replacing its vendor's published limit",
    )

    @model_validator(mode="after")
    def _one_source_each(self) -> _HttpChannel:
        if self.url is not None and self.url_env is not None:
            raise ValueError("give 'url' or 'url_env', not both")
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give 'secret' or 'secret_env', not both")
        return self


class WebhookChannel(_HttpChannel):
    """Generic JSON webhook, signed with HMAC-SHA256 (a secret is required)."""

    type: Literal["webhook"]

    @model_validator(mode="after")
    def _signed(self) -> WebhookChannel:
        if self.secret is None and self.secret_env is None:
            raise ValueError("a webhook channel needs 'secret' or 'secret_env' to sign with")
        return self


class DingTalkChannel(_HttpChannel):
    """DingTalk custom robot; `secret` is the robot's 加签 secret (SEC...), if it has one."""

    type: Literal["dingtalk"]


class WeComChannel(_HttpChannel):
    """WeCom group robot (its URL's `key` is the credential; no signature)."""

    type: Literal["wecom"]


class WeComAppChannel(_HttpChannel):
    """WeCom self-built app (企业微信自建应用): a template card with buttons
    (`template_card`, `button_interaction`) sent to members, whose clicks come back to the
    callback listener (`workers.callbacks`) and act on the incident.

    `url` is the API's base (`https://qyapi.weixin.qq.com`; without one, the local
    receiver's simulator), `secret` the app's Secret (for `gettoken`), `corp_id` and
    `agent_id` the app's; `to_users` member userids (`@all`: everyone the app reaches),
    `to_parties` department ids, `to_tags` tag ids. The receive URL's `callback_token` and
    `callback_aes_key` (EncodingAESKey, 43 characters) are set on the app's 接收消息 page
    (developer.work.weixin.qq.com/document/path/90930)."""

    type: Literal["wecom_app"]
    corp_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    agent_id: int = Field(gt=0)
    to_users: list[str] = Field(default_factory=list, max_length=1000)
    to_parties: list[str] = Field(default_factory=list, max_length=100)
    to_tags: list[str] = Field(default_factory=list, max_length=100)
    callback_token: SecretStr | None = None
    callback_token_env: str | None = Field(default=None, pattern=ENV_NAME)
    callback_aes_key: SecretStr | None = None
    callback_aes_key_env: str | None = Field(default=None, pattern=ENV_NAME)

    @model_validator(mode="after")
    def _app(self) -> WeComAppChannel:
        if not (self.to_users or self.to_parties or self.to_tags):
            raise ValueError("a wecom_app channel needs to_users, to_parties or to_tags")
        if self.secret is None and self.secret_env is None:
            raise ValueError("a wecom_app channel needs the app's 'secret' or 'secret_env'")
        _callback_secrets(self, "wecom_app", ("callback_token", "callback_aes_key"))
        key = self.callback_aes_key
        if key is not None and len(key.get_secret_value()) != 43:
            got = len(key.get_secret_value())
            raise ValueError(
                f"'callback_aes_key' (EncodingAESKey) must have 43 characters, not {got}"
            )
        return self


def _callback_secrets(channel: BaseModel, kind: str, fields: tuple[str, ...]) -> None:
    """Each of `fields` given literally or by `<field>_env`, exactly one of them."""
    for field in fields:
        literal, env = getattr(channel, field), getattr(channel, f"{field}_env")
        if literal is not None and env is not None:
            raise ValueError(f"give '{field}' or '{field}_env', not both")
        if literal is None and env is None:
            raise ValueError(f"a {kind} channel needs '{field}' or '{field}_env'")


FeishuReceiveIdType = Literal["chat_id", "open_id", "union_id", "user_id", "email"]


class FeishuAppChannel(_HttpChannel):
    """Feishu / Lark custom app (企业自建应用) with its bot: an interactive card (card JSON
    2.0) sent to each of `receive_ids` (chats or people, of `receive_id_type`), whose button
    clicks (`card.action.trigger`) come back to the callback listener (`workers.callbacks`)
    and act on the incident.

    `url` is the API's base (`https://open.feishu.cn`, Lark: `https://open.larksuite.com`;
    without one, the local receiver's simulator), `app_id` (`cli_...`) and `secret` the app's
    App ID and App Secret (for `tenant_access_token`). The callback URL's `callback_token`
    (Verification Token) and `callback_encrypt_key` (Encrypt Key) are on the app's
    事件与回调 > 加密策略 page (open.feishu.cn/document/server-docs/event-subscription-guide)."""

    type: Literal["feishu_app"]
    app_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    receive_id_type: FeishuReceiveIdType = "chat_id"
    receive_ids: list[str] = Field(min_length=1, max_length=50)
    callback_token: SecretStr | None = None
    callback_token_env: str | None = Field(default=None, pattern=ENV_NAME)
    callback_encrypt_key: SecretStr | None = None
    callback_encrypt_key_env: str | None = Field(default=None, pattern=ENV_NAME)

    @model_validator(mode="after")
    def _app(self) -> FeishuAppChannel:
        if self.secret is None and self.secret_env is None:
            raise ValueError("a feishu_app channel needs the app's 'secret' or 'secret_env'")
        _callback_secrets(self, "feishu_app", ("callback_token", "callback_encrypt_key"))
        return self


class DingTalkAppChannel(_HttpChannel):
    """DingTalk internal app (企业内部应用) with its robot: an interactive card of the
    template `card_template_id` (made from `deploy/dingtalk/incident-card.md`) delivered to
    each group of `open_conversation_ids` and to each of `to_users` (userids, one-to-one
    with the robot), whose button clicks come back to the callback listener
    (`workers.callbacks`) and act on the incident: `callback_mode: http` over HTTP, to the
    route `callback_route_key` registered with `POST /v1.0/card/callbacks/register` (the
    listener must be reachable from DingTalk), or `callback_mode: stream` over the Stream
    connection the listener opens to DingTalk (no public URL needed).

    `url` is the API's base (`https://api.dingtalk.com`; without one, the local receiver's
    simulator), `app_key` the app's Client ID (AppKey, also its robot's `robotCode`),
    `secret` its Client Secret, `corp_id` the organisation's; `callback_api_secret` the
    `apiSecret` the route was registered with (it signs each click; http mode only)."""

    type: Literal["dingtalk_app"]
    app_key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    corp_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    card_template_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    open_conversation_ids: list[str] = Field(default_factory=list, max_length=50)
    to_users: list[str] = Field(default_factory=list, max_length=100)
    callback_mode: Literal["http", "stream"] = "http"
    callback_route_key: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$"
    )
    callback_api_secret: SecretStr | None = None
    callback_api_secret_env: str | None = Field(default=None, pattern=ENV_NAME)

    @model_validator(mode="after")
    def _app(self) -> DingTalkAppChannel:
        if not (self.open_conversation_ids or self.to_users):
            raise ValueError("a dingtalk_app channel needs open_conversation_ids or to_users")
        if self.secret is None and self.secret_env is None:
            raise ValueError("a dingtalk_app channel needs the app's 'secret' or 'secret_env'")
        if self.callback_mode == "stream":
            given = (
                self.callback_route_key or self.callback_api_secret or self.callback_api_secret_env
            )
            if given:
                raise ValueError("callback_mode stream takes no callback route (key or secret)")
            return self
        if self.callback_route_key is None:
            raise ValueError("a dingtalk_app channel in http mode needs 'callback_route_key'")
        _callback_secrets(self, "dingtalk_app", ("callback_api_secret",))
        return self


class FeishuChannel(_HttpChannel):
    """Feishu/Lark custom bot; `secret` is the bot's signature secret, if it has one."""

    type: Literal["feishu"]


class EmailChannel(BaseModel):
    """E-mail over SMTP with STARTTLS. `ca_file` trusts a private CA (PEM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["email"]
    host: str = ""
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    username: str = ""
    password: SecretStr | None = None
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    sender: str = Field(default="riskflow@localhost", min_length=3)
    recipients: list[str] = Field(min_length=1)
    ca_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _password(self) -> EmailChannel:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give 'password' or 'password_env', not both")
        if (self.password is not None or self.password_env) and not self.username:
            raise ValueError("a password needs a 'username'")
        return self


ChannelConfig = Annotated[
    WebhookChannel
    | DingTalkChannel
    | WeComChannel
    | WeComAppChannel
    | FeishuChannel
    | FeishuAppChannel
    | DingTalkAppChannel
    | EmailChannel,
    Field(discriminator="type"),
]
HttpChannelConfig = (
    WebhookChannel
    | DingTalkChannel
    | WeComChannel
    | WeComAppChannel
    | FeishuChannel
    | FeishuAppChannel
    | DingTalkAppChannel
)
# Channels whose messages carry buttons (their clicks come to `workers.callbacks`).
AppChannelConfig = WeComAppChannel | FeishuAppChannel | DingTalkAppChannel
APP_CHANNEL_TYPES = (WeComAppChannel, FeishuAppChannel, DingTalkAppChannel)
# The secrets of each app channel type's callbacks, in the order `ChannelSecrets.callback`
# gives them.
CALLBACK_SECRETS: dict[str, tuple[str, ...]] = {
    "wecom_app": ("callback_token", "callback_aes_key"),
    "feishu_app": ("callback_token", "callback_encrypt_key"),
    "dingtalk_app": ("callback_api_secret",),
}


def callback_fields(channel: AppChannelConfig) -> tuple[str, ...]:
    """The secrets of an app channel's callbacks (none for DingTalk's Stream mode: the
    connection is opened with the app's own secret)."""
    if isinstance(channel, DingTalkAppChannel) and channel.callback_mode == "stream":
        return ()
    return CALLBACK_SECRETS[channel.type]


class NotificationSettings(BaseModel):
    """`notifications:`: the channels by name, and how long idempotency markers live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    claim_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a send that recorded no outcome within this many seconds is unknown",
    )
    marker_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    pacing_margin: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="how far below each vendor's published rate its robots are paced (0.1: 10%)",
    )

    def local_only(self) -> NotificationSettings:
        """These settings with only the channels that name no address of their own (they send
        to the local receiver)."""
        local = {
            name: c
            for name, c in self.channels.items()
            if (not c.host if isinstance(c, EmailChannel) else c.url is None and c.url_env is None)
        }
        return self.model_copy(update={"channels": local})

    def app_channels(self) -> list[str]:
        """The channels whose messages carry buttons (their clicks come to `callbacks`)."""
        return [n for n, c in self.channels.items() if isinstance(c, APP_CHANNEL_TYPES)]

    def uses_local_receiver(self) -> bool:
        """Whether a channel sends to the local receiver."""
        return bool(self.local_only().channels)

    @model_validator(mode="after")
    def _names(self) -> NotificationSettings:
        import re

        bad = [name for name in self.channels if not re.match(CHANNEL_NAME, name)]
        if bad:
            raise ValueError(f"channel names may use letters, digits and _.- only: {bad}")
        return self


class ChannelSecrets:
    """Channel name -> its resolved URL, signing secret and SMTP password (any may be absent).

    Built in the worker (`from_environment`); `ConfigError` names the channels whose
    environment variables are not set."""

    def __init__(
        self,
        urls: Mapping[str, str],
        secrets: Mapping[str, str],
        passwords: Mapping[str, str],
        callbacks: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._urls = dict(urls)
        self._secrets = dict(secrets)
        self._passwords = dict(passwords)
        self._callbacks = dict(callbacks or {})

    @classmethod
    def from_config(
        cls, config: NotificationSettings, environ: Mapping[str, str]
    ) -> ChannelSecrets:
        urls: dict[str, str] = {}
        secrets: dict[str, str] = {}
        passwords: dict[str, str] = {}
        callbacks: dict[str, tuple[str, ...]] = {}
        missing: list[str] = []

        def take(name: str, field: str, literal: SecretStr | None, env: str | None) -> str | None:
            if literal is not None:
                return literal.get_secret_value()
            if env is None:
                return None
            if environ.get(env):
                return environ[env]
            missing.append(f"notifications.channels.{name}.{field} (${env})")
            return None

        for name, channel in config.channels.items():
            if isinstance(channel, EmailChannel):
                found = take(name, "password_env", channel.password, channel.password_env)
                if found is not None:
                    passwords[name] = found
                continue
            url = take(name, "url_env", channel.url, channel.url_env)
            secret = take(name, "secret_env", channel.secret, channel.secret_env)
            if url is not None:
                urls[name] = url
            if secret is not None:
                secrets[name] = secret
            if isinstance(channel, APP_CHANNEL_TYPES):
                fields = callback_fields(channel)
                taken = [
                    take(name, f"{f}_env", getattr(channel, f), getattr(channel, f"{f}_env"))
                    for f in fields
                ]
                values = [v for v in taken if v is not None]
                if len(values) == len(fields):
                    callbacks[name] = tuple(values)
        if missing:
            raise ConfigError(
                "riskflow.yaml: these channels name an environment variable that is not set: "
                + ", ".join(missing)
            )
        return cls(urls, secrets, passwords, callbacks)

    @classmethod
    def from_environment(cls, config: NotificationSettings) -> ChannelSecrets:
        return cls.from_config(config, os.environ)

    def all_configured(self, config: NotificationSettings) -> bool:
        """Whether every channel names its own address (none uses the local receiver)."""
        return all(
            (c.host if isinstance(c, EmailChannel) else self.url(name))
            for name, c in config.channels.items()
        )

    def url(self, channel: str) -> str | None:
        """The channel's configured URL (None: the local receiver's)."""
        return self._urls.get(channel)

    def secret(self, channel: str) -> str | None:
        return self._secrets.get(channel)

    def password(self, channel: str) -> str | None:
        return self._passwords.get(channel)

    def callback(self, channel: str) -> tuple[str, ...] | None:
        """An app channel's callback secrets, as `CALLBACK_SECRETS` names them (WeCom: token
        and EncodingAESKey; Feishu: Verification Token and Encrypt Key; DingTalk: the route's
        apiSecret); None: not an app channel."""
        return self._callbacks.get(channel)


# Where the local receiver (dev tooling) serves each vendor; `{name}` is the channel's name,
# used as its access token there.
LOCAL_PATHS = {
    "webhook": "/webhook/{name}",
    "dingtalk": "/dingtalk/robot/send?access_token={name}",
    "wecom": "/wecom/cgi-bin/webhook/send?key={name}",
    "feishu": "/feishu/open-apis/bot/v2/hook/{name}",
    "wecom_app": "/wecom-app/{name}",  # the API's base: /cgi-bin/gettoken etc. below it
    "feishu_app": "/feishu-app/{name}",  # the API's base: /open-apis/... below it
    "dingtalk_app": "/dingtalk-app/{name}",  # the API's base: /v1.0/... below it
}


def local_receiver_url(channel_type: str, name: str, receiver: str) -> str:
    """The local receiver's URL for a channel configured without one."""
    return receiver.rstrip("/") + LOCAL_PATHS[channel_type].format(name=name)
