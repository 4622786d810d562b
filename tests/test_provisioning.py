"""POST /resources/provision, /resources/deprovision, GET /resources[/<id>].

Every test runs against the real engines of the stack. Two tenants, alpha and
bravo, are provisioned by fixtures; each must be refused the other's database
and bucket.
"""

import hashlib
import json
import re
import subprocess
import sys
import threading
import time

import pymongo
import pytest
import requests
from botocore.exceptions import BotoCoreError, ClientError
from pymongo.errors import OperationFailure

from corestore_project import derive
from tests.stackrunner import ROOT
from tests.tenants import (
    admin_buckets,
    admin_mongo,
    admin_s3,
    engine_state,
    master_secret,
    new_service_id,
    supervisorctl,
    tenant_mongo,
    tenant_s3,
    wait_until,
)

BOTH = ["database", "objectstorage"]
ENV_KEYS = {
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "S3_BUCKET",
    "S3_ENDPOINT",
    "S3_REGION",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "S3_FORCE_PATH_STYLE",
    "AWS_S3_FORCE_PATH_STYLE",
}
NAME_RULE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def provision(node, service_id, name="app", capabilities=BOTH, **kwargs):
    body = {"serviceId": service_id, "serviceName": name, "capabilities": capabilities}
    return node.post("/resources/provision", json=body, **kwargs)


def deprovision(node, service_id, **kwargs):
    return node.post("/resources/deprovision", json={"serviceId": service_id}, **kwargs)


def provisioned(node, prefix, name):
    service_id = new_service_id(prefix)
    response = provision(node, service_id, name)
    assert response.status_code == 201, response.text
    yield response.json()
    deprovision(node, service_id)


@pytest.fixture
def alpha(stack):
    yield from provisioned(stack, "alpha", "Alpha_Shop")


@pytest.fixture
def bravo(stack):
    yield from provisioned(stack, "bravo", "bravo")


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error.get("field") == field, error


def refused(call) -> bool:
    try:
        call()
    except (ClientError, BotoCoreError, OperationFailure):
        return True
    return False


# The answer and what the tenant can do with it.


