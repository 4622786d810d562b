"""The S3 gateway in front of rclone's `serve s3` (the embedded object engine).

rclone listens on a unix socket only; this program listens on the node's S3
port and passes every request through byte for byte: method, path, query,
headers (Host included) and body. rclone checks SigV4 signatures and refuses
an `x-amz-*` header it did not see signed, so the gateway never alters a
request. What it adds:

- Requests rclone would mishandle (it answers `PUT ?acl` or `?tagging` by
  overwriting the object, UploadPartCopy with an empty part, and so on) are
  answered here with the S3 error a client expects, before rclone sees them.
  Only the operations rclone implements correctly are let through.
- Object metadata (Content-Type, Content-Encoding, Cache-Control,
  Content-Disposition, Content-Language, Expires, x-amz-meta-*) is recorded in
  a SQLite file once rclone has answered a write with success, and served on
  GET and HEAD to every access key alike.
- A Range GET is answered 206 and without the whole object's checksum headers
  (rclone answers 200 with them, which makes boto3 fail the download).
- Conditional GET and HEAD (If-Match and friends, which rclone ignores) are
  evaluated against the ETag and Last-Modified rclone answered.

Bodies are streamed in both directions; nothing holds a whole object. Run as
`python s3_gateway.py --listen HOST:PORT --upstream SOCKET --metadata FILE`.
"""

import argparse
import asyncio
import fcntl
import logging
import os
import secrets
import select
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qsl, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import aiohttp
import uvloop
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

# Run as a script, its own folder would come first on the path, where
# engines/minio.py would shadow the minio package.
sys.path[0] = str(Path(__file__).resolve().parents[2])

from corestore_project import derive  # noqa: E402
from corestore_project.engines.s3_metadata import MetadataStore  # noqa: E402
from corestore_project.logs import (  # noqa: E402
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    printable,
)

logger = logging.getLogger("corestore.s3gateway")

CHUNK = 1024 * 1024
DELETE_BODY_LIMIT = 10 * 1024 * 1024
# Bodies this large are spliced in the kernel rather than copied (below).
SPLICE_MIN_BYTES = 4 * CHUNK
PIPE_BYTES = CHUNK
HOP_BY_HOP = {
    # The gateway answers 100 Continue itself; passed on, rclone may refuse a
    # request early while the client body is still held back, and both wait.
    # SigV4 clients leave Expect out of the signed headers.
    "expect",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
}
# The object metadata S3 keeps and answers on GET and HEAD.
META_HEADERS = (
    "content-type",
    "content-encoding",
    "cache-control",
    "content-disposition",
    "content-language",
    "expires",
)
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

# Query parameters of presigned URLs and SDK routing hints: no operation.
NEUTRAL_PARAMS = {
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-user-agent",
    "awsaccesskeyid",
    "signature",
    "expires",
    "x-id",
}
RESPONSE_PARAMS = {"response-" + name for name in META_HEADERS}
LIST_PARAMS = {
    "list-type",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "continuation-token",
    "start-after",
    "fetch-owner",
    "encoding-type",
}
LIST_UPLOADS_PARAMS = {
    "prefix",
    "delimiter",
    "key-marker",
    "upload-id-marker",
    "max-uploads",
    "encoding-type",
}

# (level, method) -> the query shapes rclone implements correctly, each as
# (parameters that name the operation, parameters it may carry). Anything else
# is refused: rclone treats an unknown sub-resource as the plain operation,
# so `PUT /b/k?acl` would overwrite the object with the ACL document.
OPERATIONS = {
    ("service", "GET"): [(set(), {"prefix", "continuation-token", "max-buckets"})],
    ("bucket", "GET"): [
        (set(), LIST_PARAMS),
        ({"location"}, set()),
        ({"uploads"}, LIST_UPLOADS_PARAMS),
    ],
    ("bucket", "HEAD"): [(set(), set())],
    ("bucket", "PUT"): [(set(), set())],
    ("bucket", "DELETE"): [(set(), set())],
    ("bucket", "POST"): [({"delete"}, set())],
    ("object", "GET"): [
        (set(), RESPONSE_PARAMS),
        ({"uploadId"}, {"max-parts", "part-number-marker", "encoding-type"}),
    ],
    ("object", "HEAD"): [(set(), RESPONSE_PARAMS)],
    ("object", "PUT"): [(set(), set()), ({"partNumber", "uploadId"}, set())],
    ("object", "POST"): [({"uploads"}, set()), ({"uploadId"}, set())],
    ("object", "DELETE"): [(set(), set()), ({"uploadId"}, set())],
}

