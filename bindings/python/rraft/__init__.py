"""rraft for Python: a braft-shaped Raft engine through ctypes.

- ``Server(addr)``: one port for every node of the process and your methods
  (``add_method``); ``Client(group, conf)`` calls them on the group's leader.
- ``Node(server, group, peer_id)``, ``node.init(state_machine, ...)``,
  ``node.apply(data)`` → ``concurrent.futures.Future``; membership changes,
  leader transfer, snapshots, ReadIndex, status.
- ``StateMachine``: subclass it; ``on_apply(self, iterator)`` is required,
  the other callbacks have braft's defaults.
- Errors: ``RaftError`` with ``.code``, ``.name`` (``"EPERM"``) and
  ``.message``.

Callbacks run on the node's state-machine thread (one at a time, in log
order); done callbacks and method handlers run on library threads. Every
ctypes callback object is kept alive by this module for as long as the
library may call it.

At interpreter exit (normal end, ``sys.exit``, an uncaught exception) an
``atexit`` hook shuts down and joins every node still open, then closes every
server still open, before the interpreter finalizes: no library thread calls
back into a finalizing interpreter, and the exit code is the script's.
"""

import atexit
import ctypes
import errno as _errno
import itertools
import json
import os
import sys
import threading
import traceback
import weakref
from concurrent.futures import Future

from . import _native as _n

__all__ = [
    "RaftError",
    "Server",
    "Request",
    "Client",
    "Node",
    "StateMachine",
    "Iterator",
    "Entry",
    "SnapshotWriter",
    "SnapshotReader",
    "version",
    "strerror",
    "error_name",
    "LIB_PATH",
]

LIB_PATH = _n.LIB_PATH

# Status codes (braft's errno.proto, and the plain errno values rraft uses).
OK = 0
EPERM = 1
ENOENT = 2
EIO = 5
EAGAIN = 11
EBUSY = 16
EEXIST = 17
EINVAL = 22
ERAFTTIMEDOUT = 10001
ESTATEMACHINE = 10002
ECATCHUP = 10003
ELEADERREMOVED = 10004
ESETPEER = 10005
ENODESHUTDOWN = 10006
EREADONLY = 10016
EHIGHERTERMREQUEST = 10007
EHIGHERTERMRESPONSE = 10008
EBADNODE = 10009
EVOTEFORCANDIDATE = 10010
ENEWLEADER = 10011
ELEADERCONFLICT = 10012
ETRANSFERLEADERSHIP = 10013
ELOGDELETED = 10014
ENOMOREUSERLOG = 10015
EPANIC = 20001
EINTERNAL = 20002

# braft's and rraft's own codes by value; plain errno values come from errno.
_RAFT_NAMES = {
    value: name
    for name, value in list(globals().items())
    if name.startswith("E") and name.isupper() and isinstance(value, int) and value > 10000
}


def error_name(code):
    """The symbolic name of a status code: "OK", "EPERM", "ERAFTTIMEDOUT", ...;
    "E<code>" for a code without a name."""
    code = int(code)
    if code == OK:
        return "OK"
    return _RAFT_NAMES.get(code) or _errno.errorcode.get(code) or "E%d" % code


def version():
    """The library version, e.g. "0.1.0"."""
    return _n.raft_version().decode()


def strerror(code):
    """The text for a status code (braft's berror)."""
    return (_n.raft_strerror(code) or b"").decode()


