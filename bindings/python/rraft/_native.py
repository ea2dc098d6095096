"""Loading librraft.so and declaring its C functions (see include/rraft.h)."""

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

c_uintptr = c_size_t


def _candidates():
    env = os.environ.get("RRAFT_LIB")
    if env:
        yield os.path.join(env, "librraft.so") if os.path.isdir(env) else env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "librraft.so")
    # A checkout: bindings/python/rraft → the repository's target/.
    d = here
    for _ in range(5):
        d = os.path.dirname(d)
        for profile in ("release", "debug"):
            yield os.path.join(d, "target", profile, "librraft.so")
    found = ctypes.util.find_library("rraft")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError(
        "librraft.so not found: set RRAFT_LIB to its path (tried: %s)" % ", ".join(tried)
    )


lib, LIB_PATH = _load()


class raft_status_t(Structure):
    _fields_ = [("code", c_int32), ("message", c_char_p)]


class raft_buffer_t(Structure):
    _fields_ = [("data", POINTER(c_uint8)), ("len", c_uintptr)]


class raft_node_options_t(Structure):
    _fields_ = [
        ("struct_size", c_uintptr),
        ("election_timeout_ms", c_int32),
        ("catchup_timeout_ms", c_int32),
        ("max_clock_drift_ms", c_int32),
        ("snapshot_interval_s", c_int32),
        ("catchup_margin", c_int64),
        ("initial_conf", c_char_p),
        ("initial_learners", c_char_p),
        ("log_uri", c_char_p),
        ("raft_meta_uri", c_char_p),
        ("snapshot_uri", c_char_p),
        ("disable_cli", c_bool),
        ("sync", c_bool),
        ("enable_leader_lease", c_bool),
        ("max_segment_size", c_uint64),
        ("max_entries_per_append", c_uint32),
        ("max_body_size", c_uint32),
        ("max_inflight_appends", c_uint32),
        ("log_cache_bytes", c_uint64),
        ("snapshot_chunk_bytes", c_uint32),
        ("apply_batch", c_uint32),
        ("dedicated_log_writer", c_bool),
        ("dedicated_fsm_thread", c_bool),
        ("quiesce_after_ms", c_int32),
        ("braft_compat", c_bool),
    ]


DONE_FN = CFUNCTYPE(None, c_void_p, POINTER(raft_status_t))
CLIENT_DONE_FN = CFUNCTYPE(None, c_void_p, POINTER(raft_status_t), POINTER(c_uint8), c_uintptr)
METHOD_FN = CFUNCTYPE(None, c_void_p, c_void_p)
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p, c_char_p)

ON_APPLY = CFUNCTYPE(None, c_void_p, c_void_p)
ON_SHUTDOWN = CFUNCTYPE(None, c_void_p)
ON_SNAPSHOT_SAVE = CFUNCTYPE(None, c_void_p, c_void_p, c_void_p)
ON_SNAPSHOT_LOAD = CFUNCTYPE(c_int32, c_void_p, c_void_p)
ON_LEADER_START = CFUNCTYPE(None, c_void_p, c_int64)
ON_STATUS = CFUNCTYPE(None, c_void_p, POINTER(raft_status_t))
ON_CONF = CFUNCTYPE(None, c_void_p, c_char_p, c_char_p, c_int64)
ON_FOLLOW = CFUNCTYPE(None, c_void_p, c_char_p, c_int64)


class raft_fsm_vtable_t(Structure):
    _fields_ = [
        ("on_apply", ON_APPLY),
        ("on_shutdown", ON_SHUTDOWN),
        ("on_snapshot_save", ON_SNAPSHOT_SAVE),
        ("on_snapshot_load", ON_SNAPSHOT_LOAD),
        ("on_leader_start", ON_LEADER_START),
        ("on_leader_stop", ON_STATUS),
        ("on_error", ON_STATUS),
        ("on_configuration_committed", ON_CONF),
        ("on_start_following", ON_FOLLOW),
        ("on_stop_following", ON_FOLLOW),
    ]


class raft_task_t(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("len", c_uintptr),
        ("done", DONE_FN),
        ("done_ctx", c_void_p),
        ("expected_term", c_int64),
    ]


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def _declare(restype, argtypes, *names):
    """Declares every function in ``names``: all have this C signature."""
    for name in names:
        globals()[name] = _fn(name, restype, *argtypes)