def test_provision_answers_service_resources_and_env(stack, alpha):
    env = alpha["env"]

    assert ENV_KEYS <= set(env)
    assert alpha["serviceName"] == "Alpha_Shop"
    resources = {r["capability"]: r for r in alpha["resources"]}
    assert set(resources) == set(BOTH)
    assert resources["database"]["resourceName"] == "db"
    assert resources["objectstorage"]["resourceName"] == "bucket"
    assert all(r["status"] == "ready" for r in resources.values())
    assert resources["database"]["name"] == env["MONGODB_DATABASE"]
    assert resources["objectstorage"]["name"] == env["S3_BUCKET"]
    assert env["S3_BUCKET"].startswith("alpha-shop-")
    assert NAME_RULE.match(env["S3_BUCKET"])

    uri = env["MONGODB_URI"]
    assert f"@127.0.0.1:{stack.ports['db']}/{env['MONGODB_DATABASE']}?" in uri
    assert f"authSource={env['MONGODB_DATABASE']}" in uri
    assert "retryWrites=false" in uri and "directConnection=true" in uri
    assert env["S3_ENDPOINT"] == f"http://127.0.0.1:{stack.ports['s3']}"
    assert env["AWS_ENDPOINT_URL"] == env["S3_ENDPOINT"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == env["S3_REGION"]
    assert env["S3_ACCESS_KEY"] == env["AWS_ACCESS_KEY_ID"]
    assert env["S3_SECRET_KEY"] == env["AWS_SECRET_ACCESS_KEY"]


def test_credentials_are_derived_not_stored(stack, alpha):
    secret = master_secret(stack)
    service_id = alpha["serviceId"]
    user, password = derive.db_tenant_credentials(secret, service_id)
    access_key, secret_key = derive.s3_tenant_credentials(secret, service_id)

    assert alpha["env"]["AWS_ACCESS_KEY_ID"] == access_key
    assert alpha["env"]["AWS_SECRET_ACCESS_KEY"] == secret_key
    assert f"{user}:{password}@" in alpha["env"]["MONGODB_URI"]
    stored = [(stack.data_dir / "corestore.sqlite3").read_bytes()]
    stored += [path.read_bytes() for path in (stack.data_dir / "log").glob("*.log")]
    stored.append((stack.data_dir / "s3" / "keys.json").read_bytes())
    for value in (password, secret_key):
        assert not any(value.encode() in blob for blob in stored)


def test_tenant_writes_and_reads_its_database_only(alpha, bravo):
    client = tenant_mongo(alpha["env"])
    try:
        own = client.get_default_database()
        assert own.name == alpha["env"]["MONGODB_DATABASE"]
        own.orders.insert_one({"_id": 1, "item": "tea"})
        assert own.orders.find_one({"_id": 1}) == {"_id": 1, "item": "tea"}

        other = client[bravo["env"]["MONGODB_DATABASE"]]
        assert refused(lambda: other.orders.insert_one({"_id": 2}))
        assert refused(lambda: other.orders.find_one())
        assert refused(lambda: client.list_database_names())
        # readWrite only: a tenant cannot widen its own rights.
        user = alpha["env"]["MONGODB_USERNAME"]
        assert refused(lambda: own.command("grantRolesToUser", user, roles=["dbOwner"]))
        assert refused(
            lambda: own.command("createUser", "extra", pwd="x" * 20, roles=[])
        )
    finally:
        client.close()

    # bravo's own credentials do not open alpha's database either.
    wrong = pymongo.MongoClient(
        bravo["env"]["MONGODB_URI"].replace(
            f"/{bravo['env']['MONGODB_DATABASE']}?",
            f"/{alpha['env']['MONGODB_DATABASE']}?",
        ),
        serverSelectionTimeoutMS=5000,
    )
    try:
        assert refused(lambda: wrong.get_default_database().orders.find_one())
    finally:
        wrong.close()


def test_tenant_puts_lists_gets_in_its_bucket_only(stack, alpha, bravo):
    s3 = tenant_s3(alpha["env"])
    bucket = alpha["env"]["S3_BUCKET"]
    other = bravo["env"]["S3_BUCKET"]

    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"alpha")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["docs/a.txt"]
    assert s3.get_object(Bucket=bucket, Key="docs/a.txt")["Body"].read() == b"alpha"

    tenant_s3(bravo["env"]).put_object(Bucket=other, Key="b.txt", Body=b"bravo")
    assert refused(lambda: s3.get_object(Bucket=other, Key="b.txt"))
    assert refused(lambda: s3.list_objects_v2(Bucket=other))
    assert refused(lambda: s3.put_object(Bucket=other, Key="x", Body=b"x"))
    assert refused(lambda: s3.delete_object(Bucket=other, Key="b.txt") or None)
    assert refused(lambda: s3.create_bucket(Bucket=new_service_id("grab")))

    admin = admin_s3(stack)
    assert admin.get_object(Bucket=other, Key="b.txt")["Body"].read() == b"bravo"
    listed = admin_buckets(stack)
    assert listed >= {bucket, other}
    assert not any(name.startswith("grab-") for name in listed)


# Idempotency and concurrency.


def test_provision_again_returns_the_same_answer_and_changes_nothing(stack, alpha):
    before = engine_state(stack)
    key_map = stack.data_dir / "s3" / "keys.json"
    key_map_mtime = key_map.stat().st_mtime_ns

    again = provision(stack, alpha["serviceId"], "Alpha_Shop")

    assert again.status_code == 200, again.text
    assert again.json() == alpha
    assert engine_state(stack) == before
    assert key_map.stat().st_mtime_ns == key_map_mtime


def test_renamed_service_keeps_its_names(stack, alpha):
    again = provision(stack, alpha["serviceId"], "renamed")

    assert again.status_code == 200, again.text
    assert again.json() == alpha


