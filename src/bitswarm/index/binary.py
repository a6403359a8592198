"""Sans-I/O codec of the binary index protocol (seed 001); byte layout in docs/protocols/index-binary.md.

A frame is a 5-byte header — payload length (uint32, big-endian, payload bytes only) and message
type (uint8) — then a UTF-8 payload whose lines are separated by ``\\n`` and whose file/peer records
separate fields by ``|``. Replies carry the request type with bit 7 set (``*_OK``) or bits 7 and 6
set (``*_KO``); type ``0xFF`` (``ERROR``) answers a frame of unknown type.

:class:`IndexConnection` follows h11: :meth:`~IndexConnection.receive_data` takes bytes,
:meth:`~IndexConnection.next_event` returns one event or :data:`NEED_DATA`, and
:meth:`~IndexConnection.send` turns an event into bytes. Bad input raises only
:class:`~bitswarm.index.IndexCodecError`; its ``hint`` is the reply event to send back when the
connection can go on (the bad frame was consumed), or ``None`` when it must be closed.

The login rule of seed 001 ("before doing any calls … a login call") is one table,
:data:`ALLOWED`: which request types a server connection accepts in each state.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Final, Literal

from bitswarm.errors import LocalProtocolError
from bitswarm.index._errors import IndexCodecError

HEADER: Final = struct.Struct("!IB")
HEADER_SIZE: Final = HEADER.size
#: Largest payload accepted (and sent): 1 MiB.
MAX_PAYLOAD: Final = 1 << 20
#: Largest payload a server accepts before LOGIN_OK: a LOGIN, or a REGISTER of ~150 files, fits; a
#: longer file list goes in a REGISTER_UPDATE once logged in. An unauthenticated connection thus holds
#: at most this much (plus one read) instead of 1 MiB.
MAX_PAYLOAD_BEFORE_LOGIN: Final = 16 * 1024
OK_BIT: Final = 0x80
KO_BITS: Final = 0xC0


class MessageType(enum.IntEnum):
    REGISTER = 0x01
    REGISTER_UPDATE = 0x02
    LOGIN = 0x03
    KEEP_ALIVE = 0x04
    LOGOUT = 0x05
    SEARCH = 0x06
    BROWSE = 0x07
    SHOW_PEERS = 0x08
    REGISTER_OK = 0x81
    REGISTER_UPDATE_OK = 0x82
    LOGIN_OK = 0x83
    KEEP_ALIVE_OK = 0x84
    LOGOUT_OK = 0x85
    SEARCH_OK = 0x86
    BROWSE_OK = 0x87
    SHOW_PEERS_OK = 0x88
    REGISTER_KO = 0xC1
    REGISTER_UPDATE_KO = 0xC2
    LOGIN_KO = 0xC3
    KEEP_ALIVE_KO = 0xC4
    LOGOUT_KO = 0xC5
    SEARCH_KO = 0xC6
    BROWSE_KO = 0xC7
    SHOW_PEERS_KO = 0xC8
    ERROR = 0xFF


REQUESTS: Final = frozenset(t for t in MessageType if t < OK_BIT)

# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedFile:
    """``filename|dimension_in_mb|sha1``: ``size_mb`` is decimal text (``700``, ``1.5``) kept as sent."""

    filename: str
    size_mb: str
    sha1: str


@dataclass(frozen=True, slots=True)
class Register:
    username: str
    password: str
    files: tuple[SharedFile, ...]


@dataclass(frozen=True, slots=True)
class RegisterUpdate:
    username: str
    password: str
    peer_id: str
    files: tuple[SharedFile, ...]


@dataclass(frozen=True, slots=True)
class Login:
    """``username\\npassword\\nid`` and, our addition, an optional 4th line: the BitTorrent port."""

    username: str
    password: str
    peer_id: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    peer_id: str


@dataclass(frozen=True, slots=True)
class Logout:
    username: str
    password: str
    peer_id: str


@dataclass(frozen=True, slots=True)
class Search:
    query: str


@dataclass(frozen=True, slots=True)
class Browse:
    peer_id: str


@dataclass(frozen=True, slots=True)
class ShowPeers:
    which: Literal["online", "offline", "all"]


@dataclass(frozen=True, slots=True)
class RegisterOk:
    """``REGISTER SUCCESS\\n<id>``: the seed's text plus the id the seed says the server releases."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class SimpleOk:
    """The ``*_OK`` replies whose payload is only a text (``LOGIN SUCCESS`` …)."""

    type: MessageType
    text: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    filename: str
    size_mb: str
    sha1: str
    username: str
    peer_id: str
    peer_ip: str
    peer_port: int