# Request headers asking for something rclone silently ignores; answering
# success would be a lie (the object is not locked, encrypted, tagged...).
REFUSED_HEADER_PREFIXES = (
    "x-amz-object-lock-",
    "x-amz-server-side-encryption",
    "x-amz-grant-",
    "x-amz-copy-source-if-",
)
REFUSED_HEADERS = {
    "x-amz-tagging",
    "x-amz-tagging-directive",
    "x-amz-website-redirect-location",
    "x-amz-copy-source-range",
    "x-amz-write-offset-bytes",
}
# The node's admin key id (derive.s3_admin_credentials), set at start from the
# stack's master secret; None (no key may create or delete buckets) without one.
admin_key_id: str | None = None
# Canned ACLs that describe what the engine does anyway: only the owner.
HARMLESS_ACLS = {"private", "bucket-owner-full-control"}


@dataclass
class Target:
    level: str  # service, bucket or object
    bucket: str
    key: str
    params: dict[str, str]


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_target(raw_path: str) -> Target:
    path, _, query = raw_path.partition("?")
    bucket, _, key = path.lstrip("/").partition("/")
    params = {
        name: value
        for name, value in parse_qsl(query, keep_blank_values=True)
        if name.lower() not in NEUTRAL_PARAMS
    }
    level = "object" if key else "bucket" if bucket else "service"
    return Target(level, unquote(bucket), unquote(key), params)


def operation(method: str, target: Target, headers) -> str:
    """The S3 operation a request is, or a Refusal if rclone would get it wrong."""
    shapes = OPERATIONS.get((target.level, method))
    if shapes is None:
        if method == "OPTIONS":
            return "options"
        raise not_implemented(f"{method} on a {target.level} is not supported")
    names = set(target.params)
    if not any(req <= names <= req | opt for req, opt in shapes):
        raise not_implemented(
            f"{method} with ?{'&'.join(sorted(names))} is not supported "
            "by this object engine"
        )
    copy_source = headers.get("x-amz-copy-source")
    if method == "PUT" and "uploadId" in names and copy_source is not None:
        # rclone would answer 200 and store an empty part.
        raise not_implemented("UploadPartCopy is not supported; upload the part")
    check_headers(method, headers)

    if target.level != "object":
        if method == "GET" and target.params.get("delimiter", "/") not in ("/", ""):
            # rclone would treat any delimiter as "/" and answer a wrong listing.
            raise not_implemented("only '/' is supported as a listing delimiter")
        if method == "PUT" and headers.get("x-amz-bucket-object-lock-enabled", "") in (
            "true",
            "True",
        ):
            raise not_implemented("object lock is not supported")
        if method == "PUT":
            return "create_bucket"
        return {"DELETE": "delete_bucket", "POST": "delete_objects"}.get(method, "pass")

    if method == "PUT" and "uploadId" in names:
        return "pass"
    if method == "PUT":
        if copy_source is not None:
            if "versionId=" in copy_source:
                raise not_implemented("object versions are not supported")
            check_copy_source(copy_source)
            return "copy_object"
        return "put_object"
    if method == "POST":
        return "create_upload" if "uploads" in names else "complete_upload"
    if method == "DELETE":
        return "abort_upload" if "uploadId" in names else "delete_object"
    if "uploadId" in names:
        return "pass"
    if "partNumber" in names:
        raise not_implemented("reading one part of an object is not supported")
    return "read_object"


