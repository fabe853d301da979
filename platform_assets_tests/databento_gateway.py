"""A local Databento gateway for tests: HTTPS on 127.0.0.1 answering what the real client calls.

``Historical(key, gateway=...)`` always speaks https, so the gateway serves TLS with a self-signed
certificate made here; tests trust it through ``REQUESTS_CA_BUNDLE``. Endpoints:

* ``POST /v0/timeseries.get_range``: HTTP Basic auth (key as user name), form fields dataset,
  symbols, schema, start, end, stype_in, encoding, compression; answers DBN bytes (zstd when asked)
  built by ``provider(request) -> bytes`` (uncompressed DBN);
* ``POST /v0/metadata.get_cost`` (a JSON float) and ``POST /v0/symbology.resolve`` (JSON);
* the reference API (``databento.Reference``): ``POST /v0/adjustment_factors.get_range`` and
  ``POST /v0/corporate_actions.get_range`` answer zstd JSON lines built by
  ``reference(request) -> list[dict]`` (``ReferenceVendor`` serves Databento-shaped records of
  normalized corporate actions, filtered by the request's symbols and ex-date range).

``script`` is a list of failures for the next calls: ``429`` (with Retry-After), ``500``,
``503``, ``timeout`` (sleeps past the client's timeout), ``drop`` (closes the connection);
``truncate`` (the DBN body cut short inside a record, then compressed and sent whole: HTTP 200
with a matching Content-Length) and ``cut_body`` (half of the zstd body sent with ``Connection:
close`` and no Content-Length, then the connection closed) for ``get_range``. Every request is
recorded in ``requests`` (path, form, user, time).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs

import zstandard


REFERENCE_ENDPOINTS = ("adjustment_factors.get_range", "corporate_actions.get_range")
DATABENTO_EVENT_CODES = {"split": "FSPLT", "reverse_split": "CONSD", "cash_dividend": "DIV", "other": "BON"}


@dataclass
class ReferenceVendor:
    """Databento-shaped reference records of normalized corporate actions (``ACTION_COLUMNS``).

    ``actions`` may be replaced between calls (a vendor correction); ``symbol_map`` maps vendor
    symbols the client asks for to the records' symbols. Filters: ``symbols`` and ``[start, end)``
    on the ex date, as the real API does (``index="ex_date"``).
    """

    actions: object  # pandas.DataFrame of normalized records
    unknown_symbols: set[str] = field(default_factory=set)

    def __call__(self, request: "GatewayRequest") -> list[dict]:
        symbols = [s for s in request.form.get("symbols", "").split(",") if s]
        if any(s in self.unknown_symbols for s in symbols):
            raise GatewayError(422, f"Unknown symbols: {','.join(s for s in symbols if s in self.unknown_symbols)}")
        start = dt.date.fromisoformat(request.form["start"][:10])
        end = dt.date.fromisoformat(request.form["end"][:10]) if request.form.get("end") else dt.date.max
        out = []
        for row in self.actions.to_dict("records"):
            if (symbols and "ALL_SYMBOLS" not in symbols and row["symbol"] not in symbols) or not (start <= row["ex_date"] < end):
                continue
            created = row["recorded_ts"].strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
            code = DATABENTO_EVENT_CODES[row["event"]]
            status = "C" if row["status"] == "cancelled" else "A"
            if request.path.endswith("adjustment_factors.get_range"):
                out.append({"security_id": f"SEC{row['symbol']}", "event_id": row["event_id"], "event": code, "issuer_name": row["symbol"],
                            "security_type": "EQS", "symbol": row["symbol"], "ex_date": row["ex_date"].isoformat(), "status": status,
                            "factor": row["factor"], "close": None, "currency": "USD", "sentiment": 1.0 / row["factor"],
                            "gross_dividend": None if row["dividend"] != row["dividend"] else row["dividend"],
                            "dividend_currency": "USD", "frequency": None, "option": 1, "detail": row["event"], "ts_created": created})
            else:
                out.append({"event_unique_id": f"U{row['event_id']}", "event_id": row["event_id"], "event": code, "symbol": row["symbol"],
                            "event_date": row["ex_date"].isoformat(), "event_created_date": row["announced_date"].isoformat(),
                            "ex_date": row["ex_date"].isoformat(), "ts_record": created, "ts_created": created,
                            "date_info": {"record_date": row["ex_date"].isoformat()},
                            "rate_info": {"ratio_new": row["split_ratio"] if row["split_ratio"] == row["split_ratio"] else None},
                            "event_info": {"action_status": status}})
        return out


def cut_mid_record(body: bytes) -> bytes:
    """About the first half of a DBN body, ending inside a record (or inside the metadata when
    there are no records)."""
    records = 8 + int.from_bytes(body[4:8], "little")
    if len(body) <= records:
        return body[: len(body) // 2]
    size = body[records] * 4
    return body[: records + (len(body) - records) // 2 // size * size + size // 2]


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "gateway-cert.pem", folder / "gateway-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class GatewayError(Exception):
    """Raised by a provider to answer an HTTP error (status, detail)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class GatewayRequest:
    path: str
    form: dict[str, str]
    user: str
    at: float