class RaftError(Exception):
    """A failed rraft call: ``code`` (braft's codes), ``name`` (the code's
    symbolic name, e.g. ``"EPERM"``) and ``message`` (why, without the code).
    ``str(error)`` is ``"EPERM (1): <message>"``: the code once."""

    def __init__(self, code, message=""):
        self.code = int(code)
        self.message = message or ""
        super().__init__(self.code, self.message)

    @property
    def name(self):
        return error_name(self.code)

    @property
    def description(self):
        """The code's text (``raft_strerror``), e.g. "Node is shut down"."""
        return strerror(self.code)

    def __str__(self):
        if self.message:
            return "%s (%d): %s" % (self.name, self.code, self.message)
        return "%s (%d): %s" % (self.name, self.code, self.description)

    @classmethod
    def _of(cls, code, raw):
        # raft_last_error() reads "[code] message"; a done status carries the
        # message alone. Either way the error keeps the message once.
        text = raw.decode("utf-8", "replace") if raw else ""
        prefix = "[%d] " % int(code)
        if text.startswith(prefix):
            text = text[len(prefix):]
        return cls(code, text)

    @classmethod
    def last(cls, code):
        """``code`` with this thread's ``raft_last_error()``."""
        return cls._of(code, _n.raft_last_error())

    @classmethod
    def from_status(cls, st):
        """The error of a done callback's ``raft_status_t``."""
        return cls._of(st.code, st.message)


def _check(rc):
    if rc != 0:
        raise RaftError.last(rc)


def _b(text):
    if text is None:
        return None
    return text.encode() if isinstance(text, str) else bytes(text)


def _payload(data, what="data"):
    """Bytes to send: a bytes-like object (bytes, bytearray, memoryview, or
    anything else with the buffer protocol) as is, a str encoded as UTF-8.
    Anything else (an int, a list, None) is a TypeError: bytes(12345) would
    silently be 12,345 zero bytes."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise TypeError("%s must be bytes-like or str, not %s" % (what, type(data).__name__)) from None


def _conf_text(conf):
    if conf is None:
        return None
    if isinstance(conf, (list, tuple)):
        return ",".join(conf)
    return conf


def _report(what):
    sys.stderr.write("rraft: exception in %s:\n" % what)
    traceback.print_exc()


# ---------------------------------------------------------------- registry
# ctx pointers handed to the library are integer keys into this table, so a
# Python object is never referenced by address and stays alive until the
# library is done with it.

_lock = threading.Lock()
_objects = {}
_ids = itertools.count(1)


def _put(obj):
    with _lock:
        key = next(_ids)
        _objects[key] = obj
        return key


def _get(key):
    with _lock:
        return _objects.get(key)


def _pop(key):
    with _lock:
        return _objects.pop(key, None)


# ------------------------------------------------------------ interpreter exit
# Nodes and servers still open when the interpreter exits are shut down and
# joined by an atexit hook, which runs before the interpreter finalizes: a
# library thread that called back into a finalizing interpreter would be
# ended by it mid-call and abort the process. Callbacks that still arrive
# after the hook return at once without running Python code of the user.

_open_nodes = weakref.WeakSet()
_open_servers = weakref.WeakSet()
_finalizing = False


def _exiting():
    return _finalizing or sys.is_finalizing()


def _close_all_at_exit():
    """Shuts down every open node (all at once), joins and frees them, then
    closes every open server (a server must outlive its nodes)."""
    global _finalizing
    nodes = [n for n in list(_open_nodes) if n._h]
    for node in nodes:
        try:
            node.shutdown()
        except Exception:  # noqa: BLE001 - closing the rest matters more
            _report("shutting down a node at exit")
    for node in nodes:
        try:
            node.close()
        except Exception:  # noqa: BLE001
            _report("closing a node at exit")
    for server in list(_open_servers):
        try:
            server.close()
        except Exception:  # noqa: BLE001
            _report("closing a server at exit")
    _finalizing = True


atexit.register(_close_all_at_exit)


# ------------------------------------------------------------ done callbacks


class _Pending:
    """One request's future and, for apply, the result on_apply set."""

    __slots__ = ("future", "result", "default")

    def __init__(self, default=None):
        self.future = Future()
        self.future.set_running_or_notify_cancel()
        self.result = None
        self.default = default


def _on_done(ctx, status):
    if _exiting():
        return
    pending = _pop(ctx or 0)
    if pending is None:
        return
    try:
        st = status.contents
        if st.code == 0:
            pending.future.set_result(pending.result if pending.result is not None else pending.default)
        else:
            pending.future.set_exception(RaftError.from_status(st))
    except Exception:  # noqa: BLE001 - a callback must not raise into C
        _report("a done callback")


_DONE = _n.DONE_FN(_on_done)