def check_copy_source(copy_source: str) -> None:
    """Refuses a source that names no bucket and key; rclone's handler crashes.

    The bucket must end at a literal '/': an encoded one ('bucket%2Fkey')
    decodes to a plausible path but rclone cannot split it.
    """
    bucket, slash, key = copy_source.partition("?")[0].lstrip("/").partition("/")
    if not slash or not unquote(bucket) or not unquote(key) or "%" in bucket:
        raise Refusal(
            400,
            "InvalidArgument",
            "x-amz-copy-source must be <bucket>/<key>, the '/' not URL-encoded",
        )


def access_key_id(request: web.BaseRequest) -> str:
    """The access key id a request is signed with (SigV4 header or presigned)."""
    credential = request.query.get("X-Amz-Credential", "")
    authorization = request.headers.get("Authorization", "")
    if "Credential=" in authorization:
        credential = authorization.partition("Credential=")[2]
    return credential.partition("/")[0].strip()


def check_bucket_admin(request: web.BaseRequest, op: str) -> None:
    """Only the node's admin key creates and deletes buckets.

    A tenant key is served a backend that holds its own bucket only: rclone
    fails with a 500 on any other name, and would let the tenant re-create its
    bucket after deleting it. Buckets are made and removed by provisioning.
    """
    if op not in ("create_bucket", "delete_bucket"):
        return
    if admin_key_id is None or access_key_id(request) != admin_key_id:
        raise Refusal(
            403, "AccessDenied", "only the node's admin key creates or deletes buckets"
        )


def check_headers(method: str, headers) -> None:
    for name in headers:
        lower = name.lower()
        if lower in REFUSED_HEADERS or lower.startswith(REFUSED_HEADER_PREFIXES):
            if lower.startswith("x-amz-server-side-encryption"):
                raise not_implemented("server-side encryption is not supported")
            raise not_implemented(f"the {lower} header is not supported")
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in HARMLESS_ACLS:
        raise not_implemented("ACLs are not supported; objects are private")
    directive = headers.get("x-amz-metadata-directive", "COPY")
    if directive not in ("COPY", "REPLACE"):
        raise Refusal(400, "InvalidArgument", "unknown x-amz-metadata-directive")
    if method in ("PUT", "POST") and (
        "If-Match" in headers or "If-None-Match" in headers
    ):
        # rclone would overwrite the object whatever the condition says.
        raise not_implemented("conditional writes are not supported")


def not_implemented(message: str) -> Refusal:
    return Refusal(501, "NotImplemented", message)


def error_response(request: web.BaseRequest, refusal: Refusal) -> web.Response:
    request_id = secrets.token_hex(8).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{refusal.code}</Code>"
        f"<Message>{escape(refusal.message)}</Message>"
        f"<Resource>{escape(request.path)}</Resource>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    response = web.Response(
        status=refusal.status,
        body=None if request.method == "HEAD" else body,
        content_type="application/xml",
        headers={"x-amz-request-id": request_id},
    )
    if request.body_exists and not request.content.is_eof():
        # The unread body would otherwise be taken for the next request.
        response.force_close()
    return response


def request_meta(headers) -> dict:
    """The metadata a PUT, CopyObject (REPLACE) or CreateMultipartUpload sets."""
    meta = {}
    for name in META_HEADERS:
        values = headers.getall(name, [])
        if name == "content-encoding":
            # aws-chunked is the upload's framing, not the object's encoding.
            values = [
                token.strip()
                for value in values
                for token in value.split(",")
                if token.strip() and token.strip().lower() != "aws-chunked"
            ]
        if values:
            meta[name] = ",".join(values)
    for name in headers:
        lower = name.lower()
        if lower.startswith("x-amz-meta-") and lower not in meta:
            meta[lower] = ",".join(headers.getall(name))
    return meta


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def xml_fields(body: bytes, name: str) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [el.text or "" for el in root.iter() if local_name(el.tag) == name]


