"""Task images: read from Label Studio's local-files folder, or downloaded from Label
Studio (or any http(s) URL) with its access token, as Label Studio's own ML backends do."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import numpy as np

from samrefiner.io.errors import InputError
from samrefiner.io.images import read_image

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "ImageSource", "ImageSourceError"]

#: Largest image file the backend downloads, by default (bytes).
DEFAULT_MAX_IMAGE_BYTES = 64 << 20


class ImageSourceError(ValueError):
    """A task image that cannot be had: the message names the URL and the problem."""


def _is_jwt(token: str) -> bool:
    """A personal access token (JWT: three base64 parts) goes as ``Bearer``, a legacy
    token as ``Token`` (the rule of Label Studio's SDK)."""
    return token.count(".") == 2


@dataclass(frozen=True)
class ImageSource:
    """Where task images come from.

    Attributes:
        label_studio_url: Label Studio's address (``LABEL_STUDIO_URL``), to resolve
            the ``/data/...`` URLs of uploaded and local-storage files.
        api_key: Label Studio access token (``LABEL_STUDIO_API_KEY``), sent only to
            ``label_studio_url``'s host.
        local_files_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``: a
            ``/data/local-files/?d=PATH`` image is read from ``root/PATH`` when it is
            there (never from outside the root), else downloaded.
        max_bytes: largest file downloaded.
        timeout: seconds a download may take to answer.
    """

    label_studio_url: str | None = None
    api_key: str | None = None
    local_files_root: str | None = None
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.label_studio_url and urlparse(self.label_studio_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError(
                f"the Label Studio URL must start with http:// or https://, got "
                f"{self.label_studio_url!r}"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")

    def _local_file(self, url: str) -> Path | None:
        parsed = urlparse(url)
        if not parsed.path.rstrip("/").endswith("/data/local-files") or not self.local_files_root:
            return None
        names = parse_qs(parsed.query).get("d")
        if not names:
            raise ImageSourceError(f"{url}: a local-files URL without ?d=PATH")
        root = Path(self.local_files_root).resolve()
        path = (root / names[0]).resolve()
        if os.path.commonpath([root, path]) != str(root):
            raise ImageSourceError(f"{url}: the path leaves the local-files root {root}")
        return path if path.is_file() else None

    def _absolute(self, url: str) -> str:
        scheme = urlparse(url).scheme
        if scheme in ("http", "https"):
            return url
        if scheme:
            raise ImageSourceError(
                f"{url}: {scheme}:// images are not read by the backend; serve them through "
                "Label Studio (cloud storage with presigned URLs, or local files)"
            )
        if not self.label_studio_url:
            raise ImageSourceError(
                f"{url}: a Label Studio URL; set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to "
                "download it (or the local-files root for local files)"
            )
        path = url if url.startswith("/") else "/data/" + url.removeprefix("data/")
        return urljoin(self.label_studio_url.rstrip("/") + "/", path.lstrip("/"))

    def _download(self, url: str) -> bytes:
        headers = {"User-Agent": "samrefiner-label-studio-backend"}
        same_host = bool(self.label_studio_url) and (
            urlparse(url).netloc == urlparse(str(self.label_studio_url)).netloc
        )
        if self.api_key and same_host:
            kind = "Bearer" if _is_jwt(self.api_key) else "Token"
            headers["Authorization"] = f"{kind} {self.api_key}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise ImageSourceError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImageSourceError(f"{url}: download failed: {reason}") from exc
        if len(data) > self.max_bytes:
            raise ImageSourceError(f"{url}: the image is larger than {self.max_bytes} bytes")
        return data

    def load(self, url: object) -> np.ndarray:
        """The image at ``url`` as ``H x W x 3`` uint8 RGB.

        Raises:
            ImageSourceError: a URL that is not a string, cannot be resolved or
                downloaded, or an image that cannot be decoded or is too large.
        """
        if not isinstance(url, str) or not url:
            raise ImageSourceError(f"the task's image is not a URL: {url!r}")
        try:
            local = self._local_file(url)
            if local is not None:
                return read_image(local)
            data = self._download(self._absolute(url))
            with tempfile.TemporaryDirectory(prefix="samrefiner-ls-") as folder:
                path = Path(folder) / (Path(urlparse(url).path).name or "image")
                path.write_bytes(data)
                try:
                    return read_image(path)
                except InputError as exc:
                    raise ImageSourceError(str(exc).replace(str(path), url)) from exc
        except InputError as exc:
            raise ImageSourceError(str(exc)) from exc
