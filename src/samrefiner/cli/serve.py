"""``samrefiner serve label-studio``: a Label Studio ML backend that refines the regions
already in each task (``pip install 'samrefiner[labelstudio]'``; docs/labelstudio.md)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from typing import Any

from samrefiner.cli import CommandError
from samrefiner.cli.arg_types import finite_float, non_negative_int, positive_int
from samrefiner.cli.building import build_refiner
from samrefiner.cli.options import add_refiner_args

log = logging.getLogger("samrefiner.labelstudio")

_DESCRIPTION = (
    "Serve the Label Studio ML-backend protocol (GET /health, POST /setup, /predict, "
    "/webhook). For each task, the regions of its latest annotation or prediction "
    "(brush, polygon, rectangle) are refined and returned as a prediction: brush RLE or "
    "polygons, each region keeping its id and labels, scored by its predicted IoU. The "
    "model is loaded once; see docs/labelstudio.md to connect it."
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve refinement to an annotation tool", description=_DESCRIPTION
    )
    tools = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    ls = tools.add_parser("label-studio", help="Label Studio ML backend", description=_DESCRIPTION)
    server = ls.add_argument_group("server")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 "
        "exposes it: set an API key then)",
    )
    server.add_argument("--port", type=positive_int, default=9090, help="(default: %(default)s)")
    server.add_argument(
        "--api-key",
        default=os.environ.get("SAMREFINER_API_KEY"),
        metavar="KEY",
        help="require KEY on every request: as the basic-auth password Label Studio sends "
        "(Model settings, 'Use authentication', any user name) or 'Authorization: Bearer "
        "KEY' (default: $SAMREFINER_API_KEY, else none)",
    )
    server.add_argument(
        "--max-request-mb",
        type=finite_float,
        default=256.0,
        metavar="MB",
        help="largest request body accepted (default: %(default)s)",
    )
    server.add_argument(
        "--max-tasks",
        type=positive_int,
        default=1000,
        metavar="N",
        help="most tasks in one /predict request (default: %(default)s)",
    )
    work = ls.add_argument_group("tasks")
    work.add_argument(
        "--source",
        choices=("latest", "annotations", "predictions"),
        default="latest",
        help="which labelling of a task is refined: the newest annotation, the newest "
        "prediction, or the newest of both (default: %(default)s)",
    )
    work.add_argument(
        "--output",
        choices=("same", "brush", "polygon"),
        default="same",
        help="write refined masks as the region was drawn (rectangles as brush, else "
        "polygon), or all as brush, or all as polygons, through the labelling config's tag "
        "of that kind (default: %(default)s)",
    )
    work.add_argument(
        "--polygon-tolerance",
        type=finite_float,
        default=1.0,
        metavar="PX",
        help="Douglas-Peucker tolerance of written polygons, in pixels; 0 keeps every "
        "pixel corner (default: %(default)s)",
    )
    work.add_argument(
        "--embedding-slots",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="image embeddings kept in memory, so that tasks of one image are encoded "
        "once (default: %(default)s)",
    )
    images = ls.add_argument_group("images")
    images.add_argument(
        "--label-studio-url",
        default=os.environ.get("LABEL_STUDIO_URL"),
        metavar="URL",
        help="Label Studio's address, to download uploaded and storage images "
        "(default: $LABEL_STUDIO_URL)",
    )
    images.add_argument(
        "--label-studio-api-key",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        metavar="TOKEN",
        help="Label Studio access token for those downloads (default: $LABEL_STUDIO_API_KEY)",
    )
    images.add_argument(
        "--local-files-root",
        default=os.environ.get("LOCAL_FILES_DOCUMENT_ROOT"),
        metavar="DIR",
        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: local-files images are read from "
        "it directly (default: $LOCAL_FILES_DOCUMENT_ROOT)",
    )
    images.add_argument(
        "--max-image-mb",
        type=finite_float,
        default=64.0,
        metavar="MB",
        help="largest image file downloaded (default: %(default)s)",
    )
    add_refiner_args(ls)
    ls.set_defaults(func=run)


def _local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_backend(args: argparse.Namespace) -> Any:
    """The :class:`LabelStudioBackend` the options describe (loads the model)."""
    from samrefiner.integrations.labelstudio.backend import BackendSettings, LabelStudioBackend
    from samrefiner.integrations.labelstudio.images import ImageSource

    for flag, value in (
        ("--max-request-mb", args.max_request_mb),
        ("--max-image-mb", args.max_image_mb),
    ):
        if not value > 0:
            raise CommandError(f"{flag} must be > 0, got {value}")
    try:
        settings = BackendSettings(
            source=args.source,
            output=args.output,
            polygon_tolerance=args.polygon_tolerance,
            embedding_slots=args.embedding_slots,
            max_tasks=args.max_tasks,
        )
        images = ImageSource(
            label_studio_url=args.label_studio_url or None,
            api_key=args.label_studio_api_key or None,
            local_files_root=args.local_files_root or None,
            max_bytes=int(args.max_image_mb * (1 << 20)),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return LabelStudioBackend(build_refiner(args), args.model, settings, images)


def run(args: argparse.Namespace) -> int:
    from samrefiner.extras import MissingExtra, import_extra

    try:
        from samrefiner.integrations.labelstudio.app import create_app

        uvicorn = import_extra("uvicorn", "labelstudio", "samrefiner serve label-studio")
    except MissingExtra as exc:
        raise CommandError(str(exc)) from exc
    if not _local(args.host) and not args.api_key:
        log.warning(
            "listening on %s without --api-key: anyone who reaches this address can use the model",
            args.host,
        )
    backend = build_backend(args)
    app = create_app(
        backend, api_key=args.api_key or None, max_body_bytes=int(args.max_request_mb * (1 << 20))
    )
    print(
        f"samrefiner serve label-studio: {backend.model_version} on http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning"
    )
    return 0