def _start(call, default=None):
    """Runs ``call(done_fn, ctx)``; returns a Future resolved by the done."""
    pending = _Pending(default)
    key = _put(pending)
    rc = call(_DONE, key)
    if rc != 0:
        _pop(key)
        pending.future.set_exception(RaftError.last(rc))
    return pending.future


# ------------------------------------------------------------------ server


class Request:
    """One incoming call of a user method; answer it exactly once (from any
    thread, now or later). An unanswered request is answered with an error
    when garbage-collected."""

    def __init__(self, handle):
        self._h = handle
        n = _n.c_uintptr(0)
        p = _n.raft_request_data(handle, ctypes.byref(n))
        self.data = ctypes.string_at(p, n.value) if p and n.value else b""
        g = _n.raft_request_group(handle)
        self.group = g.decode() if g else ""
        # brpc's log id and request attachment (baidu_std calls only).
        self.log_id = _n.raft_request_log_id(handle)
        p = _n.raft_request_attachment(handle, ctypes.byref(n))
        self.attachment = ctypes.string_at(p, n.value) if p and n.value else b""

    def set_reply_attachment(self, data):
        """The attachment sent with a successful answer over baidu_std."""
        data = _payload(data, "reply attachment")
        if self._h is None:
            raise RaftError(EINVAL, "request already answered")
        rc = _n.raft_request_set_reply_attachment(self._h, data, len(data))
        if rc != 0:
            raise RaftError.last(rc)

    @property
    def answered(self):
        return self._h is None

    def reply(self, data=b""):
        data = _payload(data, "reply data")
        h, self._h = self._h, None
        if h is None:
            raise RaftError(EINVAL, "request already answered")
        _n.raft_request_reply(h, data, len(data))

    def reply_error(self, code, message="", leader_hint=None):
        h, self._h = self._h, None
        if h is None:
            raise RaftError(EINVAL, "request already answered")
        _n.raft_request_reply_error(h, code, _b(message), _b(leader_hint))

    def __del__(self):
        if getattr(self, "_h", None) is not None:
            try:
                self.reply_error(EINTERNAL, "request dropped unanswered")
            except Exception:  # noqa: BLE001
                pass


def _on_method(ctx, req):
    if _exiting():
        _n.raft_request_reply_error(req, ENODESHUTDOWN, b"the process is exiting", None)
        return
    handler = _get(ctx or 0)
    request = Request(req)
    if handler is None:
        request.reply_error(ENODESHUTDOWN, "server is closed")
        return
    try:
        handler(request)
    except Exception as e:  # noqa: BLE001
        _report("a method handler")
        if not request.answered:
            request.reply_error(EINTERNAL, "handler raised %s: %s" % (type(e).__name__, e))


_METHOD = _n.METHOD_FN(_on_method)


class _Handle:
    """Owns a library handle in ``self._h``; ``close()`` frees it, also at
    the end of a ``with`` block and when the object is collected."""

    _what = "handle"  # named in the error once closed

    def _take(self, h):
        """Keeps the handle a constructor got; NULL raises the library's error."""
        if not h:
            raise RaftError.last(EINVAL)
        self._h = h

    @property
    def handle(self):
        if not self._h:
            raise RaftError(EINVAL, "%s is closed" % self._what)
        return self._h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None):
            try:
                self.close()
            except Exception:  # noqa: BLE001
                pass


class Server(_Handle):
    """braft's add_service: listens on ``addr`` ("ip:port", port 0 picks a
    free one) for every node of the process and the user's methods."""

    _what = "server"

    def __init__(self, addr):
        self._take(_n.raft_server_start(_b(addr)))
        self._handlers = []
        _open_servers.add(self)

    @property
    def port(self):
        return _n.raft_server_port(self.handle)

    def add_method(self, name, handler):
        """Serves ``handler(request)`` under ``name``. It runs on an IO
        thread: do not block; answer with request.reply / reply_error, now
        or later (e.g. from an apply future's callback)."""
        key = _put(handler)
        rc = _n.raft_server_add_method(self.handle, _b(name), _METHOD, key)
        if rc != 0:
            _pop(key)
            raise RaftError.last(rc)
        self._handlers.append(key)

    def stop(self):
        if self._h:
            _n.raft_server_stop(self._h)

    def close(self):
        """Stops and frees the server (shut its nodes down first)."""
        h, self._h = self._h, None
        if h:
            _n.raft_server_free(h)
        _open_servers.discard(self)
        for key in self._handlers:
            _pop(key)
        self._handlers = []