@dataclass(frozen=True, slots=True)
class SearchOk:
    hits: tuple[SearchHit, ...]


@dataclass(frozen=True, slots=True)
class BrowseOk:
    files: tuple[SharedFile, ...]


@dataclass(frozen=True, slots=True)
class PeerEntry:
    peer_id: str
    username: str
    ip: str
    port: int
    online: bool


@dataclass(frozen=True, slots=True)
class ShowPeersOk:
    peers: tuple[PeerEntry, ...]


@dataclass(frozen=True, slots=True)
class Ko:
    """A ``*_KO`` reply to request ``request``: a description of the error (seed 001)."""

    request: MessageType
    reason: str


@dataclass(frozen=True, slots=True)
class Error:
    """``ERROR`` (0xFF): the answer to a frame whose type we do not know."""

    reason: str


Request = Register | RegisterUpdate | Login | KeepAlive | Logout | Search | Browse | ShowPeers
Reply = RegisterOk | SimpleOk | SearchOk | BrowseOk | ShowPeersOk | Ko | Error
Event = Request | Reply


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()

SIMPLE_OK_TEXT: Final = {
    MessageType.REGISTER_UPDATE_OK: "REGISTER UPDATE SUCCESS",
    MessageType.LOGIN_OK: "LOGIN SUCCESS",
    MessageType.KEEP_ALIVE_OK: "KEEP ALIVE SUCCESS",
    MessageType.LOGOUT_OK: "LOGOUT SUCCESS",
}

# -- the login state table -----------------------------------------------------------------------


class State(enum.Enum):
    NEW = "new"
    LOGGED_IN = "logged_in"
    BROKEN = "broken"


#: Requests a server connection accepts in each state; anything else is answered ``*_KO``.
ALLOWED: Final[dict[State, frozenset[MessageType]]] = {
    State.NEW: frozenset({MessageType.REGISTER, MessageType.REGISTER_UPDATE, MessageType.LOGIN}),
    State.LOGGED_IN: REQUESTS,
    State.BROKEN: frozenset(),
}
#: Replies the server sends that move its connection to another state.
TRANSITIONS: Final[dict[tuple[State, MessageType], State]] = {
    (State.NEW, MessageType.LOGIN_OK): State.LOGGED_IN,
    (State.LOGGED_IN, MessageType.LOGIN_OK): State.LOGGED_IN,
    (State.LOGGED_IN, MessageType.LOGOUT_OK): State.NEW,
}

# -- field rules ----------------------------------------------------------------------------------

_SIZE = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_PEER_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_FORBIDDEN = re.compile(r"[\n|\x00]")
MAX_FIELD: Final = 1024


def _text_field(value: str, what: str) -> str:
    if not value or len(value) > MAX_FIELD or _FORBIDDEN.search(value):
        raise ValueError(f"{what} must be 1 to {MAX_FIELD} characters without newline, '|' or NUL")
    return value


def _peer_id(value: str) -> str:
    if not _PEER_ID.fullmatch(value):
        raise ValueError("bad peer id")
    return value