# Every handle is an opaque pointer: c_void_p. A returned char* that must be
# freed (raft_string_free) is kept as a raw pointer (c_void_p); one the
# library keeps is c_char_p.
_declare(None, (c_void_p,),
         "raft_string_free", "raft_server_free", "raft_node_free", "raft_iterator_next", "raft_client_free")
_declare(c_int32, (c_void_p,), "raft_server_stop", "raft_server_port", "raft_node_join", "raft_node_vote")
_declare(c_bool, (c_void_p,), "raft_node_is_leader", "raft_node_is_leader_lease_valid", "raft_iterator_valid")
_declare(c_int64, (c_void_p,),
         "raft_node_term", "raft_iterator_index", "raft_iterator_term",
         "raft_snapshot_reader_index", "raft_snapshot_reader_term")
_declare(c_void_p, (c_void_p,),
         "raft_node_leader_id", "raft_node_status_json", "raft_iterator_done", "raft_client_leader")
_declare(c_char_p, (c_void_p,), "raft_request_group", "raft_snapshot_writer_path", "raft_snapshot_reader_path")
_declare(c_char_p, (), "raft_last_error", "raft_version")
_declare(c_int32, (c_int32,), "raft_global_init", "raft_set_log_level")
_declare(c_int32, (c_void_p, c_char_p),
         "raft_node_reset_peers", "raft_node_transfer_leadership_to", "raft_snapshot_writer_add_file")
_declare(c_int32, (c_void_p, DONE_FN, c_void_p), "raft_node_shutdown", "raft_node_snapshot", "raft_node_read_index")
_declare(c_int32, (c_void_p, c_char_p, DONE_FN, c_void_p),
         "raft_node_add_peer", "raft_node_remove_peer", "raft_node_add_learner", "raft_node_change_peers")
_declare(c_void_p, (c_void_p, POINTER(c_uintptr)), "raft_request_data", "raft_request_attachment",
         "raft_iterator_data")
_declare(c_int64, (c_void_p,), "raft_request_log_id")
_declare(c_int32, (c_void_p, c_void_p, c_uintptr), "raft_request_set_reply_attachment")
_declare(c_int32, (c_void_p, c_int32), "raft_client_set_protocol")

raft_strerror = _fn("raft_strerror", c_char_p, c_int32)
raft_set_log_callback = _fn("raft_set_log_callback", c_int32, LOG_FN, c_void_p, c_int32)
raft_buffer_free = _fn("raft_buffer_free", None, POINTER(raft_buffer_t))

raft_server_start = _fn("raft_server_start", c_void_p, c_char_p)
raft_server_add_method = _fn("raft_server_add_method", c_int32, c_void_p, c_char_p, METHOD_FN, c_void_p)
raft_request_reply = _fn("raft_request_reply", c_int32, c_void_p, c_void_p, c_uintptr)
raft_request_reply_error = _fn("raft_request_reply_error", c_int32, c_void_p, c_int32, c_char_p, c_char_p)

raft_node_options_init = _fn("raft_node_options_init", c_int32, POINTER(raft_node_options_t))
raft_node_new = _fn("raft_node_new", c_void_p, c_void_p, c_char_p, c_char_p)
raft_node_init = _fn(
    "raft_node_init", c_int32, c_void_p, POINTER(raft_node_options_t), POINTER(raft_fsm_vtable_t), c_void_p
)
raft_node_apply = _fn("raft_node_apply", c_int32, c_void_p, POINTER(raft_task_t))
raft_node_list_peers = _fn("raft_node_list_peers", c_int32, c_void_p, POINTER(c_void_p))

raft_iterator_set_error_and_rollback = _fn(
    "raft_iterator_set_error_and_rollback", None, c_void_p, c_uintptr, c_int32, c_char_p
)

raft_snapshot_done_run = _fn("raft_snapshot_done_run", None, c_void_p, c_int32, c_char_p)
raft_snapshot_reader_file_count = _fn("raft_snapshot_reader_file_count", c_uintptr, c_void_p)
raft_snapshot_reader_file_name = _fn("raft_snapshot_reader_file_name", c_char_p, c_void_p, c_uintptr)

raft_client_new = _fn("raft_client_new", c_void_p, c_char_p, c_char_p)
raft_client_call = _fn(
    "raft_client_call", c_int32, c_void_p, c_char_p, c_void_p, c_uintptr, c_int32, POINTER(raft_buffer_t)
)
raft_client_refresh_leader = _fn("raft_client_refresh_leader", c_int32, c_void_p, c_int32)


def take_string(ptr):
    """Copies a char* the library returned and frees it (None for NULL)."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        raft_string_free(ptr)
