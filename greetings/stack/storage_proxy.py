"""The local stack's stand-in for Cloud Storage's browser-facing side, in front of its emulator.

gcp-storage-emulator sends no CORS headers, checks no signatures and serves every object to
anyone, so a browser can neither upload to it nor read from it as it does in production, and a
test against it would pass where Cloud Storage refuses. This proxy does what production Cloud
Storage does for the web page and the result links:

- a V4 signed `PUT /{bucket}/{object}` (the signature checked with the stack's local signing key,
  the expiry and the signed headers, as Storage would) stores the body in the emulator; with
  `x-goog-if-generation-match: 0` only when no object is there yet (412 otherwise);
- a V4 signed `GET /{bucket}/{object}` (a result's `downloadUrl`) is served from the emulator,
  with ranges; anything else is an anonymous read, refused as Storage refuses it (no listing, no
  object, JSON API included): the bucket is private;
- CORS for the page's origin, as the bucket's CORS configuration does in production
  (deployments/storage-cors.json).

`GET /_health` is the proxy's own (the stack's health check); no bucket name starts with `_`.
`POST /_token` stands in for Google's OAuth token endpoint (the stack key's `token_uri`): a
service-account JWT signed with the stack's key gets an access token, as
https://oauth2.googleapis.com/token answers it. That is what google-auth's service-account
credentials (prefect-gcp's GcpCredentials, for one) need before they talk to the Storage emulator,
which ignores the token.

    python -m greetings.stack.storage_proxy --port 9198 --upstream http://127.0.0.1:9199 \\
        --key .greetings/upload-signer.json --allow-origin http://127.0.0.1:5005
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.cloud.storage._signing import _url_encode, get_canonical_headers

CHUNK = 1024 * 1024
SIGNED_QUERY = ("X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires")
HEALTH_PATH = "/_health"
TOKEN_PATH = "/_token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The emulator's JSON API routes (and their Node-style `/b/...` alias): Cloud Storage takes no
# signed URLs there, only OAuth tokens, which the proxy does not accept.
JSON_API_PREFIXES = ("/storage/v1", "/download/storage/v1", "/upload/storage/v1", "/batch/", "/b/")
PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."
# A conditional PUT's existence check and its upload happen under one of these (by object), so two
# uploads of the same object through the proxy cannot both find it absent.
_OBJECT_LOCKS = tuple(threading.Lock() for _ in range(64))


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def generate_signer_key(
    path: Path, project_id: str, token_uri: str = "https://oauth2.googleapis.com/token"
) -> None:
    """A service-account-shaped key the local trigger signs with and this proxy checks.

    `token_uri` is where google-auth trades the key for an access token: the proxy's `/_token`
    on the local stack (`ensure_token_uri` points an older key there).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"local-upload-signer@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": hashlib.sha256(pem.encode()).hexdigest()[:40],
        "private_key": pem,
        "client_email": email,
        "client_id": "0",
        "token_uri": token_uri,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))
    path.chmod(0o600)