def _port(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 < len(value) <= 5 or not 0 < int(value) < 65536:
        raise ValueError("bad port")
    return int(value)


def _port0(value: str) -> int:
    """A port in a reply: 0 means "not known"."""
    return 0 if value == "0" else _port(value)


def _shared_file(line: str, *, reply: bool = False) -> SharedFile:
    """A file record; in replies size and sha1 may be empty (a file another front end registered
    without them)."""
    fields = line.split("|")
    if len(fields) != 3:
        raise ValueError("a file line is filename|dimension_in_mb|sha1")
    name, size, sha1 = fields
    if not _SIZE.fullmatch(size) and not (reply and size == ""):
        raise ValueError("dimension_in_mb must be a decimal number")
    if not _SHA1.fullmatch(sha1) and not (reply and sha1 == ""):
        raise ValueError("sha1 must be 40 hex digits")
    return SharedFile(_text_field(name, "filename"), size, sha1)


def _lines(payload: str) -> list[str]:
    return payload.split("\n") if payload else []


def _files(lines: list[str], *, reply: bool = False) -> tuple[SharedFile, ...]:
    return tuple(_shared_file(line, reply=reply) for line in lines if line)


def _credentials(lines: list[str], n: int, what: str) -> list[str]:
    if len(lines) < n:
        raise ValueError(f"{what} needs {n} lines")
    return [_text_field(lines[0], "username"), _text_field(lines[1], "password"), *lines[2:]]


def _parse_request(mtype: MessageType, payload: str) -> Request:
    lines = _lines(payload)
    if mtype is MessageType.REGISTER:
        creds = _credentials(lines, 2, "REGISTER")
        return Register(creds[0], creds[1], _files(lines[2:]))
    if mtype is MessageType.REGISTER_UPDATE:
        creds = _credentials(lines, 3, "REGISTER_UPDATE")
        return RegisterUpdate(creds[0], creds[1], _peer_id(lines[2]), _files(lines[3:]))
    if mtype is MessageType.LOGIN:
        creds = _credentials(lines, 3, "LOGIN")
        if len(lines) > 4:
            raise ValueError("LOGIN has 3 or 4 lines")
        port = _port(lines[3]) if len(lines) == 4 else None
        return Login(creds[0], creds[1], _peer_id(lines[2]), port)
    if mtype is MessageType.LOGOUT:
        creds = _credentials(lines, 3, "LOGOUT")
        if len(lines) != 3:
            raise ValueError("LOGOUT has 3 lines")
        return Logout(creds[0], creds[1], _peer_id(lines[2]))
    if mtype is MessageType.KEEP_ALIVE:
        return KeepAlive(_peer_id(payload))
    if mtype is MessageType.BROWSE:
        return Browse(_peer_id(payload))
    if mtype is MessageType.SEARCH:
        return Search(_text_field(payload, "query"))
    if mtype is MessageType.SHOW_PEERS:
        which = payload or "all"
        if which == "online":
            return ShowPeers("online")
        if which == "offline":
            return ShowPeers("offline")
        if which == "all":
            return ShowPeers("all")
        raise ValueError("SHOW_PEERS payload is online, offline or all")
    raise ValueError(f"{mtype.name} is not a request")


def _parse_reply(mtype: MessageType, payload: str) -> Reply:
    if mtype is MessageType.ERROR:
        return Error(payload)
    if mtype & KO_BITS == KO_BITS:
        return Ko(MessageType(mtype & 0x3F), payload)
    lines = _lines(payload)
    if mtype is MessageType.REGISTER_OK:
        if len(lines) != 2 or lines[0] != "REGISTER SUCCESS":
            raise ValueError("REGISTER_OK is 'REGISTER SUCCESS\\n<id>'")
        return RegisterOk(_peer_id(lines[1]))
    if mtype in SIMPLE_OK_TEXT:
        return SimpleOk(mtype, payload)
    if mtype is MessageType.SEARCH_OK:
        hits = []
        for line in lines:
            f = line.split("|")
            if len(f) != 7:
                raise ValueError("a search line has 7 fields")
            sf = _shared_file("|".join(f[:3]), reply=True)
            hits.append(SearchHit(sf.filename, sf.size_mb, sf.sha1, f[3], _peer_id(f[4]), f[5], _port0(f[6])))
        return SearchOk(tuple(hits))
    if mtype is MessageType.BROWSE_OK:
        return BrowseOk(_files(lines, reply=True))
    if mtype is MessageType.SHOW_PEERS_OK:
        peers = []
        for line in lines:
            f = line.split("|")
            if len(f) != 5 or f[4] not in ("online", "offline"):
                raise ValueError("a peer line is id|username|ip|port|online|offline")
            peers.append(PeerEntry(_peer_id(f[0]), f[1], f[2], _port0(f[3]), f[4] == "online"))
        return ShowPeersOk(tuple(peers))
    raise ValueError(f"{mtype.name} is not a reply")


# -- encoding -------------------------------------------------------------------------------------


def _check(value: str, what: str) -> str:
    try:
        return _text_field(value, what)
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None


def _file_line(f: SharedFile, *, reply: bool = False) -> str:
    if not (_SIZE.fullmatch(f.size_mb) or (reply and f.size_mb == "")):
        raise LocalProtocolError("bad size_mb")
    if not (_SHA1.fullmatch(f.sha1) or (reply and f.sha1 == "")):
        raise LocalProtocolError("bad sha1")
    return f"{_check(f.filename, 'filename')}|{f.size_mb}|{f.sha1}"


def _plain(value: str, what: str) -> str:
    if _FORBIDDEN.search(value):
        raise LocalProtocolError(f"{what} has a newline, '|' or NUL")
    return value


def encode_payload(event: Event) -> tuple[MessageType, str]:
    """Message type and payload text of ``event`` (LocalProtocolError if a field cannot be sent)."""
    if isinstance(event, Register):
        lines = [_check(event.username, "username"), _check(event.password, "password")]
        return MessageType.REGISTER, "\n".join(lines + [_file_line(f) for f in event.files])
    if isinstance(event, RegisterUpdate):
        lines = [_check(event.username, "username"), _check(event.password, "password"), event.peer_id]
        return MessageType.REGISTER_UPDATE, "\n".join(lines + [_file_line(f) for f in event.files])
    if isinstance(event, Login):
        lines = [_check(event.username, "username"), _check(event.password, "password"), event.peer_id]
        if event.port is not None:
            lines.append(str(event.port))
        return MessageType.LOGIN, "\n".join(lines)
    if isinstance(event, Logout):
        creds = [_check(event.username, "username"), _check(event.password, "password")]
        return MessageType.LOGOUT, "\n".join([*creds, event.peer_id])
    if isinstance(event, KeepAlive):
        return MessageType.KEEP_ALIVE, event.peer_id
    if isinstance(event, Browse):
        return MessageType.BROWSE, event.peer_id
    if isinstance(event, Search):
        return MessageType.SEARCH, _check(event.query, "query")
    if isinstance(event, ShowPeers):
        return MessageType.SHOW_PEERS, event.which
    if isinstance(event, RegisterOk):
        return MessageType.REGISTER_OK, f"REGISTER SUCCESS\n{event.peer_id}"
    if isinstance(event, SimpleOk):
        return event.type, event.text
    if isinstance(event, SearchOk):
        lines = [
            "|".join(
                [
                    _file_line(SharedFile(h.filename, h.size_mb, h.sha1), reply=True),
                    _plain(h.username, "username"),
                    h.peer_id,
                    _plain(h.peer_ip, "ip"),
                    str(h.peer_port),
                ]
            )
            for h in event.hits
        ]
        return MessageType.SEARCH_OK, "\n".join(lines)
    if isinstance(event, BrowseOk):
        return MessageType.BROWSE_OK, "\n".join(_file_line(f, reply=True) for f in event.files)
    if isinstance(event, ShowPeersOk):
        lines = [
            f"{p.peer_id}|{_plain(p.username, 'username')}|{_plain(p.ip, 'ip')}|{p.port}|"
            + ("online" if p.online else "offline")
            for p in event.peers
        ]
        return MessageType.SHOW_PEERS_OK, "\n".join(lines)
    if isinstance(event, Ko):
        if event.request not in REQUESTS:
            raise LocalProtocolError("Ko.request must be a request type")
        return MessageType(event.request | KO_BITS), event.reason
    return MessageType.ERROR, event.reason


def encode(event: Event) -> bytes:
    """One whole frame for ``event``."""
    mtype, text = encode_payload(event)
    payload = text.encode("utf-8", "surrogatepass")
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), mtype) + payload


