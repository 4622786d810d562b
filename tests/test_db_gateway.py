"""The database gateway in front of SecantusDB.

Two tenants, alpha and bravo, are provisioned on the shared stack. The commands
the engine cannot authorize (bulkWrite, renameCollection across databases) must
be refused with Unauthorized and leave the other tenant's data as it was; all
else must pass through the gateway unchanged.
"""

import os
import socket
import struct

import bson
import pymongo
import pytest
from bson import ObjectId
from pymongo.errors import ClientBulkWriteException, OperationFailure

from tests.tenants import admin_mongo, tenant_mongo

UNAUTHORIZED = 13


def provisioned(node, service_id, name):
    body = {"serviceId": service_id, "serviceName": name, "capabilities": ["database"]}
    response = node.post("/resources/provision", json=body)
    assert response.status_code == 201, response.text
    yield response.json()["env"]
    node.post("/resources/deprovision", json={"serviceId": service_id})


@pytest.fixture(scope="module")
def embedded(stack):
    engine = stack.get("/health").json()["engines"]["database"]["engine"]
    if engine != "secantus":
        pytest.skip("the gateway runs in front of the embedded engine only")
    return stack


@pytest.fixture(scope="module")
def alpha(embedded):
    yield from provisioned(embedded, f"gw-alpha-{ObjectId()}", "gwalpha")


@pytest.fixture(scope="module")
def bravo(embedded):
    yield from provisioned(embedded, f"gw-bravo-{ObjectId()}", "gwbravo")


@pytest.fixture
def alpha_client(alpha):
    client = tenant_mongo(alpha)
    yield client
    client.close()


@pytest.fixture
def bravo_secret(embedded, bravo):
    """bravo's collection `secret` with three documents, as bravo wrote them."""
    client = tenant_mongo(bravo)
    collection = client[bravo["MONGODB_DATABASE"]].secret
    collection.drop()
    collection.insert_many([{"_id": n, "value": f"bravo-{n}"} for n in range(3)])
    yield collection
    client.close()


def bravo_documents(node, bravo) -> list:
    admin = admin_mongo(node)
    try:
        return list(admin[bravo["MONGODB_DATABASE"]].secret.find().sort("_id"))
    finally:
        admin.close()


def assert_unauthorized(call):
    with pytest.raises(OperationFailure) as failure:
        call()
    assert failure.value.code == UNAUTHORIZED
    assert "not supported by the embedded database engine" in str(failure.value)


def test_bulk_write_to_another_database_is_refused(
    embedded, alpha_client, bravo, bravo_secret
):
    before = bravo_documents(embedded, bravo)
    namespace = f"{bravo['MONGODB_DATABASE']}.secret"
    for ops in (
        [{"delete": 0, "filter": {}, "multi": True}],
        [{"update": 0, "filter": {}, "updateMods": {"$set": {"value": "x"}}}],
        [{"insert": 0, "document": {"_id": "planted"}}],
    ):
        command = {"bulkWrite": 1, "ops": ops, "nsInfo": [{"ns": namespace}]}
        assert_unauthorized(lambda command=command: alpha_client.admin.command(command))

    assert bravo_documents(embedded, bravo) == before


def test_client_bulk_write_is_refused_also_for_the_own_database(alpha, alpha_client):
    own = alpha_client[alpha["MONGODB_DATABASE"]].items
    models = [pymongo.InsertOne(namespace=own.full_name, document={"n": 1})]

    with pytest.raises(ClientBulkWriteException) as failure:
        alpha_client.bulk_write(models)
    assert failure.value.error.code == UNAUTHORIZED

    assert own.count_documents({}) == 0
    # The connection stays usable after a refusal.
    own.bulk_write([pymongo.InsertOne({"n": 2})])
    assert own.count_documents({}) == 1
    own.drop()


def test_rename_across_databases_is_refused(
    embedded, alpha, alpha_client, bravo, bravo_secret
):
    mine, theirs = alpha["MONGODB_DATABASE"], bravo["MONGODB_DATABASE"]
    alpha_client[mine].decoy.insert_one({"_id": "decoy"})
    before = bravo_documents(embedded, bravo)

    assert_unauthorized(
        lambda: alpha_client.admin.command(
            "renameCollection", f"{mine}.decoy", to=f"{theirs}.secret", dropTarget=True
        )
    )
    assert_unauthorized(
        lambda: alpha_client.admin.command(
            "renameCollection", f"{theirs}.secret", to=f"{mine}.stolen"
        )
    )

    assert bravo_documents(embedded, bravo) == before
    assert "stolen" not in alpha_client[mine].list_collection_names()
    alpha_client[mine].decoy.drop()


def test_rename_inside_another_database_is_refused_by_the_engine(
    embedded, alpha_client, bravo, bravo_secret
):
    theirs = bravo["MONGODB_DATABASE"]
    with pytest.raises(OperationFailure) as failure:
        alpha_client.admin.command(
            "renameCollection", f"{theirs}.secret", to=f"{theirs}.moved"
        )
    assert failure.value.code == UNAUTHORIZED
    assert len(bravo_documents(embedded, bravo)) == 3