def ensure_token_uri(path: Path, token_uri: str) -> None:
    """Points an existing key's `token_uri` at `token_uri` (keys made before `/_token` existed)."""
    info = json.loads(path.read_text())
    if info.get("token_uri") != token_uri:
        path.write_text(json.dumps({**info, "token_uri": token_uri}))


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def grant_token(
    public_key: rsa.RSAPublicKey, signer_email: str, form: dict[str, str], now: datetime
) -> dict[str, Any]:
    """Google's answer to a service account's JWT-bearer grant; raises Refused as it refuses.

    Checks what the real endpoint checks of the assertion: RS256 signed by the stack's key, issued
    by its account, not expired. The token itself means nothing to the emulator behind.
    """
    if form.get("grant_type") != JWT_BEARER:
        raise Refused(400, "unsupported_grant_type", "only the JWT bearer grant is served")
    try:
        header_b64, claims_b64, signature_b64 = form.get("assertion", "").split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(claims_b64))
        public_key.verify(
            _b64url(signature_b64),
            f"{header_b64}.{claims_b64}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (ValueError, InvalidSignature) as exc:
        raise Refused(400, "invalid_grant", "Invalid JWT Signature.") from exc
    if header.get("alg") != "RS256" or claims.get("iss") != signer_email:
        raise Refused(400, "invalid_grant", "Invalid JWT: unknown issuer or algorithm.")
    if float(claims.get("exp", 0)) < now.timestamp():
        raise Refused(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token.")
    token = hashlib.sha256(f"{claims_b64}{now.timestamp()}".encode()).hexdigest()
    return {"access_token": f"local-stack.{token}", "expires_in": 3600, "token_type": "Bearer"}


def verify_v4(
    public_key: rsa.RSAPublicKey,
    signer_email: str,
    method: str,
    raw_path: str,
    query: dict[str, str],
    headers: dict[str, str],
    now: datetime,
) -> None:
    """Checks a V4-signed request the way Cloud Storage does; raises Refused when it fails."""
    missing = [
        name
        for name in (*SIGNED_QUERY, "X-Goog-SignedHeaders", "X-Goog-Signature")
        if name not in query
    ]
    if missing:
        raise Refused(403, "MissingSecurityHeader", f"not a signed URL (no {missing[0]})")
    if query["X-Goog-Algorithm"] != "GOOG4-RSA-SHA256":
        raise Refused(400, "InvalidArgument", "unsupported signing algorithm")
    timestamp = query["X-Goog-Date"]
    credential = query["X-Goog-Credential"]
    email, _, scope = credential.partition("/")
    if email != signer_email:
        raise Refused(403, "AccessDenied", "signed by an unknown account")
    signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if now > signed_at + timedelta(seconds=int(query["X-Goog-Expires"])):
        raise Refused(400, "ExpiredToken", "the signed URL has expired")
    signed_names = query["X-Goog-SignedHeaders"].split(";")
    lowered = {k.lower(): v for k, v in headers.items()}
    absent = [name for name in signed_names if name not in lowered]
    if absent:
        raise Refused(403, "SignatureDoesNotMatch", f"signed header {absent[0]} not sent")
    canonical_headers, ordered = get_canonical_headers({n: lowered[n] for n in signed_names})
    unsigned_query = {k: v for k, v in query.items() if k != "X-Goog-Signature"}
    canonical_request = "\n".join(
        [
            method,
            raw_path,
            _url_encode(dict(sorted(unsigned_query.items()))),
            "\n".join(canonical_headers) + "\n",
            ";".join(name for name, _ in ordered),
            "UNSIGNED-PAYLOAD",
        ]
    )
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode("ascii")).hexdigest(),
        ]
    )
    try:
        public_key.verify(
            bytes.fromhex(query["X-Goog-Signature"]),
            string_to_sign.encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError) as exc:
        raise Refused(403, "SignatureDoesNotMatch", "the signature does not match") from exc


def length_range(headers: dict[str, str]) -> tuple[int, int] | None:
    value = {k.lower(): v for k, v in headers.items()}.get("x-goog-content-length-range")
    if value is None:
        return None
    low, _, high = value.partition(",")
    return int(low), int(high)


def generation_match(headers: dict[str, str]) -> int | None:
    """The request's `x-goog-if-generation-match`, if it has one."""
    value = {k.lower(): v for k, v in headers.items()}.get("x-goog-if-generation-match")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise Refused(400, "InvalidArgument", "x-goog-if-generation-match must be a generation")
    return int(value)


def precondition_holds(expected: int, stored: int | None) -> bool:
    """Storage's if-generation-match: 0 means "no object there yet", another number that one."""
    return stored is None if expected == 0 else stored == expected


def xml_object(raw_path: str) -> tuple[str, str]:
    """The bucket and object an XML API path names, decoded; the object is "" for a bucket."""
    bucket, _, name = urllib.parse.unquote(raw_path.lstrip("/")).partition("/")
    return bucket, name


def is_json_api(raw_path: str) -> bool:
    return raw_path.startswith(JSON_API_PREFIXES) or raw_path == "/b"


def anonymous_refusal(raw_path: str) -> Refused:
    """What Cloud Storage answers a read without credentials on a private bucket: the JSON API
    401 (login required), the XML API 403 (AccessDenied)."""
    if is_json_api(raw_path):
        status, code = 401, "required"
        # `.../b` lists buckets, `.../b/{bucket}/o` objects; anything longer names one.
        kind = raw_path.rstrip("/").rsplit("/", 1)[-1]
    else:
        status, code = 403, "AccessDenied"
        bucket, name = xml_object(raw_path)
        kind = "object" if name else "o" if bucket else "b"
    what = {
        "b": "storage.buckets.list access to the Google Cloud project",
        "o": "storage.objects.list access to the Google Cloud Storage bucket",
    }.get(kind, "storage.objects.get access to the Google Cloud Storage object")
    return Refused(status, code, f"Anonymous caller does not have {what}.")


