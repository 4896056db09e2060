"""The browser playground at ``/ui``: the Vite build in ``frontend/dist`` plus ``config.js``.

``config.js`` is generated per request rather than baked into the build, so one build serves
any deployment and the operator's playground key (``LLMSERVER_UI_KEY``) never lands on disk
next to the assets. The dist folder is looked up on every request: a server started before
``make ui`` serves the playground as soon as the build appears, and a helpful 503 until then.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

import msgspec
from litestar import Response, Router, get
from litestar.params import FromPath
from litestar.response import File

from llmserver.app import paths
from llmserver.app.errors import ErrorBody, ErrorReply

UI_PATH: Final = paths.UI

# Vite names every asset after its content hash, so a given URL never changes meaning.
_ASSET_CACHE: Final = "public, max-age=31536000, immutable"
# The page itself must be revalidated, or a rebuilt UI would keep loading stale asset names.
_PAGE_CACHE: Final = "no-cache"

# The playground needs nothing but its own origin. `form-action 'none'` makes sure no form can
# ever submit (and so put the key into a URL), even if a script fails before preventDefault.
_PAGE_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

_NOT_BUILT_PAGE: Final = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>Playground not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto;
padding: 0 1rem; line-height: 1.5">
<h1>The playground is not built yet</h1>
<p>The server looks for the built playground in <code>{dist}</code> and found no
<code>index.html</code> there. Build it once (needs Node 20+ and npm):</p>
<pre style="padding: 1rem; border: 1px solid #8884; border-radius: 8px">make ui</pre>
<p>which runs <code>npm ci &amp;&amp; npm run build</code> in <code>frontend/</code>. Then reload
this page; no restart is needed. The API at <code>/v1</code> works meanwhile.</p>
</body>
</html>
"""


def config_script(api_base: str, ui_key: str | None) -> str:
    """The body of ``/ui/config.js``: JSON is valid JavaScript, so encoding it is escaping it."""
    config = msgspec.json.encode({"apiBase": api_base, "uiKey": ui_key}).decode()
    return f"window.LLMSERVER_CONFIG = {config};\n"


class _Unservable(Exception):
    """A path that can name no file under the root, however the build changes."""


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when that is a file under ``root``; None when it is absent.

    Raises ``_Unservable`` for a path that leaves ``root`` (``..``, encoded slashes, a
    symlink out) or that the file system refuses outright (a NUL byte, a name over
    NAME_MAX or PATH_MAX): hostile or broken URLs, which get a 404 rather than a 500.
    """
    root = root.resolve()
    try:
        candidate = (root / relative.lstrip("/")).resolve()
        if not candidate.is_relative_to(root):
            raise _Unservable(relative)
        return candidate if candidate.is_file() else None
    except (ValueError, OSError):  # ValueError: embedded NUL; OSError: ENAMETOOLONG and kin
        raise _Unservable(relative) from None


def _not_found(kind: str, relative: str) -> Response[ErrorBody]:
    return ErrorReply.of(
        404, f"No {kind} {relative.lstrip('/')[:200]!r} in the playground build.", code="not_found"
    ).response()


def _file(path: Path, cache_control: str, headers: dict[str, str] | None = None) -> File:
    # Litestar guesses the type only from an explicit filename; browsers refuse module
    # scripts served as octet-stream under nosniff, so name the type here.
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return File(
        path,
        content_disposition_type="inline",
        media_type=media_type,
        headers={"cache-control": cache_control, "x-content-type-options": "nosniff"}
        | (headers or {}),
    )


def ui_router(dist_dir: Path, ui_key: str | None, api_base: str = paths.API) -> Router:
    """Routes serving the playground build from ``dist_dir`` under ``/ui``."""
    script = config_script(api_base, ui_key)

    def not_built() -> Response[str]:
        return Response(
            _NOT_BUILT_PAGE.format(dist=dist_dir),
            status_code=503,
            media_type="text/html",
            headers={"cache-control": "no-store", "retry-after": "30"},
        )

    def page(relative: str) -> File | Response[str] | Response[ErrorBody]:
        """A file from dist if there is one at that path, else index.html (client routes)."""
        try:
            found = _inside(dist_dir, relative) if relative.strip("/") else None
        except _Unservable:
            return _not_found("page", relative)
        index = _inside(dist_dir, "index.html")
        if index is None:
            return not_built()
        if found is not None and found != index:
            return _file(found, _PAGE_CACHE)
        return _file(index, _PAGE_CACHE, _PAGE_HEADERS)

    @get("/config.js", sync_to_thread=False, include_in_schema=False)
    def ui_config() -> Response[str]:
        return Response(
            script,
            media_type="text/javascript",  # Litestar adds "; charset=utf-8" to text/*
            headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
        )

    @get("/assets/{asset:path}", sync_to_thread=False, include_in_schema=False)
    def ui_asset(asset: FromPath[str]) -> File | Response[ErrorBody]:
        try:
            found = _inside(dist_dir / "assets", asset)
        except _Unservable:
            found = None
        if found is None:
            return _not_found("asset", asset)
        return _file(found, _ASSET_CACHE)

    @get("/", sync_to_thread=False, include_in_schema=False)
    def ui_index() -> File | Response[str] | Response[ErrorBody]:
        return page("")

    @get("/{rest:path}", sync_to_thread=False, include_in_schema=False)
    def ui_page(rest: FromPath[str]) -> File | Response[str] | Response[ErrorBody]:
        return page(rest)

    return Router(path=UI_PATH, route_handlers=[ui_config, ui_asset, ui_index, ui_page])