def decode_frame(mtype_raw: int, payload: bytes, *, role: Literal["server", "client"]) -> Event:
    """Parse one frame's payload; IndexCodecError (with the reply to send as ``hint``) if bad."""
    try:
        mtype = MessageType(mtype_raw)
    except ValueError:
        raise IndexCodecError(
            f"unknown message type 0x{mtype_raw:02x}", hint=Error(f"unknown message type 0x{mtype_raw:02x}")
        ) from None
    is_request = mtype in REQUESTS
    if role == "server" and not is_request:
        raise IndexCodecError(f"{mtype.name} is not a request", hint=Error(f"{mtype.name} is not a request"))
    if role == "client" and is_request:
        raise IndexCodecError(f"{mtype.name} is not a reply", hint=None)
    try:
        text = payload.decode("utf-8")
        return _parse_request(mtype, text) if is_request else _parse_reply(mtype, text)
    except UnicodeDecodeError:
        reason = "payload is not valid UTF-8"
    except ValueError as exc:
        reason = str(exc)
    hint: Reply | None = None
    if role == "server":
        hint = Ko(mtype, reason)
    raise IndexCodecError(f"bad {mtype.name} payload: {reason}", hint=hint)


def request_type(event: Request) -> MessageType:
    return encode_payload(event)[0]