def test_rename_inside_the_own_database_works(alpha, alpha_client):
    database = alpha_client[alpha["MONGODB_DATABASE"]]
    database.before.insert_one({"_id": 1})

    database.before.rename("after")

    assert database.after.find_one() == {"_id": 1}
    assert "before" not in database.list_collection_names()
    database.after.drop()


def test_crud_indexes_aggregation_and_cursors_pass(alpha, alpha_client):
    collection = alpha_client[alpha["MONGODB_DATABASE"]].orders
    collection.drop()

    collection.insert_many([{"n": n, "kind": n % 3} for n in range(500)])
    collection.create_index([("kind", pymongo.ASCENDING), ("n", pymongo.DESCENDING)])
    collection.update_many({"kind": 0}, {"$inc": {"n": 1000}})
    collection.delete_one({"n": 1})
    result = collection.bulk_write(
        [pymongo.InsertOne({"n": -1}), pymongo.DeleteMany({"kind": 2})]
    )
    assert result.inserted_count == 1

    # batch_size 7 makes the cursor fetch the rest with getMore.
    names = list(collection.find({}, batch_size=7).sort("n"))
    assert len(names) == 500 - 1 - 166 + 1
    totals = {
        doc["_id"]: doc["count"]
        for doc in collection.aggregate(
            [{"$group": {"_id": "$kind", "count": {"$sum": 1}}}], batchSize=1
        )
    }
    assert totals == {0: 167, 1: 166, None: 1}
    assert "kind_1_n_-1" in collection.index_information()
    collection.drop()


def test_large_documents_pass(alpha, alpha_client):
    collection = alpha_client[alpha["MONGODB_DATABASE"]].blobs
    collection.drop()
    blob = bytes(range(256)) * (10 * 1024 * 1024 // 256)

    collection.insert_many([{"_id": n, "blob": blob} for n in range(4)])

    for n in range(4):
        assert collection.find_one({"_id": n})["blob"] == blob
    collection.drop()


def test_engine_is_not_on_the_database_port(embedded):
    port_file = embedded.data_dir / "run" / "database-engine.port"
    engine_port = int(port_file.read_text())
    assert engine_port != embedded.ports["db"]

    # The database port answers like a MongoDB server, through the gateway.
    admin = admin_mongo(embedded)
    try:
        assert admin.admin.command("ping")["ok"] == 1
    finally:
        admin.close()
    # The engine itself is bound to loopback only, never to the node's port.
    with socket.socket() as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", engine_port))
    assert pid_listening(embedded, engine_port) == "database"
    assert pid_listening(embedded, embedded.ports["db"]) == "dbgateway"


def pid_listening(node, port: int) -> str:
    """The stack process (by supervisor name) that listens on a loopback port."""
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inodes.add(fields[9])
    for name in ("database", "dbgateway"):
        pid = node.child_pid(name)
        descriptors = f"/proc/{pid}/fd"
        for fd in os.listdir(descriptors):
            try:
                target = os.readlink(f"{descriptors}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return name
    return ""


def raw_exchange(node, message: bytes) -> bytes:
    """Send one wire message to the database port; answer what comes back."""
    with socket.create_connection(("127.0.0.1", node.ports["db"]), timeout=10) as sock:
        sock.sendall(message)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if (
                len(received) >= 4
                and len(received) >= struct.unpack_from("<i", received)[0]
            ):
                break
        return received


def test_legacy_op_query_commands_are_inspected(embedded, bravo, bravo_secret):
    namespace = f"{bravo['MONGODB_DATABASE']}.secret"
    command = bson.encode(
        {
            "bulkWrite": 1,
            "ops": [{"delete": 0, "filter": {}, "multi": True}],
            "nsInfo": [{"ns": namespace}],
        }
    )
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1)
    body += command
    message = struct.pack("<iiii", 16 + len(body), 7, 0, 2004) + body

    reply = raw_exchange(embedded, message)

    assert struct.unpack_from("<iiii", reply)[2:] == (7, 1)
    assert bson.decode(reply[36:])["code"] == UNAUTHORIZED
    assert len(bravo_documents(embedded, bravo)) == 3


def test_compressed_messages_close_the_connection(embedded):
    payload = struct.pack("<iiB", 2013, 0, 0) + b"\x00" * 8
    message = struct.pack("<iiii", 16 + len(payload), 9, 0, 2012) + payload

    assert raw_exchange(embedded, message) == b""


def test_clients_asking_for_compression_still_work(alpha):
    client = pymongo.MongoClient(
        alpha["MONGODB_URI"], compressors="zlib", serverSelectionTimeoutMS=5000
    )
    try:
        collection = client[alpha["MONGODB_DATABASE"]].zipped
        collection.insert_one({"text": "x" * 100_000})
        assert len(collection.find_one()["text"]) == 100_000
        collection.drop()
    finally:
        client.close()