def test_adding_a_capability_later_adds_only_that_resource(stack):
    service_id = new_service_id("grow")
    first = provision(stack, service_id, "grow", ["database"])
    assert first.status_code == 201, first.text
    assert [r["capability"] for r in first.json()["resources"]] == ["database"]
    assert "S3_BUCKET" not in first.json()["env"]
    assert "MONGODB_URI" in first.json()["env"]
    client = tenant_mongo(first.json()["env"])
    client.get_default_database().kept.insert_one({"_id": "kept"})
    client.close()
    buckets_before = admin_buckets(stack)

    second = provision(stack, service_id, "grow", ["objectstorage", "database"])

    assert second.status_code == 200, second.text
    body = second.json()
    assert [r["capability"] for r in body["resources"]] == BOTH
    database = body["resources"][0]
    assert database == first.json()["resources"][0]
    for key, value in first.json()["env"].items():
        assert body["env"][key] == value
    buckets_after = admin_buckets(stack)
    assert buckets_after - buckets_before == {body["env"]["S3_BUCKET"]}
    client = tenant_mongo(body["env"])
    assert client.get_default_database().kept.find_one() == {"_id": "kept"}
    client.close()
    tenant_s3(body["env"]).put_object(
        Bucket=body["env"]["S3_BUCKET"], Key="k", Body=b"v"
    )

    assert deprovision(stack, service_id).status_code == 200


def test_concurrent_provision_calls_agree_on_one_result(stack):
    service_id = new_service_id("race")
    answers = []

    def call():
        answers.append(provision(stack, service_id, "race"))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    bodies = [a.json() for a in answers]
    assert all(body == bodies[0] for body in bodies)
    listed = stack.get("/resources").json()["services"]
    assert [s["serviceId"] for s in listed].count(service_id) == 1
    env = bodies[0]["env"]
    tenant_s3(env).put_object(Bucket=env["S3_BUCKET"], Key="k", Body=b"v")
    client = tenant_mongo(env)
    client.get_default_database().t.insert_one({"ok": True})
    client.close()

    assert deprovision(stack, service_id).status_code == 200


# Listing.


def test_listing_shows_services_and_resources_without_secrets(stack, alpha, bravo):
    listing = stack.get("/resources")
    detail = stack.get(f"/resources/{alpha['serviceId']}")

    assert listing.status_code == 200
    services = {s["serviceId"]: s for s in listing.json()["services"]}
    assert {alpha["serviceId"], bravo["serviceId"]} <= set(services)
    without_env = {k: v for k, v in alpha.items() if k != "env"}
    assert services[alpha["serviceId"]] == without_env
    assert detail.status_code == 200
    assert detail.json() == without_env
    secrets = [
        alpha["env"]["AWS_SECRET_ACCESS_KEY"],
        alpha["env"]["MONGODB_URI"].split("@")[0].split(":")[-1],
    ]
    for text in (listing.text, detail.text):
        assert not any(secret in text for secret in secrets)
        assert "env" not in json.loads(text)


def test_unknown_service_is_404(stack):
    assert_error(stack.get("/resources/nobody-here"), 404, "not_found")


ADMIN_CHECK = """
import json
import os

import django

django.setup()
from django.contrib.auth.models import User
from django.test import Client

from provisioning.models import Resource, Service

user, _ = User.objects.get_or_create(
    username="admin-view-check", defaults={"is_staff": True, "is_superuser": True}
)
client = Client()
client.force_login(user)
service = Service.objects.get(service_id=os.environ["CHECK_SERVICE_ID"])
resource = Resource.objects.filter(service=service).first()
pages = {
    "services": "/admin/provisioning/service/",
    "service": f"/admin/provisioning/service/{service.pk}/change/",
    "resources": "/admin/provisioning/resource/",
    "resource": f"/admin/provisioning/resource/{resource.pk}/change/",
    "add": "/admin/provisioning/service/add/",
}
answers = {}
for name, url in pages.items():
    response = client.get(url)
    answers[name] = [response.status_code, response.content.decode()]
response = client.post(
    f"/admin/provisioning/service/{service.pk}/delete/", {"post": "yes"}
)
answers["delete"] = [response.status_code, ""]
answers["still_there"] = [Service.objects.filter(pk=service.pk).exists(), ""]
print(json.dumps(answers))
"""


