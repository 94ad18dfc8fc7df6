"""Wiring of the console: routes, sign-in, static files, the gateway's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from magpie.runtime.auth import Authenticator, Role
from magpie.runtime.settings import Settings
from services.console import config, insights, pages
from services.console.auth import SignIn
from services.console.gateway import Gateway
from services.console.web import HERE

__all__ = ["NAME", "build_app"]

NAME = "console"


def build_app(settings: Settings) -> Starlette:
    """The console for `settings`; its gRPC channels open when the app starts (inside the
    server's event loop) and close when it stops."""
    authenticator = Authenticator(settings.auth_tokens_file) if settings.auth_tokens_file else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = Gateway(settings)
        try:
            yield
        finally:
            await app.state.gateway.close()

    app = Starlette(
        routes=[
            *pages.ROUTES,
            *insights.ROUTES,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(
                SignIn,
                authenticator=authenticator,
                open_role=Role[settings.console_open_role.upper()],
                refuse=pages.sign_in_required,
            )
        ],
        lifespan=lifespan,
        max_body_size=config.MAX_FORM_BYTES,
    )
    app.state.settings = settings
    app.state.authenticator = authenticator
    return app