class Client(_Handle):
    """Calls methods on the leader of ``group`` (members ``conf``:
    "ip:port:idx,..." or a list), following redirects."""

    _what = "client"

    def __init__(self, group, conf):
        self._take(_n.raft_client_new(_b(group), _b(_conf_text(conf))))

    def call(self, method, data=b"", timeout_ms=5000):
        """Blocking call; returns the reply's bytes or raises RaftError."""
        data = _payload(data)
        buf = _n.raft_buffer_t()
        rc = _n.raft_client_call(self._h, _b(method), data, len(data), timeout_ms, ctypes.byref(buf))
        if rc != 0:
            raise RaftError.last(rc)
        try:
            return ctypes.string_at(buf.data, buf.len) if buf.len else b""
        finally:
            _n.raft_buffer_free(ctypes.byref(buf))

    def use_baidu_std(self, on=True):
        """Speak brpc's baidu_std (to call a braft service; methods are
        "package.Service.method") instead of rraft's own protocol."""
        rc = _n.raft_client_set_protocol(self._h, 1 if on else 0)
        if rc != 0:
            raise RaftError.last(rc)

    @property
    def leader(self):
        return _n.take_string(_n.raft_client_leader(self._h))

    def close(self):
        h, self._h = self._h, None
        if h:
            _n.raft_client_free(h)


# ---------------------------------------------------------- state machine


class Entry:
    """One committed entry seen by on_apply."""

    __slots__ = ("index", "term", "data", "_pending")

    def __init__(self, index, term, data, pending):
        self.index = index
        self.term = term
        self.data = data
        self._pending = pending

    @property
    def proposed_here(self):
        """True when this node proposed the entry (its future is waiting)."""
        return self._pending is not None

    def set_result(self, value):
        """The value the proposer's future resolves to (default: the index)."""
        if self._pending is not None:
            self._pending.result = value


class Iterator:
    """braft's Iterator, valid only during on_apply. Iterate it
    (``for entry in iterator``) or use valid()/next()/index()/term()/data()."""

    def __init__(self, handle):
        self._h = handle

    def valid(self):
        return bool(self._h) and _n.raft_iterator_valid(self._h)

    def next(self):
        _n.raft_iterator_next(self._h)

    def index(self):
        return _n.raft_iterator_index(self._h)

    def term(self):
        return _n.raft_iterator_term(self._h)

    def data(self):
        n = _n.c_uintptr(0)
        p = _n.raft_iterator_data(self._h, ctypes.byref(n))
        return ctypes.string_at(p, n.value) if p and n.value else b""

    def entry(self):
        ctx = _n.raft_iterator_done(self._h)
        pending = _get(ctx) if ctx else None
        return Entry(self.index(), self.term(), self.data(), pending)

    def set_error_and_rollback(self, ntail=0, code=ESTATEMACHINE, message="state machine error"):
        _n.raft_iterator_set_error_and_rollback(self._h, ntail, code, _b(message))

    def __iter__(self):
        while self.valid():
            yield self.entry()
            self.next()


class SnapshotWriter:
    """Where on_snapshot_save writes; valid until its done runs."""

    def __init__(self, handle):
        self._h = handle
        self.path = (_n.raft_snapshot_writer_path(handle) or b"").decode()

    def add_file(self, name):
        """Registers ``name`` (a file written directly under ``path``)."""
        _check(_n.raft_snapshot_writer_add_file(self._h, _b(name)))


