"""What Python's `websockets` (Debian's python3-websockets, 10.4) sees of a WebSocket handshake.

Usage: /usr/bin/python3 ws_handshake_client.py PORT PATH [HEADER: VALUE]...
       /usr/bin/python3 ws_handshake_client.py raw-tls PORT WAIT_MS < REQUEST

Prints one JSON object on stdout:
  connect  what `websockets.connect()` (the asyncio client most users call) did: "open" when it
           connected, else the exception's class and its status code when it has one
  status, reason, body
           the HTTP response as the library's own parser read it (its Sans-I/O client
           connection, which keeps the body of a refused handshake)
Exit status 0 whenever a response or an exception was seen.

raw-tls sends REQUEST's bytes as they are over TLS (no certificate check) and prints what came
back within WAIT_MS: {"answer": <first bytes, latin-1>, "closed": <the server closed>}."""

import asyncio
import json
import socket
import sys

import websockets
from websockets.client import ClientConnection
from websockets.http11 import Response
from websockets.uri import parse_uri


def headers_of(args):
    return [tuple(part.strip() for part in a.split(":", 1)) for a in args]


async def with_connect(uri, headers):
    try:
        async with websockets.connect(uri, extra_headers=headers, open_timeout=5):
            return {"connect": "open"}
    except websockets.exceptions.InvalidStatusCode as e:
        return {"connect": type(e).__name__, "connect_status": e.status_code}
    except Exception as e:  # InvalidMessage, for one: "did not receive a valid HTTP response"
        return {"connect": type(e).__name__, "connect_error": str(e)}


def with_parser(port, uri, headers):
    conn = ClientConnection(parse_uri(uri))
    request = conn.connect()
    for name, value in headers:
        request.headers[name] = value
    conn.send_request(request)
    out = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for data in conn.data_to_send():
            s.sendall(data)
        while not conn.events_received() and "status" not in out:
            try:
                data = s.recv(65536)
            except socket.timeout:
                out["parser"] = "timeout"
                break
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
            for event in conn.events_received():
                if isinstance(event, Response):
                    out["status"] = event.status_code
                    out["reason"] = event.reason_phrase
                    out["body"] = (event.body or b"").decode("utf-8", "replace")
            if not data:
                break
    if "status" not in out and conn.handshake_exc is not None:
        out["parser"] = "%s: %s" % (type(conn.handshake_exc).__name__, conn.handshake_exc)
    return out


def raw_tls(port, wait_ms):
    import ssl
    import time

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = sys.stdin.buffer.read()
    answer, closed = b"", False
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as s:
        s.sendall(request)
        deadline = time.monotonic() + wait_ms / 1000
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionError, ssl.SSLError):
                closed = True
                break
            if not data:
                closed = True
                break
            answer += data
    print(json.dumps({"answer": answer[:512].decode("latin-1"), "closed": closed}))


def main():
    if sys.argv[1] == "raw-tls":
        raw_tls(int(sys.argv[2]), int(sys.argv[3]))
        return
    port, path = int(sys.argv[1]), sys.argv[2]
    headers = headers_of(sys.argv[3:])
    uri = "ws://127.0.0.1:%d%s" % (port, path)
    result = asyncio.run(with_connect(uri, headers))
    result.update(with_parser(port, uri, headers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