@dataclass
class DatabentoGateway:
    provider: Callable[[GatewayRequest], bytes]
    keys: set[str]
    folder: Path
    script: list[str] = field(default_factory=list)
    stall_seconds: float = 5.0
    requests: list[GatewayRequest] = field(default_factory=list)
    reference: Callable[[GatewayRequest], list[dict]] | None = None

    def __post_init__(self):
        self.cert, key = make_self_signed(self.folder)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, status: int, payload, headers: dict | None = None):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _send_cut(self, body: bytes):
                """Half the body, no Content-Length, then the connection closed: the client sees an end."""
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                user = ""
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
                request = GatewayRequest(self.path.split("?")[0], form, user, time.monotonic())
                gateway.requests.append(request)
                if user not in gateway.keys:
                    return self._json(401, {"detail": "Authentication failed."})
                failure = gateway.script.pop(0) if gateway.script else None
                if failure:
                    if failure == "429":
                        return self._json(429, {"detail": "Too many requests."}, {"Retry-After": "0"})
                    if failure in ("500", "503"):
                        return self._json(int(failure), {"detail": "Internal error."})
                    if failure == "timeout":
                        time.sleep(gateway.stall_seconds)
                        return self._json(504, {"detail": "late"})
                    if failure == "drop":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                if request.path.endswith("timeseries.get_range"):
                    if form.get("schema") == "bad-schema":
                        return self._json(422, {"detail": "Invalid schema."})
                    try:
                        body = gateway.provider(request)
                    except GatewayError as error:
                        return self._json(error.status, {"detail": error.detail})
                    if failure == "truncate":
                        body = cut_mid_record(body)
                    if form.get("compression") == "zstd":
                        body = zstandard.ZstdCompressor().compress(body)
                    if failure == "cut_body":
                        return self._send_cut(body)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif request.path.endswith(REFERENCE_ENDPOINTS):
                    if gateway.reference is None:
                        return self._json(404, {"detail": f"no reference data served at {request.path}"})
                    try:
                        records = gateway.reference(request)
                    except GatewayError as error:
                        return self._json(error.status, {"detail": error.detail})
                    body = "".join(json.dumps(r) + "\n" for r in records).encode()
                    body = zstandard.ZstdCompressor().compress(body)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif request.path.endswith("metadata.get_cost"):
                    self._json(200, 0.0)
                elif request.path.endswith("symbology.resolve"):
                    self._json(200, {"result": {}, "symbols": [], "stype_in": form.get("stype_in"), "stype_out": form.get("stype_out"), "start_date": form.get("start_date"), "end_date": form.get("end_date"), "partial": [], "not_found": [], "message": "OK", "status": 0})
                else:
                    self._json(404, {"detail": f"no route {request.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def get_range_requests(self) -> list[GatewayRequest]:
        return [r for r in self.requests if r.path.endswith("timeseries.get_range")]

    def reference_requests(self) -> list[GatewayRequest]:
        return [r for r in self.requests if r.path.endswith(REFERENCE_ENDPOINTS)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