class SnapshotDone:
    """Finishes on_snapshot_save: call ``done()`` once the files are added,
    or ``done(error)`` (a RaftError, or any message) to abandon it. Exactly
    once, from any thread."""

    def __init__(self, handle, writer):
        self._h = handle
        self._writer = writer

    def __call__(self, error=None):
        h, self._h = self._h, None
        if h is None:
            raise RaftError(EINVAL, "snapshot done already run")
        self._writer._h = None
        if error is None:
            _n.raft_snapshot_done_run(h, 0, None)
        else:
            code = error.code if isinstance(error, RaftError) else EIO
            _n.raft_snapshot_done_run(h, code, _b(str(error)))


class SnapshotReader:
    """The snapshot on_snapshot_load reads (valid during that call)."""

    def __init__(self, handle):
        self.path = (_n.raft_snapshot_reader_path(handle) or b"").decode()
        n = _n.raft_snapshot_reader_file_count(handle)
        self.files = [(_n.raft_snapshot_reader_file_name(handle, i) or b"").decode() for i in range(n)]
        self.index = _n.raft_snapshot_reader_index(handle)
        self.term = _n.raft_snapshot_reader_term(handle)


class StateMachine:
    """braft's StateMachine. Override ``on_apply``; the rest are optional
    (an overridden ``on_snapshot_save`` / ``on_snapshot_load`` enables
    snapshots of this state machine)."""

    def on_apply(self, iterator):
        raise NotImplementedError("on_apply is required")

    def on_shutdown(self):
        pass

    def on_snapshot_save(self, writer, done):
        """Write files under ``writer.path``, ``writer.add_file(name)`` each,
        then ``done()`` (now or later, from any thread)."""
        done(RaftError(ESTATEMACHINE, "on_snapshot_save is not implemented"))

    def on_snapshot_load(self, reader):
        """Replace the state with the snapshot in ``reader.path``. Return
        None/True on success, False (or raise) on failure."""
        return False

    def on_leader_start(self, term):
        pass

    def on_leader_stop(self, error):
        pass

    def on_error(self, error):
        pass

    def on_configuration_committed(self, voters, learners, index):
        pass

    def on_start_following(self, leader, term):
        pass

    def on_stop_following(self, leader, term):
        pass


def _fsm(ctx):
    return _get(ctx or 0)


def _cb_apply(ctx, it):
    if _exiting():
        return
    fsm = _fsm(ctx)
    iterator = Iterator(it)
    try:
        fsm.on_apply(iterator)
    except Exception as e:  # noqa: BLE001
        _report("on_apply")
        iterator.set_error_and_rollback(0, ESTATEMACHINE, "on_apply raised %s: %s" % (type(e).__name__, e))
    finally:
        iterator._h = None


def _cb_shutdown(ctx):
    if _exiting():
        return
    fsm = _pop(ctx or 0)  # the last callback: release the state machine
    if fsm is not None:
        try:
            fsm.on_shutdown()
        except Exception:  # noqa: BLE001
            _report("on_shutdown")


def _cb_snapshot_save(ctx, writer, done):
    if _exiting():
        _n.raft_snapshot_done_run(done, ENODESHUTDOWN, b"the process is exiting")
        return
    w = SnapshotWriter(writer)
    d = SnapshotDone(done, w)
    try:
        _fsm(ctx).on_snapshot_save(w, d)
    except Exception as e:  # noqa: BLE001
        _report("on_snapshot_save")
        if d._h is not None:
            d(RaftError(ESTATEMACHINE, "on_snapshot_save raised %s: %s" % (type(e).__name__, e)))


def _cb_snapshot_load(ctx, reader):
    if _exiting():
        return -1
    try:
        ok = _fsm(ctx).on_snapshot_load(SnapshotReader(reader))
        return 0 if ok is None or ok is True else -1
    except Exception:  # noqa: BLE001
        _report("on_snapshot_load")
        return -1


def _safe(name, fn):
    def wrapper(*args):
        if _exiting():
            return
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            _report(name)

    return wrapper


def _s(b):
    return b.decode() if b else None


