"""The one pooled HTTP client to LM Studio, and the one place transport errors become ProxyErrors.

Requests go only to the configured base URL: callers pass paths, never URLs.
"""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport  # 2-3x httpx's own transport in our benchmark

from routing.core.errors import (
    EndpointMissing,
    ModelNotFound,
    ModelNotLoaded,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from routing.lmstudio.events import (
    _DONE,
    EventStream,
    ReadWatchdog,
    error_message,
    parse_sse_line,
    parse_sse_lines,
    raw_reader,
)
from routing.security.credentials import mask_url, split_credentials, url_secrets

NATIVE_MODELS = "/api/v1/models"  # LM Studio 0.4+: models with their loaded instances


class Upstream:
    """Requests to one LM Studio server through one pooled transport.

    Requests go straight to the transport (httpx's `Request`/`Response` and its aiohttp transport),
    not through `httpx.AsyncClient`: the client's redirect, cookie and auth layers did nothing here
    but cost about 15% of the proxy's CPU per request (py-spy, see docs/benchmarks.md).
    """

    def __init__(self, base_url: str, *, api_key: str = "", connect_timeout: float = 5.0,
                 read_timeout: float = 300.0, max_connections: int = 256, pool_timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        # Credentials in the URL become a header (aiohttp refuses a URL with credentials together with
        # an Authorization header); an api_key wins over them. Messages show the URL masked.
        self.url = base_url.rstrip("/")  # as configured, credentials included: never shown
        self.base_url, user, password = split_credentials(self.url)
        self.display_url = mask_url(base_url.rstrip("/"))
        self._url_secrets = url_secrets(base_url)
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=pool_timeout)
        if transport is None:
            # Idle connections are dropped after 2 s, before LM Studio's server (Node: 5 s) closes
            # them, so a request never races a connection that is being closed.
            limits = httpx.Limits(max_connections=max_connections,
                                  max_keepalive_connections=max_connections, keepalive_expiry=2.0)
            transport = AiohttpTransport(limits=limits)
        self.transport = transport
        self._urls: dict[str, httpx.URL] = {}
        self.headers = {}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        elif user or password:
            self.headers["Authorization"] = httpx.BasicAuth(user, password)._auth_header

    def build_request(self, method: str, path: str, content: bytes | None = None,
                      timeout: httpx.Timeout | None = None) -> httpx.Request:
        """A request for `path` on this LM Studio: callers name paths, never addresses."""
        if not path.startswith("/"):
            raise ValueError(f"an upstream path must start with '/': {path!r}")
        headers = dict(self.headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return httpx.Request(method, self._url(path), content=content, headers=headers,
                             extensions={"timeout": (timeout or self.timeout).as_dict()})

    def _url(self, path: str) -> httpx.URL:
        """The parsed URL of a path, remembered for the few fixed paths (parsing was a quarter of the
        cost of building a request, py-spy); paths with a model id in them are parsed each time."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if len(self._urls) < 64:
                self._urls[path] = url
        return url

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send through the pool; the response's body is not read yet."""
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    @contextlib.asynccontextmanager
    async def mapped_errors(self):
        """Turn transport failures into ProxyErrors with messages a person can act on."""
        try:
            yield
        except httpx.PoolTimeout as exc:
            raise UpstreamBusy(f"no connection to LM Studio at {self.display_url} became free in time: the "
                               f"proxy is at its upstream concurrency limit") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if _closed_by_peer(exc):
                raise UpstreamUnavailable(f"LM Studio at {self.display_url} closed the connection") from exc
            raise UpstreamUnavailable(f"cannot reach LM Studio at {self.display_url}: is its server "
                                      f"running? ({self._masked(exc)})") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"LM Studio at {self.display_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            if _closed_by_peer(exc):
                raise UpstreamUnavailable(f"LM Studio at {self.display_url} closed the connection before "
                                          f"the answer was complete") from exc
            raise UpstreamUnavailable(f"connection to LM Studio at {self.display_url} failed: "
                                      f"{self._masked(exc)}") from exc

    def _masked(self, exc: Exception) -> str:
        """A transport error's text, which may quote the URL, with the credentials masked."""
        text = str(exc) or type(exc).__name__
        for secret in self._url_secrets:
            text = text.replace(secret, "***")
        return text

    async def open(self, method: str, path: str, body: dict | None = None, *,
                   model: str = "", read_timeout: float | None = None) -> httpx.Response:
        """Send a request and return the response with its status already checked (body unread).

        `model` names the model for a not-found error; `read_timeout` replaces UPSTREAM_READ_TIMEOUT
        for a request known to take longer (a model load). The caller must close the response.
        """
        content = orjson.dumps(body) if body is not None else None
        timeout = None if read_timeout is None else httpx.Timeout(
            read_timeout, connect=self.timeout.connect, pool=self.timeout.pool)
        async with self.mapped_errors():
            response = await self.send(self.build_request(method, path, content, timeout))
            try:
                if response.status_code >= 400 or "json" in response.headers.get("content-type", ""):
                    await response.aread()
                    check_response(response, model, (body or {}).get("model", ""))
            except BaseException:
                await response.aclose()
                raise
        return response

    async def read(self, method: str, path: str, body: dict | None = None, *,
                   timeout: httpx.Timeout | None = None) -> httpx.Response:
        """Send a request and read its whole answer, status unchecked (the caller checks it)."""
        content = orjson.dumps(body) if body is not None else None
        async with self.mapped_errors():
            response = await self.send(self.build_request(method, path, content, timeout))
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    async def ping(self, timeout: float):
        """Raise a ProxyError unless LM Studio answers its cheapest call within `timeout` seconds."""
        check_response(await self.read("GET", "/v1/models", timeout=httpx.Timeout(timeout)))

    async def native_models(self) -> list[dict]:
        """LM Studio's native model list (`/api/v1/models`: each model with its loaded instances);
        EndpointMissing on an LM Studio before 0.4."""
        native = await self.json("GET", NATIVE_MODELS)
        return [m for m in native.get("models") or () if isinstance(m, dict)]

    async def unload(self, instance_id: str):
        """Unload one loaded instance (`/api/v1/models/unload`)."""
        await self.json("POST", "/api/v1/models/unload", {"instance_id": instance_id})

    async def json(self, method: str, path: str, body: dict | None = None, *, model: str = "",
                   read_timeout: float | None = None) -> dict:
        """A whole JSON response, status checked."""
        response = await self.open(method, path, body, model=model, read_timeout=read_timeout)
        return await self.read_json(response, path)

    async def read_json(self, response: httpx.Response, path: str) -> dict:
        """The whole JSON body of a response from `open` (closed afterwards)."""
        try:
            async with self.mapped_errors():
                await response.aread()
        finally:
            await response.aclose()
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"LM Studio sent an unreadable answer to {path}: "
                                f"{response.content[:200]!r}") from None

    def events(self, response: httpx.Response) -> EventStream:
        """The JSON events of an SSE response, parsed once, until `[DONE]`. Closes the response."""
        return EventStream(self._event_batches(response))

    async def _event_batches(self, response: httpx.Response) -> AsyncIterator[list[dict]]:
        """The events, a list per network read: what arrived together can be relayed together."""
        try:
            if response.is_stream_consumed:  # a whole JSON answer (checked in `open`): one event
                yield [orjson.loads(response.content)]
                return
            async with self.mapped_errors(), raw_reader(response) as read:
                buffer = b""
                with ReadWatchdog(response, self.timeout.read) as watchdog:
                    while piece := await read():
                        watchdog.touch()
                        *lines, buffer = (buffer + piece).split(b"\n")
                        batch, end = parse_sse_lines(lines)
                        if batch:
                            yield batch
                        if end is _DONE:
                            return
                        if end is not None:
                            raise end
                if parse_sse_line(buffer) is _DONE:
                    return
            raise UpstreamError("LM Studio closed the stream before it was complete")
        finally:
            await response.aclose()

    async def aclose(self):
        await self.transport.aclose()


def _closed_by_peer(exc: Exception) -> bool:
    """The aiohttp transport reports a dropped connection as a connect error; tell them apart."""
    return isinstance(exc.__cause__, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError))


