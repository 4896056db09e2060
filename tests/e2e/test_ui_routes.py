"""The /ui routes over HTTP, against a real (tiny) dist folder written per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from llmserver.app.routes.ui import ui_router

INDEX = '<!doctype html><script src="/ui/config.js"></script><div id="root"></div>'


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("outside dist")
    return tmp_path


def client(dist: Path, ui_key: str | None = None) -> TestClient[Litestar]:
    return TestClient(Litestar(route_handlers=[ui_router(dist, ui_key)]))


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/chat/42"])
def test_index_for_root_and_client_routes(dist: Path, path: str) -> None:
    with client(dist) as c:
        response = c.get(path)
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "form-action 'none'" in response.headers["content-security-policy"]


def test_assets_are_immutable(dist: Path) -> None:
    with client(dist) as c:
        response = c.get("/ui/assets/index-abc123.js")
        missing = c.get("/ui/assets/index-gone.js")
    assert response.status_code == 200
    assert response.text == "console.log(1)"
    assert "javascript" in response.headers["content-type"]
    assert "immutable" in response.headers["cache-control"]
    assert missing.status_code == 404


def test_root_files_are_served_as_themselves(dist: Path) -> None:
    with client(dist) as c:
        response = c.get("/ui/favicon.svg")
    assert response.status_code == 200
    assert response.text == "<svg/>"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/assets/../../secret.txt",
        "/ui/assets/%2e%2e/%2e%2e/secret.txt",
        "/ui/../secret.txt",
        "/ui/%2e%2e%2fsecret.txt",
        "/ui/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/ui/outside/secret.txt",
    ],
)
def test_no_path_traversal(dist: Path, path: str) -> None:
    (dist / "outside").symlink_to(dist.parent)
    with client(dist) as c:
        response = c.get(path)
    assert "outside dist" not in response.text
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/ui/%00",
        "/ui/a%00.js",
        "/ui/assets/%00",
        "/ui/assets/..%00/x",
        "/ui/" + "n" * 300,
        "/ui/assets/" + "n" * 300,
        "/ui/" + "d/" * 2100,
        "/ui/assets/index-gone.js",
    ],
    ids=[
        "nul",
        "nul-in-name",
        "asset-nul",
        "asset-dotdot-nul",
        "long-name",
        "long-asset",
        "long-path",
        "missing-asset",
    ],
)
def test_unservable_paths_are_404_in_the_error_shape(dist: Path, path: str) -> None:
    """A NUL byte or an over-long name was a 500 (ValueError, OSError from the file system)."""
    with client(dist) as c:
        response = c.get(path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("not_found_error", "not_found")
    assert "playground build" in error["message"]


@pytest.mark.parametrize("ui_key", [None, "llms_playground0_s3cret"])
def test_config_js(dist: Path, ui_key: str | None) -> None:
    with client(dist, ui_key) as c:
        response = c.get("/ui/config.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    # Exactly this: it once said charset=utf-8 twice.
    assert response.headers.get_list("content-type") == ["text/javascript; charset=utf-8"]
    prefix = "window.LLMSERVER_CONFIG = "
    assert response.text.startswith(prefix)
    assert json.loads(response.text.removeprefix(prefix).rstrip().rstrip(";")) == {
        "apiBase": "/v1",
        "uiKey": ui_key,
    }


def test_config_js_escapes_the_key(dist: Path) -> None:
    with client(dist, 'k"; alert(1); //') as c:
        body = c.get("/ui/config.js").text
    assert '"uiKey":"k\\"; alert(1); //"' in body


def test_missing_build_explains_make_ui(tmp_path: Path) -> None:
    with client(tmp_path / "dist") as c:
        page = c.get("/ui")
        config = c.get("/ui/config.js")
        hostile = c.get("/ui/%00")
    assert page.status_code == 503
    assert hostile.status_code == 404
    assert "make ui" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert config.status_code == 200


def test_build_appearing_later_is_served_without_restart(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    with client(dist) as c:
        assert c.get("/ui/").status_code == 503
        dist.mkdir()
        (dist / "index.html").write_text(INDEX)
        assert c.get("/ui/").status_code == 200