def test_admin_shows_services_read_only_and_without_secrets(stack, alpha):
    env = {**stack.env, "CHECK_SERVICE_ID": alpha["serviceId"]}
    result = subprocess.run(
        [sys.executable, "-c", ADMIN_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout.strip().splitlines()[-1])

    for name in ("services", "service", "resources", "resource"):
        status, html = pages[name]
        assert status == 200, name
        assert alpha["serviceId"] in html
        assert 'name="_save"' not in html
        for secret in (
            alpha["env"]["AWS_SECRET_ACCESS_KEY"],
            alpha["env"]["MONGODB_PASSWORD"],
        ):
            assert secret not in html
    assert alpha["env"]["S3_BUCKET"] in pages["service"][1]
    assert pages["add"][0] == 403
    assert pages["delete"][0] == 403
    assert pages["still_there"][0] is True


# Deprovisioning.


def test_deprovision_removes_databases_buckets_keys_and_records(stack):
    service_id = new_service_id("gone")
    env = provision(stack, service_id, "gone").json()["env"]
    database, bucket = env["MONGODB_DATABASE"], env["S3_BUCKET"]
    client = tenant_mongo(env)
    client.get_default_database().docs.insert_many([{"n": n} for n in range(3)])
    client.close()
    s3 = tenant_s3(env)
    for key in ("a", "b/c", "d/e/f"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    user, _ = derive.db_tenant_credentials(master_secret(stack), service_id)

    response = deprovision(stack, service_id)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serviceId"] == service_id
    assert body["status"] == "removed"
    assert {r["capability"]: r["status"] for r in body["resources"]} == {
        "database": "removed",
        "objectstorage": "removed",
    }
    mongo = admin_mongo(stack)
    assert database not in mongo.list_database_names()
    assert not mongo[database].command("usersInfo", user)["users"]
    mongo.close()
    assert refused(lambda: tenant_mongo(env).get_default_database().docs.find_one())
    assert bucket not in admin_buckets(stack)
    keys = json.loads((stack.data_dir / "s3" / "keys.json").read_text())
    assert env["AWS_ACCESS_KEY_ID"] not in keys
    # rclone may serve the removed key from its cache for a few minutes, but
    # the bucket cannot come back through it. A refused write may also go
    # unanswered, hence the short timeout.
    s3 = tenant_s3(env, read_timeout=5)
    assert refused(lambda: s3.put_object(Bucket=bucket, Key="again", Body=b"x"))
    assert refused(lambda: s3.get_object(Bucket=bucket, Key="a"))
    assert bucket not in admin_buckets(stack)
    assert_error(stack.get(f"/resources/{service_id}"), 404, "not_found")


def test_second_deprovision_is_404_and_changes_nothing(stack):
    service_id = new_service_id("twice")
    assert provision(stack, service_id).status_code == 201
    assert deprovision(stack, service_id).status_code == 200
    before = engine_state(stack)

    assert_error(deprovision(stack, service_id), 404, "not_found")
    assert engine_state(stack) == before


def test_concurrent_deprovision_calls_remove_once(stack):
    service_id = new_service_id("race")
    env = provision(stack, service_id).json()["env"]
    answers = []

    def call():
        answers.append(deprovision(stack, service_id))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 404, 404, 404, 404, 404], [a.text for a in answers]
    winner = next(answer.json() for answer in answers if answer.status_code == 200)
    assert winner["status"] == "removed"
    assert len(winner["resources"]) == 2
    assert env["S3_BUCKET"] not in admin_buckets(stack)
    assert stack.get(f"/resources/{service_id}").status_code == 404


def test_provision_after_deprovision_starts_empty(stack):
    service_id = new_service_id("reborn")
    env = provision(stack, service_id).json()["env"]
    tenant_s3(env).put_object(Bucket=env["S3_BUCKET"], Key="old", Body=b"x")
    client = tenant_mongo(env)
    client.get_default_database().old.insert_one({"old": True})
    client.close()
    assert deprovision(stack, service_id).status_code == 200

    again = provision(stack, service_id)

    assert again.status_code == 201, again.text
    assert again.json()["env"] == env
    # rclone's directory cache may show the old listing for a second.
    time.sleep(1.2)
    listed = tenant_s3(env).list_objects_v2(Bucket=env["S3_BUCKET"])
    assert listed.get("Contents", []) == []
    client = tenant_mongo(env)
    assert client.get_default_database().old.find_one() is None
    client.close()
    assert deprovision(stack, service_id).status_code == 200


# Refused requests: the status, the JSON error, and nothing changed.

GOOD = {"serviceId": "valid-id", "serviceName": "valid", "capabilities": BOTH}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"serviceName": "x", "capabilities": BOTH}, "serviceId"),
        ({**GOOD, "serviceId": ""}, "serviceId"),
        ({**GOOD, "serviceId": 42}, "serviceId"),
        ({**GOOD, "serviceId": None}, "serviceId"),
        ({**GOOD, "serviceId": "has space"}, "serviceId"),
        ({**GOOD, "serviceId": "slash/id"}, "serviceId"),
        ({**GOOD, "serviceId": " padded"}, "serviceId"),
        ({**GOOD, "serviceId": "é"}, "serviceId"),
        ({**GOOD, "serviceId": "a" * 129}, "serviceId"),
        ({"serviceId": "valid-id", "capabilities": BOTH}, "serviceName"),
        ({**GOOD, "serviceName": "no spaces"}, "serviceName"),
        ({**GOOD, "serviceName": ["x"]}, "serviceName"),
        ({"serviceId": "valid-id", "serviceName": "x"}, "capabilities"),
        ({**GOOD, "capabilities": []}, "capabilities"),
        ({**GOOD, "capabilities": "database"}, "capabilities"),
        ({**GOOD, "capabilities": ["database", "queue"]}, "capabilities.1"),
        ({**GOOD, "capabilities": [{"database": True}]}, "capabilities.0"),
    ],
)
def test_invalid_provision_body_is_400_naming_the_field(stack, body, field):
    before = engine_state(stack)

    response = stack.post("/resources/provision", json=body)

    assert_error(response, 400, "invalid", field)
    assert field.split(".")[0] in response.json()["error"]["message"]
    assert engine_state(stack) == before