class IndexConnection:
    """One end of a binary index connection (``role="server"`` parses requests, ``"client"`` replies)."""

    def __init__(
        self,
        role: Literal["server", "client"] = "server",
        *,
        max_payload: int = MAX_PAYLOAD,
        max_payload_before_login: int = MAX_PAYLOAD_BEFORE_LOGIN,
    ) -> None:
        self.role: Literal["server", "client"] = role
        self.max_payload = max_payload
        self.max_payload_before_login = max_payload_before_login
        self.state = State.NEW
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self.state is State.BROKEN:
            raise IndexCodecError("connection is broken", hint=None)
        self._buffer += data

    @property
    def payload_cap(self) -> int:
        """The largest payload accepted now: ``max_payload_before_login`` on a server connection that
        has not logged in, else ``max_payload``."""
        if self.role == "server" and self.state is State.NEW:
            return min(self.max_payload, self.max_payload_before_login)
        return self.max_payload

    def next_event(self) -> Event | _NeedData:
        """The next whole event, or :data:`NEED_DATA`. A frame over the length cap (:attr:`payload_cap`,
        checked as soon as its header is in) breaks the connection (IndexCodecError with an ``ERROR``
        hint to send before closing); any other bad frame is consumed and the error's
        ``hint`` is the reply to send. On the server side, a request the state does not allow
        (anything but REGISTER/REGISTER_UPDATE/LOGIN before LOGIN_OK) raises with a ``*_KO`` hint."""
        if self.state is State.BROKEN:
            raise IndexCodecError("connection is broken", hint=None)
        if len(self._buffer) < HEADER_SIZE:
            return NEED_DATA
        length, mtype_raw = HEADER.unpack_from(self._buffer)
        cap = self.payload_cap
        if length > cap:
            self.state = State.BROKEN
            why = f"payload length {length} exceeds {cap}" + (
                " before login" if cap < self.max_payload else ""
            )
            raise IndexCodecError(why, hint=Error(why))
        if len(self._buffer) < HEADER_SIZE + length:
            return NEED_DATA
        payload = bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + length])
        del self._buffer[: HEADER_SIZE + length]
        event = decode_frame(mtype_raw, payload, role=self.role)
        if self.role == "server" and isinstance(event, Request):
            mtype = request_type(event)
            if mtype not in ALLOWED[self.state]:
                raise IndexCodecError(f"{mtype.name} before LOGIN", hint=Ko(mtype, "login required"))
        return event

    def send(self, event: Event) -> bytes:
        """Bytes of ``event``; a server's LOGIN_OK / LOGOUT_OK moves the state (:data:`TRANSITIONS`)."""
        data = encode(event)
        if self.role == "server":
            mtype = MessageType(data[4])
            self.state = TRANSITIONS.get((self.state, mtype), self.state)
        return data


__all__ = [
    "ALLOWED",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "MAX_PAYLOAD_BEFORE_LOGIN",
    "NEED_DATA",
    "Browse",
    "BrowseOk",
    "Error",
    "Event",
    "IndexConnection",
    "KeepAlive",
    "Ko",
    "Login",
    "Logout",
    "MessageType",
    "PeerEntry",
    "Register",
    "RegisterOk",
    "RegisterUpdate",
    "Reply",
    "Request",
    "Search",
    "SearchHit",
    "SearchOk",
    "SharedFile",
    "ShowPeers",
    "ShowPeersOk",
    "SimpleOk",
    "State",
    "decode_frame",
    "encode",
]
