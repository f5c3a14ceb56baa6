"""One X-Request-Id per response: the id that the body and the ledger row carry.

Ray Serve's own request-id middleware appends an ``X-Request-ID`` to every response (the client's
``X-Request-Id``, or one it makes up), after the app's headers. The gateway answers with the
request's id (the client's OIP ``id`` first), so this outer middleware, installed through Serve's
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, keeps the app's header and drops Serve's duplicate.
"""

from __future__ import annotations

from starlette.middleware import Middleware

_HEADER = b"x-request-id"
CALLBACK = "gateway.request_id.serve_middlewares"


class OneRequestId:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_one(message) -> None:
            if message["type"] == "http.response.start":
                seen, headers = False, []
                for name, value in message.get("headers", []):
                    if name.lower() == _HEADER:
                        if seen:
                            continue  # Serve's, appended after the app's
                        seen = True
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_one)


def serve_middlewares() -> list[Middleware]:
    return [Middleware(OneRequestId)]
