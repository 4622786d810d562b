"""Requests at the edges of HTTP, on the control port and the plugin socket.

Forged log lines, bodies nested too deeply, chunked, oversized or untyped
bodies, bad query parameters, and wrong methods on the plain views.
"""

import http.client
import json
import time
import uuid

import pytest
import requests

from tests.plugin_client import PluginClient, UnixConnection

CONTROL_POSTS = [
    "/resources/provision",
    "/resources/deprovision",
    "/resources/snapshot",
    "/resources/restore",
    "/volumes/snapshot",
    "/volumes/restore",
]
PLUGIN_CALLS = ["Create", "Remove", "Mount", "Unmount", "Path", "Get", "List"]
DEEP = b"[" * 100000


@pytest.fixture(scope="module")
def plugin(stack):
    return PluginClient(stack.plugin_socket)


def raw_control(stack, method, path, body=None, headers=None, chunked=False):
    """(status, headers, decoded JSON) of one request sent exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.ports["control"], 60)
    try:
        connection.request(
            method,
            path,
            body=body,
            headers={**stack.headers(), **(headers or {})},
            encode_chunked=chunked,
        )
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def raw_plugin(stack, path, body, chunked=False):
    connection = UnixConnection(stack.plugin_socket, 60)
    try:
        headers = {"Host": ""}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        connection.request(
            "POST", path, body=body, headers=headers, encode_chunked=chunked
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def api_log(stack) -> list[str]:
    return (stack.data_dir / "log" / "api.log").read_text().splitlines()


# --- log lines --------------------------------------------------------------------


def test_access_log_escapes_control_characters(stack):
    marker = uuid.uuid4().hex[:8]
    forged = f"2026-01-01 00:00:00,000 INFO corestore.access [req:x] GET /{marker} 200"
    status, _, _ = raw_control(
        stack,
        "GET",
        f"/nothing-{marker}%0a" + forged.replace(" ", "%20") + "%1b[31m",
    )
    assert status == 404

    for _ in range(50):
        lines = [line for line in api_log(stack) if marker in line]
        if lines:
            break
        time.sleep(0.1)
    assert len(lines) == 1, lines
    assert f"/nothing-{marker}%0A2026-01-01 00:00:00" in lines[0]
    assert "200%1B[31m 404" in lines[0]
    assert "\x1b" not in "\n".join(api_log(stack))


# --- bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("path", CONTROL_POSTS)
@pytest.mark.parametrize("content_type", ["application/json", None])
def test_deeply_nested_json_is_invalid_json(stack, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, body = raw_control(stack, "POST", path, DEEP, headers)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("call", PLUGIN_CALLS)
def test_deeply_nested_json_on_the_plugin_socket(plugin, call):
    status, body = plugin.raw("POST", f"/VolumeDriver.{call}", DEEP)
    assert status == 200
    assert body["Err"] == "request body is not valid JSON"


@pytest.mark.parametrize("path", CONTROL_POSTS)
def test_json_without_content_type_is_read(stack, path):
    # Read as JSON: the serializer names the missing field, no 415.
    status, _, body = raw_control(stack, "POST", path, b"{}")
    assert status == 400, body
    assert body["error"]["code"] == "invalid"
    assert body["error"]["field"]


@pytest.mark.parametrize("path", ["/resources/provision", "/volumes/snapshot"])
def test_chunked_body_is_refused_with_411(stack, path):
    chunks = iter([b'{"serviceId": ', b'"x"}'])
    status, _, body = raw_control(
        stack,
        "POST",
        path,
        chunks,
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert status == 411, body
    assert body["error"]["code"] == "length_required"


def test_chunked_body_on_the_plugin_socket(stack, plugin):
    name = f"chunk-{uuid.uuid4().hex[:6]}"
    body = iter([b'{"Name": ', json.dumps(name).encode(), b"}"])
    status, answer = raw_plugin(stack, "/VolumeDriver.Create", body, chunked=True)
    assert status == 411
    assert "Content-Length" in answer["Err"]
    assert plugin.call("Get", {"Name": name})["Err"]


def test_too_large_body_on_the_plugin_socket(stack):
    # Refused on the headers alone: the body is never sent.
    connection = UnixConnection(stack.plugin_socket, 60)
    try:
        connection.putrequest("POST", "/VolumeDriver.Create", skip_host=True)
        connection.putheader("Host", "")
        connection.putheader("Content-Length", str(1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 413
    assert set(answer) == {"Err"} and "over" in answer["Err"]


@pytest.mark.parametrize("limit", ["²", "٣", "-1", "1.5", "x"])
def test_jobs_limit_must_be_an_ascii_integer(stack, limit):
    response = stack.get("/jobs", params={"limit": limit})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "limit"


# --- plain views ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
def test_wrong_method_on_health_and_metrics(stack, path, method):
    response = requests.request(
        method, stack.url + path, headers=stack.headers(), timeout=30
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/docs/redoc"])
def test_schema_and_docs_are_public(stack, path):
    response = requests.get(stack.url + path, timeout=30)
    assert response.status_code == 200
