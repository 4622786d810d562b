"""The operator's side of a running node: metrics, admin, Flower, OpenAPI, logs.

One stack for the module, with the operator account, Flower and JSON logs on.
Every answer the tests receive is kept, and the last test scans those answers
and every log file of the stack for the secrets the run created.
"""

import json
import re
import secrets
import subprocess
import sys
import time

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import (
    RequestsOpenAPIRequest,
    RequestsOpenAPIResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from corestore_project import derive
from tests.plugin_client import PluginClient
from tests.stackrunner import ROOT, Stack

ADMIN_PASSWORD = "adm-" + secrets.token_urlsafe(18)
FLOWER_PASSWORD = "flw-" + secrets.token_urlsafe(18)

# Answers that hand out tenant secrets on purpose (provision) are not scanned;
# every other answer is.
ANSWERS: list[tuple[str, str]] = []
TENANT_SECRETS: list[str] = []
SERVICE_IDS: list[str] = []


def keep(response: requests.Response, secret_bearing=False) -> requests.Response:
    if not secret_bearing:
        ANSWERS.append((response.request.url, response.text))
    return response


@pytest.fixture(scope="module")
def ops():
    node = Stack(
        env={
            "CORESTORE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CORESTORE_FLOWER_BASIC_AUTH": f"operator:{FLOWER_PASSWORD}",
            "CORESTORE_LOG_FORMAT": "json",
        }
    )
    try:
        node.start()
        yield node
    finally:
        node.cleanup()


@pytest.fixture(scope="module")
def plugin(ops):
    return PluginClient(ops.plugin_socket)


@pytest.fixture(scope="module")
def service(ops):
    """A provisioned service with a database and a bucket."""
    service_id = f"ops-{secrets.token_hex(4)}"
    response = ops.post(
        "/resources/provision",
        {
            "serviceId": service_id,
            "serviceName": "ops-check",
            "capabilities": ["database", "objectstorage"],
        },
    )
    keep(response, secret_bearing=True)
    assert response.status_code == 201, response.text
    SERVICE_IDS.append(service_id)
    env = response.json()["env"]
    TENANT_SECRETS.append(env["AWS_SECRET_ACCESS_KEY"])
    password = re.match(r"mongodb://[^:]+:([^@]+)@", env["MONGODB_URI"])
    TENANT_SECRETS.append(password.group(1))
    return service_id


def scrape(node) -> dict:
    """{(name, labels as a sorted tuple): value} of one /metrics answer."""
    response = keep(node.get("/metrics"))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_job(node, job_id, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = keep(node.get(f"/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']}")


def admin_session(node) -> requests.Session:
    """Logged in through the real login form, as an operator would."""
    session = requests.Session()
    login = keep(session.get(f"{node.url}/admin/login/", timeout=30))
    assert login.status_code == 200
    answer = keep(
        session.post(
            f"{node.url}/admin/login/?next=/admin/",
            data={
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
                "next": "/admin/",
            },
            timeout=30,
        )
    )
    assert answer.status_code == 200 and answer.url.endswith("/admin/"), answer.url
    return session


def admin_model_urls(session, node) -> list[str]:
    index = keep(session.get(f"{node.url}/admin/", timeout=30)).text
    links = set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index))
    return sorted(links)


# --- metrics -----------------------------------------------------------------


def test_metrics_need_the_token(ops):
    response = keep(requests.get(f"{ops.url}/metrics", timeout=30))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_metrics_show_engines_and_http_traffic(ops):
    keep(requests.get(f"{ops.url}/health", timeout=30))
    samples = scrape(ops)

    for component in ("redis", "database", "objectstorage", "worker", "volumeplugin"):
        assert value(samples, "corestore_component_up", component=component) == 1
    assert value(samples, "corestore_process_running", process="api") == 1
    assert (
        value(
            samples,
            "corestore_engine_info",
            capability="database",
            engine="secantus",
            embedded="true",
        )
        == 1
    )
    health_ok = value(
        samples,
        "corestore_http_requests_total",
        method="GET",
        route="/health",
        status="200",
    )
    assert health_ok >= 1

    keep(requests.get(f"{ops.url}/health", timeout=30))
    later = scrape(ops)
    assert (
        value(
            later,
            "corestore_http_requests_total",
            method="GET",
            route="/health",
            status="200",
        )
        == health_ok + 1
    )
    assert (
        value(
            later,
            "corestore_http_request_duration_seconds_count",
            method="GET",
            route="/health",
        )
        >= health_ok + 1
    )


def test_metrics_move_with_services_volumes_mounts_and_snapshots(ops, plugin):
    before = scrape(ops)

    service_id = f"metrics-{secrets.token_hex(4)}"
    provision = ops.post(
        "/resources/provision",
        {
            "serviceId": service_id,
            "serviceName": "metrics",
            "capabilities": ["database", "objectstorage"],
        },
    )
    keep(provision, secret_bearing=True)
    assert provision.status_code == 201, provision.text
    SERVICE_IDS.append(service_id)
    TENANT_SECRETS.append(provision.json()["env"]["AWS_SECRET_ACCESS_KEY"])

    volume = f"metrics-{secrets.token_hex(3)}"
    plugin.create(volume)
    mountpoint = plugin.mount(volume, "c0ffee")["Mountpoint"]
    with open(f"{mountpoint}/payload.bin", "wb") as handle:
        handle.write(b"x" * 50_000)

    snapshot = keep(ops.post("/volumes/snapshot", {"name": volume}))
    assert snapshot.status_code == 200, snapshot.text
    after = scrape(ops)

    assert value(after, "corestore_services", status="active") == (
        value(before, "corestore_services", status="active") + 1
    )
    assert value(after, "corestore_active_mounts") == (
        value(before, "corestore_active_mounts") + 1
    )
    assert value(after, "corestore_volume_mounts", volume=volume) == 1
    assert value(after, "corestore_volume_bytes", volume=volume) >= 50_000
    assert value(after, "corestore_snapshots", capability="volume") == (
        value(before, "corestore_snapshots", capability="volume") + 1
    )
    original = "corestore_snapshot_original_bytes"
    assert value(after, original, capability="volume") >= (
        value(before, original, capability="volume") + 50_000
    )
    assert value(after, "corestore_snapshot_stored_bytes", capability="volume") > 0
    assert value(after, "corestore_archive_bytes") > 0
    done = dict(kind="snapshot_volume", status="succeeded")
    assert value(after, "corestore_jobs", **done) == (
        value(before, "corestore_jobs", **done) + 1
    )
    durations = dict(kind="snapshot_volume", outcome="succeeded")
    assert value(after, "corestore_job_duration_seconds_count", **durations) == (
        value(before, "corestore_job_duration_seconds_count", **durations) + 1
    )

    plugin.unmount(volume, "c0ffee")
    assert value(scrape(ops), "corestore_volume_mounts", volume=volume) == 0


# --- admin ---------------------------------------------------------------------


def test_admin_sends_anonymous_users_to_the_login_page(ops, service):
    session = admin_session(ops)
    urls = ["/admin/", *admin_model_urls(session, ops)]

    for url in urls:
        response = keep(requests.get(ops.url + url, allow_redirects=False, timeout=30))
        assert response.status_code == 302, url
        assert "/admin/login/" in response.headers["Location"]


def test_admin_shows_every_model_to_the_operator(ops, service, plugin):
    plugin.create(f"admin-{secrets.token_hex(3)}")
    session = admin_session(ops)
    urls = admin_model_urls(session, ops)
    expected = {
        "/admin/provisioning/service/",
        "/admin/provisioning/resource/",
        "/admin/volumes/volume/",
        "/admin/volumes/volumemount/",
        "/admin/snapshots/job/",
        "/admin/snapshots/snapshot/",
    }
    assert expected <= set(urls)

    for url in urls:
        listing = keep(session.get(ops.url + url, timeout=60))
        assert listing.status_code == 200, url
        # The first row's page, when there is one.
        rows = re.findall(rf'href="({re.escape(url)}[^"/]+/change/)"', listing.text)
        if rows:
            detail = keep(session.get(ops.url + rows[0], timeout=60))
            assert detail.status_code == 200, rows[0]
        search = keep(session.get(ops.url + url, params={"q": "x"}, timeout=60))
        assert search.status_code == 200, url


def run_admin_action(session, node, changelist, action, pk):
    listing = keep(session.get(node.url + changelist, timeout=30))
    assert listing.status_code == 200
    return keep(
        session.post(
            node.url + changelist,
            data={
                "action": action,
                "_selected_action": [str(pk)],
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            timeout=60,
        )
    )


def latest_job(node, target) -> dict:
    jobs = keep(node.get("/jobs", params={"target": target})).json()["jobs"]
    assert jobs, f"no job for {target}"
    return jobs[0]


def test_admin_snapshots_a_volume_now(ops, plugin):
    volume = f"adminsnap-{secrets.token_hex(3)}"
    plugin.create(volume)
    session = admin_session(ops)
    listing = keep(
        session.get(f"{ops.url}/admin/volumes/volume/", params={"q": volume})
    )
    pk = re.search(r'name="_selected_action" value="(\d+)"', listing.text).group(1)

    answer = run_admin_action(
        session, ops, "/admin/volumes/volume/", "snapshot_volumes_now", pk
    )

    assert answer.status_code == 200
    assert "queued" in answer.text
    job = wait_for_job(ops, latest_job(ops, volume)["id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "snapshot_volume"
    snapshots = keep(ops.get("/snapshots", params={"resourceName": volume})).json()
    assert any(s["resourceName"] == volume for s in snapshots["snapshots"])


def test_admin_snapshots_a_service_now_and_shows_the_job_log(ops, service):
    session = admin_session(ops)
    listing = keep(
        session.get(f"{ops.url}/admin/provisioning/service/", params={"q": service})
    )
    pk = re.search(r'name="_selected_action" value="(\d+)"', listing.text).group(1)

    answer = run_admin_action(
        session, ops, "/admin/provisioning/service/", "snapshot_services_now", pk
    )

    assert answer.status_code == 200
    job = wait_for_job(ops, latest_job(ops, service)["id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "snapshot_resources"

    log_page = run_admin_action(
        session, ops, "/admin/snapshots/job/", "view_job_logs", job["id"]
    )
    assert log_page.status_code == 200
    assert "started (attempt 1)" in log_page.text


# --- Flower --------------------------------------------------------------------


def test_flower_needs_credentials_and_lists_corestore_tasks(ops, plugin):
    volume = f"flower-{secrets.token_hex(3)}"
    plugin.create(volume)
    assert keep(ops.post("/volumes/snapshot", {"name": volume})).status_code == 200
    flower = f"http://127.0.0.1:{ops.ports['flower']}"
    assert keep(requests.get(f"{flower}/", timeout=30)).status_code == 401
    wrong = requests.get(f"{flower}/", auth=("operator", "wrong"), timeout=30)
    assert keep(wrong).status_code == 401

    # Flower learns of tasks from the worker's events, a moment after the fact.
    ours = []
    deadline = time.monotonic() + 60
    while not ours and time.monotonic() < deadline:
        response = keep(
            requests.get(
                f"{flower}/api/tasks",
                auth=("operator", FLOWER_PASSWORD),
                timeout=30,
            )
        )
        assert response.status_code == 200
        ours = [
            task
            for task in response.json().values()
            if task["name"] == "snapshots.snapshot_volume"
            and task["state"] == "SUCCESS"
            # The arguments name the job's kind and target, readable at a glance.
            and f"snapshot_volume of '{volume}'" in (task["args"] or "")
        ]
        time.sleep(0.5)

    assert ours, f"Flower lists no finished snapshot of {volume}"
    workers = requests.get(
        f"{flower}/api/workers", auth=("operator", FLOWER_PASSWORD), timeout=60
    )
    assert keep(workers).status_code == 200


def test_flower_stays_off_without_credentials_and_says_so(stack):
    assert "flower is off" in stack.output_path.read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{stack.ports['flower']}/", timeout=5)


# --- OpenAPI -------------------------------------------------------------------


def test_every_endpoint_answers_as_the_openapi_schema_says(ops, plugin, service):
    schema = keep(requests.get(f"{ops.url}/openapi.json", timeout=30)).json()
    openapi = OpenAPI.from_dict(schema)
    for page in ("/docs", "/docs/redoc"):
        docs = keep(requests.get(ops.url + page, timeout=30))
        assert docs.status_code == 200, page
        # The UI's assets come from this node (whitenoise), not from a CDN.
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.text)
        assert assets, page
        for asset in assets:
            assert requests.get(ops.url + asset, timeout=30).status_code == 200

    volume = f"openapi-{secrets.token_hex(3)}"
    plugin.create(volume)
    seen = set()

    def check(method, path, template, expect, body=None, **kwargs):
        headers = kwargs.pop("headers", ops.headers())
        response = requests.request(
            method, ops.url + path, json=body, headers=headers, timeout=300, **kwargs
        )
        keep(response, secret_bearing=template == "/resources/provision")
        assert response.status_code == expect, (path, response.text)
        if expect < 400:
            # What the tests send is what the schema says a client may send.
            openapi.validate_request(RequestsOpenAPIRequest(response.request))
        openapi.validate_response(
            RequestsOpenAPIRequest(response.request),
            RequestsOpenAPIResponse(response),
        )
        seen.add((method.lower(), template))
        return response

    check("GET", "/health", "/health", 200, headers={})
    check("GET", "/metrics", "/metrics", 200)
    check("GET", "/metrics", "/metrics", 401, headers={})
    fresh = {
        "serviceId": f"openapi-{secrets.token_hex(4)}",
        "serviceName": "openapi",
        "capabilities": ["objectstorage"],
    }
    SERVICE_IDS.append(fresh["serviceId"])
    check("POST", "/resources/provision", "/resources/provision", 201, fresh)
    check("POST", "/resources/provision", "/resources/provision", 200, fresh)
    check("POST", "/resources/provision", "/resources/provision", 400, {})
    check("GET", "/resources", "/resources", 200)
    snapshots = check(
        "POST",
        "/resources/snapshot",
        "/resources/snapshot",
        200,
        {"serviceId": service, "snapshotName": "openapi"},
    ).json()["snapshots"]
    check(
        "POST",
        "/resources/restore",
        "/resources/restore",
        200,
        {"serviceId": service, "snapshots": snapshots},
    )
    check(
        "POST",
        "/resources/snapshot",
        "/resources/snapshot",
        404,
        {"serviceId": "nobody"},
    )
    check("GET", "/volumes", "/volumes", 200)
    volume_snapshot = check(
        "POST",
        "/volumes/snapshot",
        "/volumes/snapshot",
        200,
        {"name": volume, "snapshotName": "openapi"},
    ).json()
    accepted = check(
        "POST",
        "/volumes/snapshot",
        "/volumes/snapshot",
        202,
        {"name": volume},
        headers=ops.headers(Prefer="respond-async"),
    ).json()
    wait_for_job(ops, accepted["job"]["id"])
    check(
        "POST",
        "/volumes/restore",
        "/volumes/restore",
        200,
        {"name": volume, "snapshotId": volume_snapshot["snapshotId"]},
    )
    check("GET", "/snapshots", "/snapshots", 200)
    check("GET", "/jobs", "/jobs", 200)
    job_id = accepted["job"]["id"]
    check("GET", f"/jobs/{job_id}", "/jobs/{job_id}", 200)
    check("GET", "/jobs/00000000-0000-0000-0000-000000000000", "/jobs/{job_id}", 404)
    check("GET", f"/volumes/{volume}", "/volumes/{name}", 200)
    check("GET", "/volumes/nothing-here", "/volumes/{name}", 404)
    check("GET", f"/resources/{service}", "/resources/{service_id}", 200)
    check("GET", "/resources", "/resources", 401, headers={})
    check("POST", "/resources/deprovision", "/resources/deprovision", 200, fresh)
    check("POST", "/resources/deprovision", "/resources/deprovision", 404, fresh)

    for path, operations in schema["paths"].items():
        for method in operations:
            if method in ("get", "post", "put", "patch", "delete"):
                assert (method, path) in seen, f"{method.upper()} {path} untested"


def test_openapi_schema_generates_without_warnings(ops):
    """drf-spectacular warns when it has to guess a type: nothing is guessed."""
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--format",
            "openapi-json",
        ],
        cwd=ROOT,
        env=ops.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["paths"]) >= {"/health", "/metrics"}


# --- deployment files ------------------------------------------------------------


def test_compose_documents_every_setting():
    """compose.yaml is where operators look up the environment: keep it whole."""
    settings_source = (ROOT / "corestore_project" / "settings.py").read_text()
    names = set(re.findall(r'"(CORESTORE_[A-Z0-9_]+)"', settings_source))
    internal = {"CORESTORE_URLCONF"}  # set by the volume plugin's WSGI module
    compose = (ROOT / "compose.yaml").read_text()

    missing = sorted(name for name in names - internal if name not in compose)

    assert not missing, f"compose.yaml does not mention {missing}"
    assert "DATABASE_URL" in compose


def test_image_pins_and_checks_every_download():
    dockerfile = (ROOT / "Dockerfile").read_text()
    downloads = re.findall(r"curl -fsSL -o (\S+)", dockerfile)

    assert sorted(downloads) == ["minio", "mongodb.tgz", "restic.bz2"]
    for name in downloads:
        assert re.search(rf'echo "\$\{{\w+_SHA256\}}  {re.escape(name)}"', dockerfile)
    for arg in ("MONGODB_SHA256", "MINIO_SHA256", "RESTIC_SHA256"):
        assert re.search(rf"ARG {arg}=[0-9a-f]{{64}}\n", dockerfile), arg
    assert "scripts/install-deps.sh" in dockerfile
    assert 'VOLUME ["/data/corestore"]' in dockerfile
    assert re.search(r"EXPOSE 3000 9000 27017", dockerfile)
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile


# --- logs ------------------------------------------------------------------------


def test_logs_are_json_lines_with_request_and_job_ids(ops, plugin):
    keep(ops.get("/resources", headers={"X-Request-Id": "opsreq123"}))
    volume = f"logs-{secrets.token_hex(3)}"
    plugin.create(volume)
    snapshot = ops.post(
        "/volumes/snapshot", {"name": volume}, headers={"X-Request-Id": "opsjob456"}
    )
    assert keep(snapshot).status_code == 200
    time.sleep(0.5)
    log_dir = ops.data_dir / "log"

    # corestore's own processes; the engines (redis, mongod, rclone, MinIO)
    # and supervisord keep their own formats.
    logs = {}
    for name in ("api", "worker", "volumeplugin", "flower", "s3gateway"):
        lines = (log_dir / f"{name}.log").read_text().splitlines()
        logs[name] = [json.loads(line) for line in lines if line.strip()]
        assert logs[name], name
        for entry in logs[name]:
            assert {"time", "level", "logger", "context", "message"} <= set(entry)

    assert any(
        e["logger"] == "corestore.access"
        and e["context"] == "req:opsreq123"
        and "GET /resources 200" in e["message"]
        for e in logs["api"]
    )
    assert any(e["context"].startswith("job:") for e in logs["worker"])
    # The worker names the request that queued a job, and the job.
    assert any(
        "sent by req:opsjob456" in e["message"] and f"of '{volume}'" in e["message"]
        for e in logs["worker"]
    )


def test_json_access_line_escapes_control_characters(ops):
    marker = secrets.token_hex(4)
    assert keep(ops.get(f"/forged-{marker}%0a%1b[31mx")).status_code == 404
    time.sleep(0.5)

    lines = (ops.data_dir / "log" / "api.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if marker in line]
    assert len(entries) == 1, entries
    assert f"GET /forged-{marker}%0A%1B[31mx 404" in entries[0]["message"]


def test_no_secret_in_any_log_or_answer(ops):
    """Runs last: scans everything the run wrote and received."""
    master = (ops.data_dir / "master.secret").read_text().strip()
    found = [
        master,
        ops.token,
        ADMIN_PASSWORD,
        FLOWER_PASSWORD,
        derive.db_admin_credentials(master)[1],
        derive.s3_admin_credentials(master)[1],
        derive.derive(master, "archive-passphrase", "node"),
        derive.derive(master, "django-secret-key", "node"),
        *TENANT_SECRETS,
        *(derive.db_tenant_credentials(master, sid)[1] for sid in SERVICE_IDS),
        *(derive.s3_tenant_credentials(master, sid)[1] for sid in SERVICE_IDS),
    ]
    secrets_of_run = {s for s in found if s and len(s) >= 12}
    assert len(secrets_of_run) >= 8

    texts = list(ANSWERS)
    texts.append(("stack output", ops.output_path.read_text(errors="replace")))
    for path in sorted((ops.data_dir / "log").rglob("*")):
        if path.is_file():
            texts.append((str(path), path.read_text(errors="replace")))
    assert len(texts) > 10

    leaks = [
        (where, secret[:4] + "...")
        for where, text in texts
        for secret in secrets_of_run
        if secret in text
    ]
    assert not leaks, leaks


def test_admin_releases_the_mounts_docker_lost(ops, plugin):
    volume = f"lostmounts-{secrets.token_hex(3)}"
    plugin.create(volume)
    plugin.mount(volume, "a" * 64)
    plugin.mount(volume, "b" * 64)
    assert "in use" in plugin.remove(volume)["Err"]
    session = admin_session(ops)
    listing = keep(
        session.get(f"{ops.url}/admin/volumes/volume/", params={"q": volume})
    )
    pk = re.search(r'name="_selected_action" value="(\d+)"', listing.text).group(1)

    answer = run_admin_action(
        session, ops, "/admin/volumes/volume/", "release_mounts", pk
    )

    assert answer.status_code == 200
    assert "released 2 mount(s)" in answer.text
    assert keep(ops.get(f"/volumes/{volume}")).json()["mounts"] == 0
    assert plugin.remove(volume) == {"Err": ""}
    assert plugin.get(volume)["Err"] == f"no such volume: {volume}"