def read_target(
    public_key: rsa.RSAPublicKey,
    signer_email: str,
    method: str,
    raw_path: str,
    query: dict[str, str],
    headers: dict[str, str],
    now: datetime,
) -> str:
    """The emulator path that serves an authorized read; raises Refused as Cloud Storage would.

    Only a V4 signature by the stack's key authorizes a read, of the one object it names and with
    the method it was signed for (a result's downloadUrl is signed for GET).
    """
    signed = any(name in query for name in (*SIGNED_QUERY, "X-Goog-Signature"))
    if is_json_api(raw_path) or not signed:
        raise anonymous_refusal(raw_path)
    verify_v4(public_key, signer_email, method, raw_path, query, headers, now)
    bucket, name = xml_object(raw_path)
    if not bucket or not name:
        # Nothing signs a listing: the stack's URLs name one object each.
        raise Refused(501, "NotImplemented", "the local proxy serves objects, not listings")
    return (
        f"/download/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
        f"{urllib.parse.quote(name, safe='')}?alt=media"
    )


def _object_lock(bucket: str, name: str) -> threading.Lock:
    digest = hashlib.sha256(f"{bucket}/{name}".encode()).digest()
    return _OBJECT_LOCKS[digest[0] % len(_OBJECT_LOCKS)]


