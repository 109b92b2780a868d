"""The Label Studio ML-backend HTTP protocol, served by Starlette (``samrefiner[labelstudio]``).

Routes, as Label Studio calls them (``label_studio/ml/api_connector.py``):

* ``GET /health`` (and ``GET /``): ``{"status": "UP", "model_class": ..., "model_version": ...}``;
  answered at once, also while a task is being refined.
* ``POST /setup``: ``{"model_version": ...}`` (the project's labelling config is checked).
* ``GET /versions``: ``{"versions": [model_version]}`` (the model settings' version list).
* ``POST /predict``: ``{"results": [one prediction per task]}``, see
  :class:`~samrefiner.integrations.labelstudio.backend.LabelStudioBackend`.
* ``POST /webhook``: annotation events are logged and acknowledged (no training).

Requests run one at a time on the model, in a worker thread. A body larger than
``max_body_bytes`` is refused (413), a body that is not JSON is a 400, both with an
``error``. With ``api_key`` set, every request must carry it: as the password of HTTP
basic auth (what Label Studio's "Use authentication" sends; any user name) or as
``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from typing import Any

from samrefiner.integrations._common import import_extra
from samrefiner.integrations.labelstudio.backend import LabelStudioBackend
from samrefiner.io.errors import InputError

starlette_applications = import_extra("starlette.applications", "labelstudio")
starlette_concurrency = import_extra("starlette.concurrency", "labelstudio")
starlette_responses = import_extra("starlette.responses", "labelstudio")
starlette_routing = import_extra("starlette.routing", "labelstudio")

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WEBHOOK_EVENTS", "create_app"]

log = logging.getLogger("samrefiner.labelstudio")

#: Largest request body accepted, by default (bytes): brush RLE of many regions is large.
DEFAULT_MAX_BODY_BYTES = 256 << 20
#: Webhook actions Label Studio sends an ML backend (logged; no training here).
WEBHOOK_EVENTS = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATION_DELETED",
    "START_TRAINING",
)


def _error(status: int, message: str, route: str | None = None) -> Any:
    """An error response; logged as a warning when ``route`` names the request's route."""
    if route is not None:
        log.warning("%s: %s", route, message)
    return starlette_responses.JSONResponse({"error": message}, status_code=status)


def _authorised(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (basic auth password, or a
    ``Bearer`` / ``Token`` credential)."""
    if not header or " " not in header:
        return False
    scheme, _, credential = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        credential = decoded.partition(":")[2]
    elif scheme not in ("bearer", "token"):
        return False
    return hmac.compare_digest(credential.strip().encode(), key.encode())


def create_app(
    backend: LabelStudioBackend,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Any:
    """The Starlette application serving ``backend`` (run it with any ASGI server, e.g.
    ``uvicorn.run(app)``)."""
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be > 0, got {max_body_bytes}")

    async def read_json(request: Any) -> tuple[Any, Any]:
        """(body, None) or (None, error response)."""
        route = request.url.path
        too_large = f"request body over the {max_body_bytes}-byte limit"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return None, _error(413, too_large, route)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return None, _error(413, too_large, route)
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            return None, _error(400, f"request body is not JSON: {exc}", route)
        if not isinstance(body, dict):
            return None, _error(400, "request body must be a JSON object", route)
        return body, None

    async def health(request: Any) -> Any:
        return starlette_responses.JSONResponse(
            {
                "status": "UP",
                "model_class": "samrefiner",
                "model_version": backend.model_version,
            }
        )

    async def versions(request: Any) -> Any:
        return starlette_responses.JSONResponse({"versions": [backend.model_version]})

    async def setup(request: Any) -> Any:
        body, problem = await read_json(request)
        if problem is not None:
            return problem
        try:
            return starlette_responses.JSONResponse(backend.setup(body))
        except InputError as exc:
            return _error(400, str(exc), "/setup")

    async def predict(request: Any) -> Any:
        body, problem = await read_json(request)
        if problem is not None:
            return problem
        try:
            answer = await starlette_concurrency.run_in_threadpool(backend.predict, body)
        except InputError as exc:
            return _error(400, str(exc), "/predict")
        return starlette_responses.JSONResponse(answer)

    async def webhook(request: Any) -> Any:
        body, problem = await read_json(request)
        if problem is not None:
            return problem
        action = body.get("action")
        project = body.get("project")
        project_id = project.get("id") if isinstance(project, dict) else project
        if action not in WEBHOOK_EVENTS:
            log.info("/webhook: ignored event %r (project %s)", action, project_id)
            return starlette_responses.JSONResponse({"status": "Unknown event"})
        log.info("/webhook: %s (project %s); the backend does not train", action, project_id)
        return starlette_responses.JSONResponse(
            {"status": "ok", "result": "logged; samrefiner does not train"}, status_code=201
        )

    routes = [
        starlette_routing.Route("/", health, methods=["GET"]),
        starlette_routing.Route("/health", health, methods=["GET"]),
        starlette_routing.Route("/versions", versions, methods=["GET"]),
        starlette_routing.Route("/setup", setup, methods=["POST"]),
        starlette_routing.Route("/predict", predict, methods=["POST"]),
        starlette_routing.Route("/webhook", webhook, methods=["POST"]),
    ]
    app = starlette_applications.Starlette(routes=routes)
    if api_key is None:
        return app

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            if not _authorised(headers.get("authorization"), api_key):
                response = _error(401, "missing or wrong API key", scope.get("path"))
                response.headers["WWW-Authenticate"] = 'Basic realm="samrefiner"'
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