def xml_root_name(body: bytes) -> str:
    try:
        return local_name(ElementTree.fromstring(body).tag)
    except ElementTree.ParseError:
        return ""


class Gateway:
    def __init__(self, upstream_socket: str, store: MetadataStore):
        self.upstream_socket = upstream_socket
        self.store = store
        # SQLite calls run on one thread, in the order the answers arrive.
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3meta")
        self.splicers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="splice")
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.upstream_socket, limit=0),
            # Whatever the client sent is what rclone must see: no added
            # headers, no decompression, no cookies kept between tenants.
            skip_auto_headers=(
                "Accept",
                "Accept-Encoding",
                "User-Agent",
                "Content-Type",
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            read_bufsize=CHUNK,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def close(self) -> None:
        if self.session:
            await self.session.close()
        self.db.shutdown(wait=True)
        self.splicers.shutdown(wait=False)

    async def db_call(self, function, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db, function, *args)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = parse_target(request.raw_path)
        try:
            op = operation(request.method, target, request.headers)
            check_bucket_admin(request, op)
        except Refusal as refusal:
            logger.info(
                "refused %s %s: %s",
                printable(request.method),
                printable(request.path),
                printable(refusal.message),
            )
            return error_response(request, refusal)

        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = None
            if op == "delete_objects":
                # Small (rclone caps it at 10 MiB) and needed afterwards: with
                # <Quiet> the answer names only the keys that failed.
                body = await read_limited(request, DELETE_BODY_LIMIT)
            upstream = await self.forward(request, body)
        except Refusal as refusal:
            return error_response(request, refusal)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            logger.warning("rclone unreachable: %s", exc)
            return error_response(
                request, Refusal(503, "ServiceUnavailable", "please retry")
            )

        try:
            if op == "delete_objects":
                return await self.after_delete_objects(request, target, upstream, body)
            handler = getattr(self, f"after_{op}", self.after_pass)
            return await handler(request, target, upstream)
        except sqlite3.Error:
            # rclone has done the write; a retry of the request redoes both.
            logger.exception(
                "metadata of %s %s not recorded",
                printable(request.method),
                printable(target),
            )
            return error_response(
                request,
                Refusal(500, "InternalError", "metadata not recorded; please retry"),
            )
        finally:
            upstream.release()

    async def forward(
        self, request: web.BaseRequest, body: bytes | None = None
    ) -> aiohttp.ClientResponse:
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_BY_HOP
        )
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if body is None and (request.body_exists or chunked):
            body = request.content
        return await self.session.request(
            request.method,
            URL("http://rclone" + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
            compress=None,
        )

    # What happens to rclone's answer, by operation.

    async def after_pass(self, request, target, upstream) -> web.StreamResponse:
        return await self.stream(request, upstream, upstream.status, upstream.headers)

    async def after_options(self, request, target, upstream):
        return await self.after_pass(request, target, upstream)

    async def after_read_object(self, request, target, upstream):
        if upstream.status not in (200, 206):
            # rclone answers If-None-Match itself with a 304 that carries the
            # body checksum of the object; boto3 then fails to read the 304.
            headers = without_checksums(upstream.headers)
            return await self.stream(request, upstream, upstream.status, headers)

        status = upstream.status
        if "Range" in request.headers and upstream.headers.get("Content-Range"):
            status = 206
        refusal = precondition(request, upstream.headers)
        if refusal is not None:
            return refusal_or_not_modified(request, refusal, upstream.headers)

        row = await self.db_call(self.store.get, target.bucket, target.key)
        headers = self.object_headers(request, target, upstream.headers, row, status)
        return await self.stream(request, upstream, status, headers)

    def object_headers(self, request, target, upstream_headers, row, status):
        headers = CIMultiDict(
            (name, value)
            for name, value in upstream_headers.items()
            if name.lower() not in META_HEADERS
            and not name.lower().startswith("x-amz-meta-")
        )
        if row is not None and is_current(row[0], upstream_headers.get("ETag", "")):
            meta = row[1]
            headers["Content-Type"] = meta.get("content-type", DEFAULT_CONTENT_TYPE)
            for name, value in meta.items():
                if name != "content-type":
                    headers[name] = value
        elif "Content-Type" in upstream_headers:
            # Not written through this gateway (or changed since): rclone's
            # own answer, usually its guess from the name.
            headers["Content-Type"] = upstream_headers["Content-Type"]

        if status == 206:
            # The stored checksum is the whole object's, not this range's.
            headers = without_checksums(headers)
        for param, value in target.params.items():
            if param in RESPONSE_PARAMS:
                headers[param.removeprefix("response-")] = value
        return headers

    async def after_put_object(self, request, target, upstream):
        if upstream.status == 200:
            etag = upstream.headers.get("ETag", "")
            meta = request_meta(request.headers)
            await self.db_call(self.store.put, target.bucket, target.key, etag, meta)
        return await self.after_pass(request, target, upstream)

    async def after_copy_object(self, request, target, upstream):
        body = await upstream.read()
        if upstream.status == 200 and xml_root_name(body) == "CopyObjectResult":
            etag = next(iter(xml_fields(body, "ETag")), "")
            if request.headers.get("x-amz-metadata-directive") == "REPLACE":
                meta = request_meta(request.headers)
            else:
                meta = await self.source_meta(
                    request.headers["x-amz-copy-source"], etag
                )
            await self.db_call(self.store.put, target.bucket, target.key, etag, meta)
        return self.buffered(upstream, body)

    async def source_meta(self, copy_source: str, etag: str) -> dict:
        source = unquote(copy_source.partition("?")[0]).lstrip("/")
        bucket, _, key = source.partition("/")
        row = await self.db_call(self.store.get, bucket, key)
        # A copy has the source's bytes, so the same ETag as the source.
        return row[1] if row is not None and is_current(row[0], etag) else {}

    async def after_create_upload(self, request, target, upstream):
        body = await upstream.read()
        if upstream.status == 200:
            upload_id = next(iter(xml_fields(body, "UploadId")), "")
            if upload_id:
                meta = request_meta(request.headers)
                await self.db_call(
                    self.store.start_upload, upload_id, target.bucket, target.key, meta
                )
        return self.buffered(upstream, body)

    async def after_complete_upload(self, request, target, upstream):
        body = await upstream.read()
        # S3 may answer 200 and put the error in the body.
        if (
            upstream.status == 200
            and xml_root_name(body) == "CompleteMultipartUploadResult"
        ):
            etag = next(iter(xml_fields(body, "ETag")), "")
            await self.db_call(
                self.store.complete_upload,
                target.params["uploadId"],
                target.bucket,
                target.key,
                etag,
            )
        return self.buffered(upstream, body)

    async def after_abort_upload(self, request, target, upstream):
        if upstream.status in (200, 204):
            await self.db_call(self.store.end_upload, target.params["uploadId"])
        return await self.after_pass(request, target, upstream)

    async def after_delete_object(self, request, target, upstream):
        if upstream.status in (200, 204):
            await self.db_call(self.store.delete, target.bucket, [target.key])
        return await self.after_pass(request, target, upstream)

    async def after_delete_objects(self, request, target, upstream, request_body):
        body = await upstream.read()
        if upstream.status == 200 and xml_root_name(body) == "DeleteResult":
            failed = {
                key
                for element in xml_elements(body, "Error")
                for key in element_texts(element, "Key")
            }
            asked = [
                key
                for element in xml_elements(request_body, "Object")
                for key in element_texts(element, "Key")
            ]
            deleted = [key for key in asked if key not in failed]
            await self.db_call(self.store.delete, target.bucket, deleted)
        return self.buffered(upstream, body)

    async def after_delete_bucket(self, request, target, upstream):
        if upstream.status in (200, 204):
            await self.db_call(self.store.drop_bucket, target.bucket)
        return await self.after_pass(request, target, upstream)

    # Sending rclone's answer on.

    def buffered(self, upstream, body: bytes) -> web.Response:
        headers = response_headers(upstream.headers)
        headers.popall("Content-Length", None)
        return web.Response(status=upstream.status, body=body, headers=headers)

    async def stream(self, request, upstream, status, headers) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=response_headers(headers))
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        if request.method != "HEAD":
            # An upstream failure part-way raises here, and aiohttp then drops
            # the client's connection: a short body, never a silently cut one.
            try:
                if can_splice(request, upstream):
                    await self.splice_body(request, upstream, response)
                else:
                    while chunk := await upstream.content.readany():
                        await response.write(chunk)
            except (ConnectionResetError, BrokenPipeError):
                return response  # the client went away; nothing to tell it
        await response.write_eof()
        return response

    async def splice_body(self, request, upstream, response) -> None:
        """Move a large body from rclone's socket to the client's in the kernel.

        Copying each byte through Python costs about as much CPU as rclone
        spends serving it; splice(2) through a pipe costs a fraction. What
        aiohttp has already read goes first, the ordinary way; then reading
        from rclone's socket stops and a worker thread moves the rest.
        """
        try:
            await self._splice_body(request, upstream, response)
        finally:
            # The connection's HTTP state is unknown to aiohttp now.
            upstream.close()

    async def _splice_body(self, request, upstream, response) -> None:
        buffered = upstream.content.read_nowait()
        upstream_transport = upstream.connection.transport
        upstream_transport.pause_reading()
        if buffered:
            await response.write(buffered)
        client_transport = request.transport
        while client_transport.get_write_buffer_size():
            if client_transport.is_closing():
                break
            await asyncio.sleep(0.001)
        if client_transport.is_closing() or upstream_transport.is_closing():
            raise ConnectionResetError("a connection closed before the body")

        # Duplicates, owned by the thread: if the client goes away, the loop
        # closes its descriptor, and the number may at once be reused by a new
        # connection that the thread must never write to.
        source = os.dup(upstream_transport.get_extra_info("socket").fileno())
        target = os.dup(client_transport.get_extra_info("socket").fileno())
        remaining = upstream.content_length - len(buffered)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self.splicers, splice_all, source, target, remaining
            )
        except OSError:
            # Either side failed part-way: the client must see a short body.
            client_transport.abort()
            raise ConnectionResetError from None
        finally:
            os.close(source)
            os.close(target)


