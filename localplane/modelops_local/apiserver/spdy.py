"""SPDY/3.1 framing, the part `kubectl port-forward` needs of it.

kubectl 1.31+ opens port-forwards as a WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io`
(KEP-4006): the WebSocket's binary messages carry a plain SPDY/3.1 byte stream, in which the client
opens two streams per forwarded connection (`streamType: error` and `streamType: data`, with `port`
and `requestID` headers), exactly as it has always spoken to the kubelet. So the API server must speak
SPDY inside the tunnel: frames, the zlib-compressed name/value header blocks (with the SPDY/3
dictionary), SYN_REPLY to accept a stream, DATA with FIN to half-close, PING echoes, RST_STREAM.

Flow control (WINDOW_UPDATE) is accepted and ignored, as moby/spdystream (the client's implementation)
does. Everything here is pure byte handling; `streaming.py` drives it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL = 5
RST_PROTOCOL_ERROR = 1

# The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed names and
# values, then a literal tail. Its adler32 is what a zlib stream compressed with it names.
_DICT_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date etag "
    "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
    "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
    "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status"
)
_DICT_WORDS = [*_DICT_NAMES.split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie"]
_DICT_WORDS += ["keep-alive", "origin"]
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICT_WORDS) + _DICT_TAIL.encode()
DICTIONARY_ADLER32 = 0xE3C6A7C2


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


@dataclass
class Frame:
    """One frame: `kind` is the control frame type, or 0 for a DATA frame."""

    kind: int
    flags: int
    stream_id: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0  # RST_STREAM / GOAWAY status, PING id


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, headers = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (v,) = struct.unpack_from(">I", block, pos)
            # Several values of one name are NUL-separated; the first is what port-forward reads.
            headers[name.lower()] = block[pos + 4 : pos + 4 + v].decode().split("\0")[0]
            pos += 4 + v
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed SPDY header block: {e}") from None
    return headers


class Codec:
    """One side of a SPDY session: frames from a byte stream in, frames as bytes out.

    A session has one zlib stream per direction for header blocks, so one Codec serves one connection.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by `data` (partial frames wait for the next call)."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, body = bytes(self._buf[:8]), bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frames.append(self._parse(head, body))
        return frames

    def _parse(self, head: bytes, body: bytes) -> Frame:
        first, flags = struct.unpack_from(">I", head, 0)[0], head[4]
        if not first & 0x80000000:
            return Frame(0, flags, first & 0x7FFFFFFF, body)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not supported; this server speaks SPDY/3.1")
        if kind == SYN_STREAM:
            stream_id = struct.unpack_from(">I", body, 0)[0] & 0x7FFFFFFF
            return Frame(kind, flags, stream_id, headers=self._inflate_block(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            stream_id = struct.unpack_from(">I", body, 0)[0] & 0x7FFFFFFF
            return Frame(kind, flags, stream_id, headers=self._inflate_block(body[4:]))
        if kind in (RST_STREAM, WINDOW_UPDATE, GOAWAY) and len(body) >= 8:
            stream_id, status = struct.unpack_from(">II", body, 0)
            return Frame(kind, flags, stream_id & 0x7FFFFFFF, status=status)
        if kind == PING and len(body) >= 4:
            return Frame(kind, flags, status=struct.unpack_from(">I", body, 0)[0])
        return Frame(kind, flags, data=body)  # SETTINGS and anything unknown: ignored by the caller

    def _inflate_block(self, block: bytes) -> dict[str, str]:
        try:
            return decode_headers(self._inflate.decompress(block))
        except zlib.error as e:
            raise ProtocolError(f"SPDY header block does not decompress: {e}") from None

    def _deflate_block(self, headers: dict[str, str]) -> bytes:
        return self._deflate.compress(encode_headers(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        body = struct.pack(">I", stream_id) + self._deflate_block(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def rst_stream(self, stream_id: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream, status))

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        """DATA frame(s) for `payload` (split below the 24-bit length limit)."""
        chunks = [payload[i : i + 0xFFFF] for i in range(0, len(payload), 0xFFFF)] or [b""]
        out = []
        for i, chunk in enumerate(chunks):
            flags = FLAG_FIN if fin and i == len(chunks) - 1 else 0
            out.append(struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(chunk)) + chunk)
        return b"".join(out)
