"""The client half of a WebSocket (RFC 6455), enough to read ComfyUI's progress messages.

ComfyUI's progress comes over /ws; the standard library has no WebSocket client, and the pack's
headless client should need nothing beyond Python itself.
"""

import base64
import hashlib
import os
import socket
import ssl
import struct
import urllib.parse

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(ConnectionError):
    pass


class WebSocket:
    """A connected WebSocket. `receive()` returns whole messages: str (text), bytes (binary), or
    None once the server has closed the connection."""

    def __init__(self, url: str, timeout: float = 30):
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        self._socket = sock
        self._reader = sock.makefile("rb")
        self._handshake(parts, port)

    def _handshake(self, parts, port):
        key = base64.b64encode(os.urandom(16))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._socket.sendall(request.encode())
        status = self._reader.readline().decode("latin-1").strip()
        headers = {}
        while line := self._reader.readline().decode("latin-1").strip():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status.split(" ")[1:2] != ["101"]:
            raise WebSocketError(f"the server answered '{status}' instead of switching to a WebSocket")
        expected = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise WebSocketError("the server's WebSocket handshake did not match the request")

    def settimeout(self, seconds):
        self._socket.settimeout(seconds)

    def receive(self):
        opcode, message = None, b""
        while True:
            fin, frame_opcode, payload = self._read_frame()
            if frame_opcode == CLOSE:
                return None
            if frame_opcode == PING:
                self._send(PONG, payload)
                continue
            if frame_opcode == PONG:
                continue
            if frame_opcode != CONTINUATION:
                opcode = frame_opcode
            message += payload
            if fin:
                return message.decode() if opcode == TEXT else message

    def _read_frame(self):
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._read(8))
        mask = self._read(4) if second & 0x80 else None
        payload = self._read(length)
        if mask:  # servers never mask, but the format allows it
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, n):
        data = self._reader.read(n)
        if len(data) < n:
            raise WebSocketError("the connection closed in the middle of a message")
        return data

    def _send(self, opcode, payload: bytes):
        """Clients must mask what they send (RFC 6455 section 5.3)."""
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._socket.sendall(header + mask + masked)

    def close(self):
        try:
            self._send(CLOSE, b"")
        except OSError:
            pass
        self._reader.close()
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