_VTABLE_FNS = {
    "on_apply": _n.ON_APPLY(_cb_apply),
    "on_shutdown": _n.ON_SHUTDOWN(_cb_shutdown),
    "on_snapshot_save": _n.ON_SNAPSHOT_SAVE(_cb_snapshot_save),
    "on_snapshot_load": _n.ON_SNAPSHOT_LOAD(_cb_snapshot_load),
    "on_leader_start": _n.ON_LEADER_START(
        _safe("on_leader_start", lambda ctx, term: _fsm(ctx).on_leader_start(term))
    ),
    "on_leader_stop": _n.ON_STATUS(
        _safe("on_leader_stop", lambda ctx, st: _fsm(ctx).on_leader_stop(RaftError.from_status(st.contents)))
    ),
    "on_error": _n.ON_STATUS(
        _safe("on_error", lambda ctx, st: _fsm(ctx).on_error(RaftError.from_status(st.contents)))
    ),
    "on_configuration_committed": _n.ON_CONF(
        _safe(
            "on_configuration_committed",
            lambda ctx, v, lrn, idx: _fsm(ctx).on_configuration_committed(
                [p for p in (_s(v) or "").split(",") if p], [p for p in (_s(lrn) or "").split(",") if p], idx
            ),
        )
    ),
    "on_start_following": _n.ON_FOLLOW(
        _safe("on_start_following", lambda ctx, ld, term: _fsm(ctx).on_start_following(_s(ld), term))
    ),
    "on_stop_following": _n.ON_FOLLOW(
        _safe("on_stop_following", lambda ctx, ld, term: _fsm(ctx).on_stop_following(_s(ld), term))
    ),
}


def _vtable(fsm):
    v = _n.raft_fsm_vtable_t()
    for name, fn in _VTABLE_FNS.items():
        required = name in ("on_apply", "on_shutdown")
        overridden = getattr(type(fsm), name, None) is not getattr(StateMachine, name)
        if required or overridden:
            setattr(v, name, fn)
    return v


# -------------------------------------------------------------------- node