# How LM Studio says a model is not loaded and JIT loading is off. Real LM Studio (when nothing is
# loaded): "No models loaded. Please load a model in the developer page or use the 'lms load' command."
NOT_LOADED_SIGNS = ("not loaded", "no models loaded", "lms load", "jit")


def check_response(response: httpx.Response, model: str = "", upstream_model: str = ""):
    """Raise the right ProxyError for an LM Studio error answer (including 200 + `{"error": ...}`).

    `model` is the name the client asked for; `upstream_model` the LM Studio id it was sent as.
    """
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {"error": response.text[:500]}
    has_error = isinstance(body, dict) and body.get("error")
    if response.status_code < 400 and not has_error:
        return
    message = error_message(body) if has_error else f"HTTP {response.status_code}"
    code = body["error"].get("code") if has_error and isinstance(body["error"], dict) else None
    lowered = message.lower()
    if code == "model_not_found" or (response.status_code == 404 and model and "model" in lowered):
        raise ModelNotFound(model or "?")
    if any(sign in lowered for sign in NOT_LOADED_SIGNS):
        lm_id = upstream_model or model
        raise ModelNotLoaded(f"model '{model}' is not loaded in LM Studio and it will not load it on "
                             f"demand: run `lms load {lm_id}` or enable Just-In-Time loading in "
                             f"LM Studio's server settings ({message})")
    if "unexpected endpoint" in lowered or (response.status_code == 404 and not model):
        raise EndpointMissing(f"this LM Studio does not serve {response.request.url.path}: {message}")
    status = response.status_code if response.status_code >= 400 else 502
    raise UpstreamError(f"LM Studio: {message}", status=status)