class ProxyHandler(BaseHTTPRequestHandler):
    upstream: ClassVar[urllib.parse.SplitResult]
    allow_origins: ClassVar[frozenset[str]]
    public_key: ClassVar[rsa.RSAPublicKey]
    signer_email: ClassVar[str]
    protocol_version = "HTTP/1.1"

    # --- CORS, as a bucket's CORS configuration answers it ---------------------------------------

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.allow_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag")

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, PUT")
        self.send_header(
            "Access-Control-Allow-Headers",
            "Content-Type, Range, x-goog-content-length-range, x-goog-if-generation-match",
        )
        self.send_header("Access-Control-Max-Age", "3600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _error(self, status: int, code: str, message: str, *, json_api: bool = False) -> None:
        # Cloud Storage's error shapes: the XML API's, or the JSON API's (`code` is its reason).
        if json_api:
            content_type = "application/json; charset=UTF-8"
            error = {"code": status, "message": message}
            errors = [{"message": message, "domain": "global", "reason": code}]
            body = json.dumps({"error": {**error, "errors": errors}}).encode()
        else:
            content_type = "application/xml; charset=UTF-8"
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message></Error>"
            ).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- POST /_token: the OAuth token endpoint of the stack's service account ------------------

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        if urllib.parse.urlsplit(self.path).path != TOKEN_PATH:
            self._error(405, "MethodNotAllowed", "only PUT uploads and POST /_token are served")
            return
        form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        try:
            answer = grant_token(self.public_key, self.signer_email, form, datetime.now(UTC))
            status = 200
        except Refused as refused:  # OAuth's error shape, not Storage's
            answer, status = {"error": refused.code, "error_description": refused.message}, 400
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # --- uploads: PUT /{bucket}/{object} with a V4 signature -------------------------------------

    def do_PUT(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        try:
            verify_v4(
                self.public_key,
                self.signer_email,
                "PUT",
                split.path,
                query,
                headers,
                datetime.now(UTC),
            )
            length = int(self.headers.get("Content-Length", "-1"))
            if length < 0:
                raise Refused(411, "MissingContentLength", "Content-Length is required")
            bounds = length_range(headers)
            if bounds and not bounds[0] <= length <= bounds[1]:
                raise Refused(400, "EntityTooLarge", f"{length} bytes is outside {bounds}")
            expected = generation_match(headers)
        except Refused as refused:
            self._drain()
            self._error(refused.status, refused.code, refused.message)
            return
        bucket, name = xml_object(split.path)
        target = (
            f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?uploadType=media&name="
            f"{urllib.parse.quote(name, safe='')}"
        )
        # The emulator knows no preconditions and overwrites: the check is made here, before the
        # upload, under the object's lock.
        guard = _object_lock(bucket, name) if expected is not None else contextlib.nullcontext()
        with guard:
            try:
                if expected is not None and not precondition_holds(
                    expected, self._stored_generation(bucket, name)
                ):
                    raise Refused(412, "PreconditionFailed", PRECONDITION_FAILED)
            except Refused as refused:
                self._drain()
                self._error(refused.status, refused.code, refused.message)
                return
            status, body = self._forward_upload(
                target, length, self.headers.get("Content-Type", "application/octet-stream")
            )
        self.send_response(200 if 200 <= status < 300 else 502)
        self._cors()
        self.send_header("Content-Length", "0" if status < 300 else str(len(body)))
        self.end_headers()
        if status >= 300:
            self.wfile.write(body)

    def _stored_generation(self, bucket: str, name: str) -> int | None:
        """The generation of the emulator's object (its metadata), None when there is none."""
        target = (
            f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
            f"{urllib.parse.quote(name, safe='')}"
        )
        connection = self._connection()
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise Refused(503, "ServiceUnavailable", f"the storage emulator: {exc}") from exc
        finally:
            connection.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise Refused(502, "InternalError", f"the storage emulator answered {response.status}")
        try:
            return int(json.loads(body).get("generation"))
        except (ValueError, TypeError, AttributeError):
            return -1  # there, of a generation no precondition can name

    def _drain(self) -> None:
        remaining = int(self.headers.get("Content-Length", "0") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)

    def _forward_upload(self, target: str, length: int, content_type: str) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.putrequest("POST", target)
            connection.putheader("Content-Type", content_type)
            connection.putheader("Content-Length", str(length))
            connection.endheaders()
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(CHUNK, remaining))
                if not chunk:
                    break
                connection.send(chunk)
                remaining -= len(chunk)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    # --- downloads: GET /{bucket}/{object} with a V4 signature, with CORS ------------------------

    def do_GET(self) -> None:
        self._read("GET")

    def do_HEAD(self) -> None:
        self._read("HEAD")

    def _read(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        if split.path == HEALTH_PATH:
            self._health()
            return
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        try:
            target = read_target(
                self.public_key,
                self.signer_email,
                method,
                split.path,
                query,
                {k: v for k, v in self.headers.items()},
                datetime.now(UTC),
            )
        except Refused as refused:
            self._error(
                refused.status, refused.code, refused.message, json_api=is_json_api(split.path)
            )
            return
        self._pass_through(method, target)

    def _health(self) -> None:
        """200 while the emulator behind answers its own health check."""
        connection = self._connection()
        try:
            connection.request("GET", "/")
            healthy = connection.getresponse().status == 200
        except OSError:
            healthy = False
        finally:
            connection.close()
        body = b"OK" if healthy else b"the storage emulator does not answer"
        self.send_response(200 if healthy else 502)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _pass_through(self, method: str, target: str) -> None:
        connection = self._connection()
        try:
            forwarded = {k: v for k, v in self.headers.items() if k.lower() in ("range",)}
            # The emulator has no HEAD: a GET whose body is not read answers it.
            connection.request("GET", target, headers=forwarded)
            response = connection.getresponse()
            self.send_response(response.status)
            self._cors()
            for name, value in response.getheaders():
                if name.lower() in (
                    "content-type",
                    "content-length",
                    "content-range",
                    "etag",
                    "accept-ranges",
                    "cache-control",
                    "last-modified",
                ):
                    self.send_header(name, value)
            self.end_headers()
            while method == "GET" and (chunk := response.read(CHUNK)):
                self.wfile.write(chunk)
        finally:
            connection.close()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=120
        )

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def make_server(
    host: str, port: int, upstream: str, key_file: Path, origins: list[str]
) -> ThreadingHTTPServer:
    """The proxy, bound (port 0: any free port) but not serving yet."""
    info = json.loads(key_file.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)

    class Handler(ProxyHandler):
        pass

    Handler.upstream = urllib.parse.urlsplit(upstream)
    Handler.allow_origins = frozenset(origins)
    Handler.public_key = private.public_key()
    Handler.signer_email = info["client_email"]
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(host: str, port: int, upstream: str, key_file: Path, origins: list[str]) -> None:
    server = make_server(host, port, upstream, key_file, origins)
    print(f"storage proxy on http://{host}:{port} -> {upstream}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--allow-origin", action="append", default=[])
    args = parser.parse_args()
    serve(args.host, args.port, args.upstream, args.key, args.allow_origin)


if __name__ == "__main__":
    main()