class Node(_Handle):
    """braft's Node: replica ``peer_id`` ("ip:port:idx") of ``group`` on
    ``server`` (whose port the peer id must use)."""

    _what = "node"

    def __init__(self, server, group, peer_id):
        self.group = group
        self.peer_id = peer_id
        self._server = server  # must outlive the node
        self._take(_n.raft_node_new(server.handle, _b(group), _b(peer_id)))
        self._fsm_key = None
        self._shutdown = None
        _open_nodes.add(self)

    def init(
        self,
        fsm,
        initial_conf=None,
        data_dir=None,
        log_uri=None,
        raft_meta_uri=None,
        snapshot_uri=None,
        initial_learners=None,
        **options
    ):
        """braft init. ``initial_conf``: "ip:port:idx,..." or a list.
        ``data_dir`` fills the three URIs with ``local://data_dir/...``.
        Other keywords set the fields of raft_node_options_t
        (election_timeout_ms, snapshot_interval_s, catchup_margin,
        disable_cli, sync, enable_leader_lease, apply_batch, ...)."""
        if not isinstance(fsm, StateMachine) and not hasattr(fsm, "on_apply"):
            raise TypeError("fsm must have an on_apply(iterator) method")
        opts = _n.raft_node_options_t()
        _n.raft_node_options_init(ctypes.byref(opts))
        if data_dir is not None:
            d = os.path.abspath(data_dir)
            log_uri = log_uri or "local://" + os.path.join(d, "log")
            raft_meta_uri = raft_meta_uri or "local://" + os.path.join(d, "meta")
            snapshot_uri = snapshot_uri or "local://" + os.path.join(d, "snapshot")
        keep = [_b(_conf_text(initial_conf)), _b(_conf_text(initial_learners)), _b(log_uri), _b(raft_meta_uri), _b(snapshot_uri)]
        opts.initial_conf, opts.initial_learners, opts.log_uri, opts.raft_meta_uri, opts.snapshot_uri = keep
        fields = {f[0] for f in _n.raft_node_options_t._fields_}
        for key, value in options.items():
            if key not in fields or key == "struct_size":
                raise TypeError("unknown node option %r" % key)
            setattr(opts, key, value)
        key = _put(fsm)
        vtable = _vtable(fsm)
        rc = _n.raft_node_init(self.handle, ctypes.byref(opts), ctypes.byref(vtable), key)
        if rc != 0:
            _pop(key)
            raise RaftError.last(rc)
        self._fsm_key = key

    def apply(self, data, expected_term=-1):
        """braft apply: a Future resolved once this node applied the entry
        (to what on_apply passed to ``entry.set_result``, else the index),
        or failed with RaftError (EPERM not leader, EBUSY, ...).

        ``data``: bytes, bytearray, memoryview (any bytes-like object), or a
        str, proposed as its UTF-8 encoding; anything else raises TypeError."""
        data = _payload(data)
        pending = _Pending()
        key = _put(pending)
        task = _n.raft_task_t()
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        task.data = ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None
        task.len = len(data)
        task.done = _DONE
        task.done_ctx = key
        task.expected_term = expected_term
        rc = _n.raft_node_apply(self.handle, ctypes.byref(task))
        if rc != 0:
            _pop(key)
            pending.future.set_exception(RaftError.last(rc))
        return pending.future

    def _change(self, fn, arg):
        return _start(lambda done, ctx: fn(self.handle, _b(arg), done, ctx))

    def add_peer(self, peer):
        """A Future for braft add_peer."""
        return self._change(_n.raft_node_add_peer, peer)

    def remove_peer(self, peer):
        return self._change(_n.raft_node_remove_peer, peer)

    def add_learner(self, peer):
        return self._change(_n.raft_node_add_learner, peer)

    def change_peers(self, conf):
        return self._change(_n.raft_node_change_peers, _conf_text(conf))

    def reset_peers(self, conf):
        """Unsafe recovery of a group that lost its quorum."""
        _check(_n.raft_node_reset_peers(self.handle, _b(_conf_text(conf))))

    def transfer_leadership_to(self, peer=None):
        """None: the most up-to-date voter. Raises RaftError (EPERM, ...)."""
        _check(_n.raft_node_transfer_leadership_to(self.handle, _b(peer)))

    def snapshot(self):
        """A Future for a snapshot saved now."""
        return _start(lambda done, ctx: _n.raft_node_snapshot(self.handle, done, ctx))

    def vote(self):
        _check(_n.raft_node_vote(self.handle))

    def read_index(self):
        """A Future resolved when local reads are linearizable."""
        return _start(lambda done, ctx: _n.raft_node_read_index(self.handle, done, ctx))

    def is_leader(self):
        return bool(self._h) and _n.raft_node_is_leader(self._h)

    def is_leader_lease_valid(self):
        return bool(self._h) and _n.raft_node_is_leader_lease_valid(self._h)

    @property
    def term(self):
        return _n.raft_node_term(self.handle)

    def leader_id(self):
        """The leader's peer id, or None."""
        return _n.take_string(_n.raft_node_leader_id(self.handle))

    def list_peers(self):
        """The voters (leader only; RaftError EPERM elsewhere)."""
        out = ctypes.c_void_p()
        _check(_n.raft_node_list_peers(self.handle, ctypes.byref(out)))
        return [p for p in (_n.take_string(out.value) or "").split(",") if p]

    def status(self):
        """braft get_status as a dict (state, term, indexes, peers, ...)."""
        text = _n.take_string(_n.raft_node_status_json(self.handle))
        if text is None:
            raise RaftError.last(EINVAL)
        return json.loads(text)

    def shutdown(self):
        """braft shutdown: a Future resolved once the node stopped."""
        if self._shutdown is None:
            self._shutdown = _start(lambda done, ctx: _n.raft_node_shutdown(self.handle, done, ctx))
        return self._shutdown

    def join(self):
        """braft join: waits for the shutdown to finish."""
        if self._h and self._shutdown is not None:
            _n.raft_node_join(self._h)

    def close(self):
        """Shuts down (if needed), waits and frees the handle."""
        if not self._h:
            return
        self.shutdown()
        self.join()
        h, self._h = self._h, None
        _n.raft_node_free(h)
        _open_nodes.discard(self)