def test_longest_valid_ids_are_accepted(stack):
    service_id = "i" * 128
    response = provision(stack, service_id, "N." + "n" * 126)

    assert response.status_code == 201, response.text
    env = response.json()["env"]
    assert NAME_RULE.match(env["S3_BUCKET"]) and len(env["S3_BUCKET"]) <= 63
    assert env["MONGODB_DATABASE"] == env["S3_BUCKET"]
    assert deprovision(stack, service_id).status_code == 200


def test_engine_names_end_in_twelve_hex_digits_of_the_service_id(stack):
    service_id = new_service_id("hash")
    response = provision(stack, service_id, "Shop")

    assert response.status_code == 201, response.text
    digest = hashlib.sha256(service_id.encode()).hexdigest()[:12]
    for resource in response.json()["resources"]:
        assert resource["name"] == f"shop-{digest}"
    assert deprovision(stack, service_id).status_code == 200


@pytest.mark.parametrize(
    ("payload", "content_type", "code"),
    [
        (b'{"serviceId": "x",', "application/json", "invalid_json"),
        (b"serviceId=x", "application/x-www-form-urlencoded", "invalid_json"),
        (b"not json at all", "text/plain", "invalid_json"),
        (b'["valid-id"]', "application/json", "invalid"),
        (b'"valid-id"', "application/json", "invalid"),
    ],
)
def test_body_that_is_not_a_json_object_is_400(stack, payload, content_type, code):
    before = engine_state(stack)

    for path in ("/resources/provision", "/resources/deprovision"):
        response = stack.post(
            path, data=payload, headers={"Content-Type": content_type}
        )
        assert_error(response, 400, code)
    assert engine_state(stack) == before


