"""`riskflow callbacks run`: the listener for clicks on incident cards
(`workers.callbacks`)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

import typer

from cli.common import console, settings_of, traced

app = typer.Typer(help="Chat-app callbacks: clicks on incident cards act on the incident.")


@app.command("run")
def callbacks_run(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="instead of callbacks.port")] = None,
) -> None:
    """Serve the app channels' receive URLs (/callbacks/<vendor>/<channel>) on
    callbacks.host:callbacks.port until SIGINT/SIGTERM."""
    from workers.callbacks.listener import run_callbacks
    from workers.common.client import connect_process

    settings = settings_of(ctx)
    if port is not None:
        settings = settings.model_copy(
            update={"callbacks": settings.callbacks.model_copy(update={"port": port})}
        )
    cfg = settings.callbacks
    console.print(f"callbacks: http://{cfg.host}:{cfg.port}/callbacks/<vendor>/<channel>")

    async def main() -> None:
        metrics = settings.metrics
        client = await connect_process(settings, metrics.callbacks_port, metrics.callbacks_sdk_port)
        await run_callbacks(settings, client)

    with traced(settings, "callbacks"):
        asyncio.run(main())


@app.command("register")
def callbacks_register(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="a dingtalk_app channel's name")],
    url: Annotated[
        str, typer.Option(help="the public URL of /callbacks/dingtalk/<channel> on this listener")
    ],
    force: Annotated[
        bool, typer.Option(help="replace a route already registered under the same key")
    ] = False,
) -> None:
    """Point a DingTalk app channel's callback route (`callback_route_key`) at `url`
    (`POST /v1.0/card/callbacks/register`, clicks signed with `callback_api_secret`). A route
    already pointing elsewhere is left as it is unless --force. WeCom and Feishu take their
    callback URL on the app's page in their consoles instead."""
    from activities.notify.dingtalk_app import DingTalkApp
    from activities.notify.errors import Refused, Uncertain
    from activities.notify.http import fresh_connection_session
    from riskflow.config.channels import ChannelSecrets, DingTalkAppChannel, local_receiver_url
    from riskflow.infra.endpoints import Endpoints

    settings = settings_of(ctx)
    found = settings.notifications.channels.get(channel)
    if not isinstance(found, DingTalkAppChannel):
        console.print(f"[red]{channel!r} is not a dingtalk_app channel of riskflow.yaml[/red]")
        raise typer.Exit(2)
    if found.callback_mode == "stream" or found.callback_route_key is None:
        console.print(f"[red]{channel!r} takes its clicks over Stream: no route to register[/red]")
        raise typer.Exit(2)
    if not url.startswith(("https://", "http://")):
        console.print("[red]--url must be an http(s) URL[/red]")
        raise typer.Exit(2)
    secrets = ChannelSecrets.from_environment(settings.notifications)
    base = secrets.url(channel) or local_receiver_url(
        found.type, channel, Endpoints.of(settings).receiver
    )
    (api_secret,) = secrets.callback(channel) or ("",)
    route_key = found.callback_route_key

    async def main() -> tuple[str, str]:
        async with fresh_connection_session() as session:
            secret = secrets.secret(channel) or ""
            api = DingTalkApp(session, base, found.app_key, secret, found.timeout_seconds)
            return await api.register(route_key, url, api_secret, force)

    try:
        detail = asyncio.run(main())
    except (Refused, Uncertain) as exc:
        console.print(f"[red]DingTalk refused the route: {exc}[/red]")
        raise typer.Exit(1) from None
    registered, secret = detail
    if registered != url or not hmac.compare_digest(secret, api_secret):
        differs = "points at " + registered if registered != url else "has another apiSecret"
        console.print(
            f"[yellow]route {route_key!r} already {differs} (callback_api_secret changed?): "
            "left as it is, and clicks signed otherwise are refused; every card naming this "
            "key follows a change, another deployment's too: --force replaces it[/yellow]"
        )
        raise typer.Exit(1)
    console.print(f"route {found.callback_route_key!r} -> {url}")