def can_splice(request, upstream) -> bool:
    if not hasattr(os, "splice") or request.method != "GET":
        return False
    if (upstream.content_length or 0) < SPLICE_MIN_BYTES:
        return False
    connection = upstream.connection
    return (
        connection is not None
        and connection.transport is not None
        and request.transport is not None
        and upstream.connection.transport.get_extra_info("socket") is not None
        and request.transport.get_extra_info("socket") is not None
    )


def splice_all(source: int, target: int, remaining: int) -> None:
    """Move `remaining` bytes between two non-blocking sockets via a pipe."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        chunk = PIPE_BYTES
    except OSError:  # above /proc/sys/fs/pipe-max-size
        chunk = 64 * 1024
    poller_in, poller_out = select.poll(), select.poll()
    poller_in.register(source, select.POLLIN)
    poller_out.register(target, select.POLLOUT)
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    try:
        while remaining:
            try:
                moved = os.splice(source, write_end, min(remaining, chunk), flags=flags)
            except BlockingIOError:
                wait(poller_in)
                continue
            if moved == 0:
                raise ConnectionAbortedError("rclone ended the body early")
            remaining -= moved
            while moved:
                try:
                    moved -= os.splice(read_end, target, moved, flags=flags)
                except BlockingIOError:
                    wait(poller_out)
    finally:
        os.close(read_end)
        os.close(write_end)


def wait(poller, timeout_seconds: int = 120) -> None:
    if not poller.poll(timeout_seconds * 1000):
        raise TimeoutError("no progress moving an object body")


async def read_limited(request: web.BaseRequest, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await request.content.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise Refusal(400, "MaxMessageLengthExceeded", "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def without_checksums(headers) -> CIMultiDict:
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if not name.lower().startswith("x-amz-checksum-")
    )


def response_headers(headers) -> CIMultiDict:
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length"
    )


def xml_elements(body: bytes, name: str):
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [el for el in root.iter() if local_name(el.tag) == name]


def element_texts(element, name: str) -> list[str]:
    return [child.text or "" for child in element if local_name(child.tag) == name]


def is_current(stored_etag: str, etag: str) -> bool:
    """Whether a metadata row still describes the object rclone serves.

    The row keeps the ETag of the write that stored it; a different ETag means
    the bytes were replaced without the gateway recording it (it died between
    rclone's answer and its own write), so the row is stale. rclone answers a
    completed multipart upload with an "<md5>-<parts>" ETag but serves the
    object with the MD5 of its bytes, and answers a copy onto the same key
    without any ETag; such rows cannot be checked this way.
    """
    return stored_etag == etag or not stored_etag or "-" in stored_etag


def etag_matches(header: str, etag: str) -> bool:
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in wanted or etag in wanted


def http_date(value: str):
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def precondition(request, upstream_headers) -> Refusal | None:
    """S3's evaluation of If-Match, If-Unmodified-Since, If-None-Match and
    If-Modified-Since; rclone ignores them."""
    headers = request.headers
    etag = upstream_headers.get("ETag", "")
    modified = http_date(upstream_headers.get("Last-Modified", ""))
    failed = Refusal(412, "PreconditionFailed", "at least one precondition failed")
    not_modified = Refusal(304, "NotModified", "not modified")

    if "If-Match" in headers:
        if not etag_matches(headers["If-Match"], etag):
            return failed
    elif "If-Unmodified-Since" in headers:
        since = http_date(headers["If-Unmodified-Since"])
        if since and modified and modified > since:
            return failed
    if "If-None-Match" in headers:
        if etag_matches(headers["If-None-Match"], etag):
            return not_modified
    elif "If-Modified-Since" in headers:
        since = http_date(headers["If-Modified-Since"])
        if since and modified and modified <= since:
            return not_modified
    return None


def refusal_or_not_modified(request, refusal, upstream_headers) -> web.Response:
    if refusal.status != 304:
        return error_response(request, refusal)
    headers = {
        name: upstream_headers[name]
        for name in ("ETag", "Last-Modified")
        if name in upstream_headers
    }
    return web.Response(status=304, headers=headers)


async def serve(args) -> None:
    store = MetadataStore(Path(args.metadata))
    store.forget_old_uploads(7 * 24 * 3600)
    gateway = Gateway(args.upstream, store)
    await gateway.start()

    server = web.Server(
        gateway.handle,
        # The client's bytes go to rclone as they are: a gzip body is an
        # object that happens to be gzip, not something to unpack.
        auto_decompress=False,
        read_bufsize=CHUNK,
        max_field_size=16384,
        access_log=None,
    )
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=20)
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or None, int(port)).start()
    logger.info("S3 gateway on %s, rclone on %s", args.listen, args.upstream)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()

    await runner.cleanup()
    await gateway.close()
    store.close()


def load_admin_key_id() -> None:
    """Learn the admin key id from the master secret the stack passes down."""
    global admin_key_id
    data_dir = os.environ.get("CORESTORE_DATA_DIR")
    if not data_dir:
        return
    secret = derive.read_master_secret(
        Path(data_dir), os.environ.get("CORESTORE_MASTER_SECRET")
    )
    if secret:
        admin_key_id = derive.s3_admin_credentials(secret)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--upstream", required=True, help="rclone's unix socket")
    parser.add_argument("--metadata", required=True, help="SQLite file")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    load_admin_key_id()
    # The same line format as the rest of the stack (CORESTORE_LOG_FORMAT).
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if args.log_format == "json" else TextFormatter()
    )
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # uvloop moves bytes with about a quarter less CPU than asyncio's loop.
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