def test_json_without_content_type_is_accepted(stack):
    service_id = new_service_id("notype")
    body = json.dumps(
        {"serviceId": service_id, "serviceName": "n", "capabilities": ["database"]}
    )

    response = stack.post(
        "/resources/provision", data=body, headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 201, response.text
    assert deprovision(stack, service_id).status_code == 200


def test_body_over_one_mebibyte_is_413(stack):
    before = engine_state(stack)
    body = json.dumps({**GOOD, "padding": "x" * (1024 * 1024)})

    for path in ("/resources/provision", "/resources/deprovision"):
        response = stack.post(
            path, data=body, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "too_large")
    assert engine_state(stack) == before


@pytest.mark.parametrize(
    "body",
    [{}, {"serviceId": ""}, {"serviceId": 7}, {"serviceId": "a/b"}, {"id": "x"}],
)
def test_invalid_deprovision_body_is_400(stack, alpha, body):
    before = engine_state(stack)

    response = stack.post("/resources/deprovision", json=body)

    assert_error(response, 400, "invalid", "serviceId")
    assert engine_state(stack) == before


def test_deprovision_of_unknown_service_is_404(stack, alpha):
    before = engine_state(stack)

    assert_error(deprovision(stack, "never-provisioned"), 404, "not_found")
    assert engine_state(stack) == before


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic dXNlcjpwYXNz", "token"],
)
def test_missing_or_wrong_token_is_401_everywhere(stack, alpha, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    before = engine_state(stack)
    calls = [
        ("post", "/resources/provision", {**GOOD, "serviceId": "intruder"}),
        ("post", "/resources/deprovision", {"serviceId": alpha["serviceId"]}),
        ("get", "/resources", None),
        ("get", f"/resources/{alpha['serviceId']}", None),
    ]

    for method, path, body in calls:
        response = requests.request(
            method, stack.url + path, json=body, headers=headers, timeout=30
        )
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert engine_state(stack) == before


def test_wrong_method_is_a_json_405(stack):
    response = stack.get("/resources/provision")

    assert_error(response, 405, "method_not_allowed")


# A failure half way.


def test_object_engine_down_gives_503_and_the_next_call_completes(stack):
    service_id = new_service_id("half")
    stopped = supervisorctl(stack, "stop", "objectstorage")
    assert "stopped" in stopped, stopped
    try:
        response = provision(stack, service_id, "half")

        assert_error(response, 503, "engine_unavailable")
        assert "objectstorage" in response.json()["error"]["message"]
        state = stack.get(f"/resources/{service_id}").json()
        statuses = {r["capability"]: r["status"] for r in state["resources"]}
        assert statuses == {"database": "ready", "objectstorage": "pending"}
        database = state["resources"][0]["name"]
        mongo = admin_mongo(stack)
        user, _ = derive.db_tenant_credentials(master_secret(stack), service_id)
        assert mongo[database].command("usersInfo", user)["users"]
        mongo.close()
    finally:
        started = supervisorctl(stack, "start", "objectstorage")
        assert "started" in started or "already" in started, started
        wait_until(
            lambda: admin_s3(stack).list_buckets() is not None,
            what="object engine back",
        )

    response = provision(stack, service_id, "half")

    assert response.status_code == 200, response.text
    body = response.json()
    assert all(r["status"] == "ready" for r in body["resources"])
    assert ENV_KEYS <= set(body["env"])
    tenant_s3(body["env"]).put_object(
        Bucket=body["env"]["S3_BUCKET"], Key="k", Body=b"v"
    )
    assert provision(stack, service_id, "half").json() == body

    # Deprovision half way (the database engine down this time): the service
    # stays, refuses provisioning, and the next deprovision call finishes.
    supervisorctl(stack, "stop", "database")
    try:
        assert_error(deprovision(stack, service_id), 503, "engine_unavailable")
    finally:
        supervisorctl(stack, "start", "database")
        wait_until(
            lambda: admin_mongo(stack).admin.command("ping"),
            what="database engine back",
        )
    left = stack.get(f"/resources/{service_id}").json()
    assert left["status"] == "deprovisioning"
    assert [r["capability"] for r in left["resources"]] == ["database"]
    assert_error(provision(stack, service_id, "half"), 409, "conflict")
    assert deprovision(stack, service_id).status_code == 200
    assert_error(stack.get(f"/resources/{service_id}"), 404, "not_found")
