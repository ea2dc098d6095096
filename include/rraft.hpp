/*
 * rraft.hpp: a header-only C++17 wrapper over rraft.h in the shape of braft.
 *
 * A braft service ports by renaming: braft::StateMachine → rraft::StateMachine,
 * braft::Node → rraft::Node (constructed with the rraft::Server that hosts
 * it), braft::Task / Closure / Status / Iterator / SnapshotWriter /
 * SnapshotReader / Configuration / PeerId → the rraft:: classes of the same
 * name, brpc::ClosureGuard / braft::AsyncClosureGuard → rraft::ClosureGuard /
 * rraft::AsyncClosureGuard, brpc's service methods → rraft::Server::add_method.
 *
 * Ownership, as in braft:
 * - A Closure given to apply / add_peer / snapshot / ... is Run exactly once
 *   (usually it deletes itself in Run). For apply, when this node applies
 *   the entry as the leader that proposed it, `Iterator::done()` hands the
 *   closure to on_apply, which must Run it (e.g. with an AsyncClosureGuard);
 *   in every other case (errors, or on_apply never asked for it) the wrapper
 *   runs it with the outcome.
 * - The Closure passed to on_snapshot_save must be Run exactly once, from any
 *   thread, after the files are written; the SnapshotWriter stays valid
 *   until then.
 * - No C++ exception unwinds into the library: every callback the wrapper
 *   hands to rraft catches. One from on_apply stops the node (ESTATEMACHINE
 *   through set_error_and_rollback, on_error follows); from on_snapshot_save
 *   it fails the snapshot; from on_snapshot_load it fails the load; from a
 *   method handler the request is answered RAFT_EINTERNAL; from any other
 *   callback or Closure it is reported on stderr and ignored.
 * - Every handle class (Server, Node, Client, Request) owns its C handle:
 *   not copyable, movable. A Node's destructor shuts it down and waits; the
 *   StateMachine must outlive the Node, and the Server must outlive both.
 */

#ifndef RRAFT_HPP
#define RRAFT_HPP

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rraft.h"

namespace rraft {

/* ------------------------------------------------------------------ Status */

/// braft's butil::Status: a code (0 = OK) and a message.
class Status {
public:
    Status() = default;
    Status(int code, std::string message) : code_(code), msg_(std::move(message)) {}
    /// Formats the message like printf (braft's Status(code, fmt, ...)).
    static Status format(int code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
    {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        return Status(code, buf);
    }
    static Status OK() { return Status(); }
    /// From a status the library handed to a callback (copied).
    static Status from_c(const raft_status_t *st) {
        if (st == nullptr) return Status();
        return Status(st->code, st->message ? st->message : "");
    }
    /// A failed call's code with this thread's `raft_last_error()`.
    static Status last_error(int code) {
        const char *msg = raft_last_error();
        return Status(code, (msg && *msg) ? msg : raft_strerror(code));
    }

    bool ok() const { return code_ == 0; }
    int error_code() const { return code_; }
    const std::string &error_str() const { return msg_; }
    const char *error_cstr() const { return msg_.c_str(); }
    void reset() {
        code_ = 0;
        msg_.clear();
    }
    void set_error(int code, const std::string &message) {
        code_ = code;
        msg_ = message;
    }
    std::string to_string() const {
        if (ok()) return "OK";
        return std::string(raft_strerror(code_)) + " (" + std::to_string(code_) + "): " + msg_;
    }

private:
    int code_ = 0;
    std::string msg_;
};

/* ----------------------------------------------------------------- Closure */

/// braft::Closure: a completion with a status(). Run() is called exactly
/// once; implementations usually `delete this` at its end.
class Closure {
public:
    virtual ~Closure() = default;
    virtual void Run() = 0;
    Status &status() { return status_; }
    const Status &status() const { return status_; }

private:
    Status status_;
};

/// brpc::ClosureGuard: runs the closure when the scope ends unless released.
class ClosureGuard {
public:
    ClosureGuard() = default;
    explicit ClosureGuard(Closure *done) : done_(done) {}
    ~ClosureGuard() {
        if (done_) done_->Run();
    }
    ClosureGuard(const ClosureGuard &) = delete;
    ClosureGuard &operator=(const ClosureGuard &) = delete;
    ClosureGuard(ClosureGuard &&other) noexcept : done_(other.release()) {}
    ClosureGuard &operator=(ClosureGuard &&other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    /// Runs the current closure (if any) and guards `done` instead.
    void reset(Closure *done) {
        if (done_ && done_ != done) done_->Run();
        done_ = done;
    }
    /// Stops guarding and returns the closure (the caller now runs it).
    Closure *release() {
        Closure *d = done_;
        done_ = nullptr;
        return d;
    }
    Closure *get() const { return done_; }

private:
    Closure *done_ = nullptr;
};

/// braft::AsyncClosureGuard (used in on_apply): same as ClosureGuard.
using AsyncClosureGuard = ClosureGuard;

/// A Closure that runs a function (handy for tests and small programs).
class FunctionClosure : public Closure {
public:
    explicit FunctionClosure(std::function<void(const Status &)> fn) : fn_(std::move(fn)) {}
    void Run() override {
        std::unique_ptr<FunctionClosure> self(this);
        if (fn_) fn_(status());
    }

private:
    std::function<void(const Status &)> fn_;
};

/// `new FunctionClosure(fn)`: runs `fn(status)` once, then deletes itself.
inline Closure *NewCallback(std::function<void(const Status &)> fn) {
    return new FunctionClosure(std::move(fn));
}

namespace detail {
/// What an exception that reached the C boundary says.
inline std::string what_of(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception &x) {
        return x.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

/// Reports an exception that left a callback which has no error path of
/// its own (a done, on_shutdown, on_leader_start, ...): C++ exceptions
/// must never unwind through the library's C frames, so every callback
/// the wrapper hands to rraft catches them and lands here.
inline void report_exception(const char *where, std::exception_ptr e) noexcept {
    try {
        std::fprintf(stderr, "rraft.hpp: exception in %s (ignored): %s\n", where,
                     what_of(e).c_str());
    } catch (...) {
    }
}

/// Runs `f`, reporting any exception it throws (see report_exception).
template <typename F>
inline void guarded(const char *where, F &&f) noexcept {
    try {
        f();
    } catch (...) {
        report_exception(where, std::current_exception());
    }
}

/// C done trampoline: `ctx` is a Closure* (may be NULL-checked by caller).
inline void run_closure(void *ctx, const raft_status_t *st) noexcept {
    guarded("a Closure's Run", [&] {
        auto *done = static_cast<Closure *>(ctx);
        done->status() = Status::from_c(st);
        done->Run();
    });
}

/// Owns a char* the library returned.
inline std::string take_string(char *text) {
    if (text == nullptr) return std::string();
    std::string out(text);
    raft_string_free(text);
    return out;
}

/// The context of one applied task (see Iterator::done()).
struct ApplyCtx {
    Closure *user = nullptr;
    bool taken = false;
};

inline void run_apply(void *ctx, const raft_status_t *st) noexcept {
    std::unique_ptr<ApplyCtx> c(static_cast<ApplyCtx *>(ctx));
    if (c->taken) return;  // on_apply took it and ran it (braft's contract)
    guarded("an applied task's Closure", [&] {
        c->user->status() = Status::from_c(st);
        c->user->Run();
    });
}

/// Runs `done` (if any) with `code` and this thread's last error.
inline void fail(Closure *done, int code) {
    if (done == nullptr) return;
    done->status() = Status::last_error(code);
    done->Run();
}
}  // namespace detail

/* ---------------------------------------------------- PeerId, Configuration */

/// braft::PeerId in its text form "ip:port:idx" (empty = none).
class PeerId {
public:
    PeerId() = default;
    PeerId(std::string text) : text_(std::move(text)) {}  // NOLINT: implicit as in braft
    PeerId(const char *text) : text_(text ? text : "") {}  // NOLINT
    int parse(const std::string &text) {
        text_ = text;
        return text_.empty() ? -1 : 0;
    }
    bool is_empty() const { return text_.empty(); }
    const std::string &to_string() const { return text_; }
    bool operator==(const PeerId &o) const { return text_ == o.text_; }
    bool operator!=(const PeerId &o) const { return text_ != o.text_; }

private:
    std::string text_;
};

/// braft::Configuration: a list of peers, text form "p1,p2,...".
class Configuration {
public:
    Configuration() = default;
    Configuration(const std::vector<PeerId> &peers) : peers_(peers) {}  // NOLINT
    /// Parses "p1,p2,..." (a trailing comma is fine). Returns 0, or -1 when empty.
    int parse_from(const std::string &text) {
        peers_.clear();
        std::string cur;
        for (char ch : text + ",") {
            if (ch == ',') {
                if (!cur.empty()) peers_.emplace_back(cur);
                cur.clear();
            } else if (ch != ' ') {
                cur.push_back(ch);
            }
        }
        return peers_.empty() ? -1 : 0;
    }
    void add_peer(const PeerId &p) { peers_.push_back(p); }
    void list_peers(std::vector<PeerId> *out) const { *out = peers_; }
    const std::vector<PeerId> &peers() const { return peers_; }
    size_t size() const { return peers_.size(); }
    bool empty() const { return peers_.empty(); }
    std::string to_string() const {
        std::string out;
        for (const auto &p : peers_) {
            if (!out.empty()) out += ',';
            out += p.to_string();
        }
        return out;
    }

private:
    std::vector<PeerId> peers_;
};

/// braft::LeaderChangeContext (on_start_following / on_stop_following).
class LeaderChangeContext {
public:
    LeaderChangeContext(PeerId leader, int64_t term) : leader_(std::move(leader)), term_(term) {}
    const PeerId &leader_id() const { return leader_; }
    int64_t term() const { return term_; }

private:
    PeerId leader_;
    int64_t term_;
};

/* -------------------------------------------------------------- Iterator */

/// braft::Iterator over committed entries; valid only inside on_apply.
class Iterator {
public:
    explicit Iterator(raft_iterator_t *it) : it_(it) {}
    Iterator(const Iterator &) = delete;
    Iterator &operator=(const Iterator &) = delete;

    bool valid() const { return raft_iterator_valid(it_); }
    void next() { raft_iterator_next(it_); }
    int64_t index() const { return raft_iterator_index(it_); }
    int64_t term() const { return raft_iterator_term(it_); }
    /// The entry's bytes, valid until on_apply returns.
    std::string_view data() const {
        uintptr_t len = 0;
        const uint8_t *p = raft_iterator_data(it_, &len);
        return p ? std::string_view(reinterpret_cast<const char *>(p), len) : std::string_view();
    }
    /// The closure of the task that proposed this entry when this node
    /// proposed it as leader in this term; NULL otherwise. Once returned,
    /// on_apply owns it and must Run it exactly once (braft's contract).
    Closure *done() const {
        auto *ctx = static_cast<detail::ApplyCtx *>(raft_iterator_done(it_));
        if (ctx == nullptr) return nullptr;
        ctx->taken = true;
        return ctx->user;
    }
    /// Stops applying: this entry and `ntail` before it count as not
    /// applied; the node stops with `st` (on_error follows).
    void set_error_and_rollback(size_t ntail = 0, const Status *st = nullptr) {
        raft_iterator_set_error_and_rollback(
            it_, ntail, st ? st->error_code() : RAFT_ESTATEMACHINE,
            st ? st->error_cstr() : "state machine error");
    }

private:
    raft_iterator_t *it_;
};

/* ------------------------------------------------------------- Snapshots */

/// braft::SnapshotWriter: write files under get_path(), register each.
class SnapshotWriter {
public:
    explicit SnapshotWriter(raft_snapshot_writer_t *w) : w_(w) {}
    SnapshotWriter(const SnapshotWriter &) = delete;
    SnapshotWriter &operator=(const SnapshotWriter &) = delete;
    std::string get_path() const {
        const char *p = raft_snapshot_writer_path(w_);
        return p ? p : "";
    }
    /// Registers `name` (a file directly under get_path()). Returns 0 or a code.
    int add_file(const std::string &name) { return raft_snapshot_writer_add_file(w_, name.c_str()); }

private:
    raft_snapshot_writer_t *w_;
};

/// braft::SnapshotReader: the snapshot on_snapshot_load reads.
class SnapshotReader {
public:
    explicit SnapshotReader(const raft_snapshot_reader_t *r) : r_(r) {}
    SnapshotReader(const SnapshotReader &) = delete;
    SnapshotReader &operator=(const SnapshotReader &) = delete;
    std::string get_path() const {
        const char *p = raft_snapshot_reader_path(r_);
        return p ? p : "";
    }
    void list_files(std::vector<std::string> *files) const {
        files->clear();
        size_t n = raft_snapshot_reader_file_count(r_);
        for (size_t i = 0; i < n; ++i) {
            const char *name = raft_snapshot_reader_file_name(r_, i);
            if (name) files->emplace_back(name);
        }
    }
    int64_t last_included_index() const { return raft_snapshot_reader_index(r_); }
    int64_t last_included_term() const { return raft_snapshot_reader_term(r_); }

private:
    const raft_snapshot_reader_t *r_;
};

/* ---------------------------------------------------------- StateMachine */

/// braft::StateMachine. Every callback runs on the node's FSM thread, one
/// at a time, in log order.
class StateMachine {
public:
    virtual ~StateMachine() = default;
    /// Required: apply committed entries.
    virtual void on_apply(Iterator &iter) = 0;
    virtual void on_shutdown() {}
    /// Save the state under writer->get_path(), add_file() each file, then
    /// done->Run() exactly once (set done->status() on failure). `writer`
    /// stays valid until then. Default: fails (as braft).
    virtual void on_snapshot_save(SnapshotWriter *writer, Closure *done) {
        (void)writer;
        done->status().set_error(RAFT_ESTATEMACHINE, "on_snapshot_save is not implemented");
        done->Run();
    }
    /// Replace the state with the snapshot. Return 0 on success. Default: -1.
    virtual int on_snapshot_load(SnapshotReader *reader) {
        (void)reader;
        return -1;
    }
    virtual void on_leader_start(int64_t term) { (void)term; }
    virtual void on_leader_stop(const Status &status) { (void)status; }
    virtual void on_error(const Status &status) { (void)status; }
    virtual void on_configuration_committed(const Configuration &conf, int64_t index) {
        (void)conf;
        (void)index;
    }
    virtual void on_start_following(const LeaderChangeContext &ctx) { (void)ctx; }
    virtual void on_stop_following(const LeaderChangeContext &ctx) { (void)ctx; }
};

namespace detail {
/// The Closure handed to on_snapshot_save: owns the writer and the C done.
class SnapshotSaveClosure : public Closure {
public:
    SnapshotSaveClosure(raft_snapshot_writer_t *w, raft_snapshot_done_t *d) : writer(w), done_(d) {}
    void Run() override {
        std::unique_ptr<SnapshotSaveClosure> self(this);
        raft_snapshot_done_run(done_, status().error_code(), status().error_cstr());
    }
    SnapshotWriter writer;

private:
    raft_snapshot_done_t *done_;
};

inline StateMachine *fsm(void *ctx) { return static_cast<StateMachine *>(ctx); }

/// The C vtable over a StateMachine. No exception leaves these lambdas:
/// one thrown by on_apply stops the node through
/// raft_iterator_set_error_and_rollback (ESTATEMACHINE, on_error follows);
/// by on_snapshot_save fails that snapshot (a Closure run later is then
/// harmless); by on_snapshot_load fails the load (the node stops); by any
/// other callback is reported on stderr and ignored.
inline raft_fsm_vtable_t vtable() {
    raft_fsm_vtable_t v{};
    v.on_apply = [](void *ctx, raft_iterator_t *it) noexcept {
        try {
            Iterator iter(it);
            fsm(ctx)->on_apply(iter);
        } catch (...) {
            std::string what = "on_apply threw: " + what_of(std::current_exception());
            raft_iterator_set_error_and_rollback(it, 0, RAFT_ESTATEMACHINE, what.c_str());
        }
    };
    v.on_shutdown = [](void *ctx) noexcept { guarded("on_shutdown", [&] { fsm(ctx)->on_shutdown(); }); };
    v.on_snapshot_save = [](void *ctx, raft_snapshot_writer_t *w, raft_snapshot_done_t *d) noexcept {
        try {
            auto *done = new SnapshotSaveClosure(w, d);
            fsm(ctx)->on_snapshot_save(&done->writer, done);
        } catch (...) {
            // The done may have run already: a second run is refused (EINVAL)
            // and changes nothing, so failing it here is always safe.
            std::string what = "on_snapshot_save threw: " + what_of(std::current_exception());
            (void)raft_snapshot_done_run(d, RAFT_ESTATEMACHINE, what.c_str());
        }
    };
    v.on_snapshot_load = [](void *ctx, const raft_snapshot_reader_t *r) noexcept -> int32_t {
        try {
            SnapshotReader reader(r);
            return fsm(ctx)->on_snapshot_load(&reader);
        } catch (...) {
            report_exception("on_snapshot_load (the load fails)", std::current_exception());
            return RAFT_ESTATEMACHINE;
        }
    };
    v.on_leader_start = [](void *ctx, int64_t term) noexcept {
        guarded("on_leader_start", [&] { fsm(ctx)->on_leader_start(term); });
    };
    v.on_leader_stop = [](void *ctx, const raft_status_t *st) noexcept {
        guarded("on_leader_stop", [&] { fsm(ctx)->on_leader_stop(Status::from_c(st)); });
    };
    v.on_error = [](void *ctx, const raft_status_t *st) noexcept {
        guarded("on_error", [&] { fsm(ctx)->on_error(Status::from_c(st)); });
    };
    v.on_configuration_committed = [](void *ctx, const char *voters, const char *learners,
                                      int64_t index) noexcept {
        (void)learners;
        guarded("on_configuration_committed", [&] {
            Configuration conf;
            conf.parse_from(voters ? voters : "");
            fsm(ctx)->on_configuration_committed(conf, index);
        });
    };
    v.on_start_following = [](void *ctx, const char *leader, int64_t term) noexcept {
        guarded("on_start_following", [&] {
            fsm(ctx)->on_start_following(LeaderChangeContext(PeerId(leader), term));
        });
    };
    v.on_stop_following = [](void *ctx, const char *leader, int64_t term) noexcept {
        guarded("on_stop_following", [&] {
            fsm(ctx)->on_stop_following(LeaderChangeContext(PeerId(leader), term));
        });
    };
    return v;
}
}  // namespace detail

/* ------------------------------------------------------------ NodeOptions */

/// braft::NodeOptions (defaults from raft_node_options_init).
struct NodeOptions {
    NodeOptions() {
        raft_node_options_t d;
        raft_node_options_init(&d);
        election_timeout_ms = d.election_timeout_ms;
        catchup_timeout_ms = d.catchup_timeout_ms;
        max_clock_drift_ms = d.max_clock_drift_ms;
        snapshot_interval_s = d.snapshot_interval_s;
        catchup_margin = d.catchup_margin;
        disable_cli = d.disable_cli;
        sync = d.sync;
        enable_leader_lease = d.enable_leader_lease;
        raw_ = d;
    }
    int election_timeout_ms;
    int catchup_timeout_ms;
    int max_clock_drift_ms;
    int snapshot_interval_s;
    int64_t catchup_margin;
    Configuration initial_conf;
    Configuration initial_learners;
    std::string log_uri;
    std::string raft_meta_uri;
    std::string snapshot_uri;
    bool disable_cli;
    bool sync;
    bool enable_leader_lease;
    /// Required: the state machine (borrowed; must outlive the Node unless
    /// node_owns_fsm).
    StateMachine *fsm = nullptr;
    /// The Node deletes `fsm` after it has shut down.
    bool node_owns_fsm = false;

    /// The C options; the strings point into this object.
    raft_node_options_t to_c(std::string *conf, std::string *learners) const {
        raft_node_options_t o = raw_;
        o.election_timeout_ms = election_timeout_ms;
        o.catchup_timeout_ms = catchup_timeout_ms;
        o.max_clock_drift_ms = max_clock_drift_ms;
        o.snapshot_interval_s = snapshot_interval_s;
        o.catchup_margin = catchup_margin;
        o.disable_cli = disable_cli;
        o.sync = sync;
        o.enable_leader_lease = enable_leader_lease;
        *conf = initial_conf.to_string();
        *learners = initial_learners.to_string();
        o.initial_conf = conf->c_str();
        o.initial_learners = learners->c_str();
        o.log_uri = log_uri.c_str();
        o.raft_meta_uri = raft_meta_uri.c_str();
        o.snapshot_uri = snapshot_uri.c_str();
        return o;
    }
    /// The full C struct, for the tuning fields not mirrored above
    /// (max_segment_size, apply_batch, ...).
    raft_node_options_t &raw() { return raw_; }

private:
    raft_node_options_t raw_;
};

/// braft::Task: `data` is copied by apply(); `done` runs exactly once.
struct Task {
    const std::string *data = nullptr;
    Closure *done = nullptr;
    int64_t expected_term = -1;
};

/* ----------------------------------------------------------------- Server */

/// One incoming request of a user method; answer it exactly once. An
/// unanswered Request answers itself with an error when destroyed.
class Request {
public:
    explicit Request(raft_request_t *req) : req_(req) {}
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    Request(Request &&o) noexcept : req_(std::exchange(o.req_, nullptr)) {}
    Request &operator=(Request &&o) noexcept {
        if (this != &o) {
            abandon();
            req_ = std::exchange(o.req_, nullptr);
        }
        return *this;
    }
    ~Request() { abandon(); }

    std::string_view data() const {
        uintptr_t len = 0;
        const uint8_t *p = raft_request_data(req_, &len);
        return p ? std::string_view(reinterpret_cast<const char *>(p), len) : std::string_view();
    }
    std::string group() const {
        const char *g = raft_request_group(req_);
        return g ? g : "";
    }
    /// brpc's log id of a baidu_std request (0 otherwise).
    int64_t log_id() const { return raft_request_log_id(req_); }
    /// brpc's request attachment of a baidu_std request (empty otherwise).
    std::string_view attachment() const {
        uintptr_t len = 0;
        const uint8_t *p = raft_request_attachment(req_, &len);
        return p ? std::string_view(reinterpret_cast<const char *>(p), len) : std::string_view();
    }
    /// The attachment sent with a successful answer over baidu_std.
    void set_reply_attachment(std::string_view bytes) {
        if (req_)
            raft_request_set_reply_attachment(req_, reinterpret_cast<const uint8_t *>(bytes.data()),
                                              bytes.size());
    }
    bool answered() const { return req_ == nullptr; }
    void reply(std::string_view bytes) {
        if (!req_) return;
        raft_request_reply(std::exchange(req_, nullptr), reinterpret_cast<const uint8_t *>(bytes.data()),
                           bytes.size());
    }
    void reply_error(int code, const std::string &message, const std::string &leader_hint = "") {
        if (!req_) return;
        raft_request_reply_error(std::exchange(req_, nullptr), code, message.c_str(),
                                 leader_hint.c_str());
    }

private:
    void abandon() {
        if (req_) reply_error(RAFT_EINTERNAL, "request dropped unanswered");
    }
    raft_request_t *req_;
};

/// braft::add_service + brpc::Server: one port for every node of the
/// process and the user's methods.
class Server {
public:
    /// Called on an IO thread: must not block; answer now or later.
    using Handler = std::function<void(Request)>;

    Server() = default;
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    Server(Server &&o) noexcept
        : s_(std::exchange(o.s_, nullptr)), handlers_(std::move(o.handlers_)) {}
    Server &operator=(Server &&o) noexcept {
        if (this != &o) {
            close();
            s_ = std::exchange(o.s_, nullptr);
            handlers_ = std::move(o.handlers_);
        }
        return *this;
    }
    ~Server() { close(); }

    /// Listens on `addr` ("ip:port"; port 0 picks one). Returns 0 or a code
    /// (the reason in raft_last_error()).
    int start(const std::string &addr) {
        if (s_) return EINVAL_CODE;
        s_ = raft_server_start(addr.c_str());
        return s_ ? 0 : EINVAL_CODE;
    }
    /// Registers a method served on this port. Returns 0, EEXIST or EINVAL.
    int add_method(const std::string &name, Handler handler) {
        auto h = std::make_unique<Handler>(std::move(handler));
        int rc = raft_server_add_method(
            s_, name.c_str(),
            [](void *ctx, raft_request_t *req) noexcept {
                // A throwing handler's Request is destroyed while unwinding,
                // which answers it with RAFT_EINTERNAL.
                detail::guarded("a method handler", [&] { (*static_cast<Handler *>(ctx))(Request(req)); });
            },
            h.get());
        if (rc == 0) handlers_.push_back(std::move(h));
        return rc;
    }
    int port() const { return raft_server_port(s_); }
    /// Stops listening (shut the nodes down first).
    int stop() { return s_ ? raft_server_stop(s_) : 0; }
    raft_server_t *handle() const { return s_; }
    explicit operator bool() const { return s_ != nullptr; }

private:
    static constexpr int EINVAL_CODE = 22;
    void close() {
        if (s_) {
            raft_server_free(s_);
            s_ = nullptr;
        }
        handlers_.clear();
    }
    raft_server_t *s_ = nullptr;
    std::vector<std::unique_ptr<Handler>> handlers_;
};

/* ------------------------------------------------------------------- Node */

/// braft::Node: one replica of `group` on `server`.
class Node {
public:
    Node(Server &server, std::string group, PeerId peer_id)
        : server_(server.handle()), group_(std::move(group)), peer_(std::move(peer_id)) {}
    Node(const Node &) = delete;
    Node &operator=(const Node &) = delete;
    Node(Node &&o) noexcept
        : server_(o.server_),
          group_(std::move(o.group_)),
          peer_(std::move(o.peer_)),
          n_(std::exchange(o.n_, nullptr)),
          owned_fsm_(std::exchange(o.owned_fsm_, nullptr)),
          shut_(o.shut_) {}
    Node &operator=(Node &&o) noexcept {
        if (this != &o) {
            close();
            server_ = o.server_;
            group_ = std::move(o.group_);
            peer_ = std::move(o.peer_);
            n_ = std::exchange(o.n_, nullptr);
            owned_fsm_ = std::exchange(o.owned_fsm_, nullptr);
            shut_ = o.shut_;
        }
        return *this;
    }
    /// Shuts the node down and waits (so the state machine may go next).
    ~Node() { close(); }

    const std::string &group() const { return group_; }
    const PeerId &node_id() const { return peer_; }

    /// braft init: opens the storage and starts. Returns 0 or a code (the
    /// reason in raft_last_error()).
    int init(const NodeOptions &options) {
        if (n_ != nullptr || options.fsm == nullptr) {
            last_error_ = Status(22, n_ ? "node is already initialised" : "NodeOptions.fsm is NULL");
            return 22;
        }
        n_ = raft_node_new(server_, group_.c_str(), peer_.to_string().c_str());
        if (n_ == nullptr) {
            last_error_ = Status::last_error(22);
            return 22;
        }
        std::string conf, learners;
        raft_node_options_t o = options.to_c(&conf, &learners);
        raft_fsm_vtable_t v = detail::vtable();
        int rc = raft_node_init(n_, &o, &v, options.fsm);
        if (rc != 0) {
            std::string why = raft_last_error();
            raft_node_free(n_);
            n_ = nullptr;
            last_error_ = Status(rc, why);
            return rc;
        }
        if (options.node_owns_fsm) owned_fsm_ = options.fsm;
        return 0;
    }
    /// Why the last init failed.
    const Status &init_error() const { return last_error_; }

    /// braft apply: proposes task.data; task.done runs exactly once.
    void apply(const Task &task) {
        raft_task_t t{};
        if (task.data) {
            t.data = reinterpret_cast<const uint8_t *>(task.data->data());
            t.len = task.data->size();
        }
        t.expected_term = task.expected_term;
        detail::ApplyCtx *ctx = nullptr;
        if (task.done) {
            ctx = new detail::ApplyCtx{task.done, false};
            t.done = detail::run_apply;
            t.done_ctx = ctx;
        }
        int rc = raft_node_apply(n_, &t);
        if (rc != 0) {
            delete ctx;
            detail::fail(task.done, rc);
        }
    }

    bool is_leader() const { return raft_node_is_leader(n_); }
    bool is_leader_lease_valid() const { return raft_node_is_leader_lease_valid(n_); }
    int64_t term() const { return raft_node_term(n_); }
    /// The leader, or an empty PeerId.
    PeerId leader_id() const { return PeerId(detail::take_string(raft_node_leader_id(n_))); }

    /// braft list_peers (leader only).
    Status list_peers(std::vector<PeerId> *peers) {
        char *out = nullptr;
        int rc = raft_node_list_peers(n_, &out);
        if (rc != 0) return Status::last_error(rc);
        Configuration conf;
        conf.parse_from(detail::take_string(out));
        conf.list_peers(peers);
        return Status();
    }

    void add_peer(const PeerId &peer, Closure *done) {
        change(raft_node_add_peer, peer.to_string(), done);
    }
    void remove_peer(const PeerId &peer, Closure *done) {
        change(raft_node_remove_peer, peer.to_string(), done);
    }
    void add_learner(const PeerId &peer, Closure *done) {
        change(raft_node_add_learner, peer.to_string(), done);
    }
    void change_peers(const Configuration &new_peers, Closure *done) {
        change(raft_node_change_peers, new_peers.to_string(), done);
    }
    /// Unsafe recovery of a group that lost its quorum.
    Status reset_peers(const Configuration &new_peers) {
        int rc = raft_node_reset_peers(n_, new_peers.to_string().c_str());
        return rc == 0 ? Status() : Status::last_error(rc);
    }
    /// Empty peer: the most up-to-date voter. Returns 0 when started.
    int transfer_leadership_to(const PeerId &peer) {
        return raft_node_transfer_leadership_to(n_, peer.is_empty() ? nullptr : peer.to_string().c_str());
    }
    void snapshot(Closure *done) {
        int rc = raft_node_snapshot(n_, done ? detail::run_closure : nullptr, done);
        if (rc != 0) detail::fail(done, rc);
    }
    int vote() { return raft_node_vote(n_); }
    /// ReadIndex: `done` runs with OK once local reads are linearizable.
    void read_index(Closure *done) {
        int rc = raft_node_read_index(n_, done ? detail::run_closure : nullptr, done);
        if (rc != 0) detail::fail(done, rc);
    }
    /// braft get_status, as one JSON object ("" on error).
    std::string status_json() { return detail::take_string(raft_node_status_json(n_)); }

    /// braft shutdown: `done` (may be NULL) runs once stopped.
    void shutdown(Closure *done) {
        shut_ = true;
        int rc = raft_node_shutdown(n_, done ? detail::run_closure : nullptr, done);
        if (rc != 0) detail::fail(done, rc);
    }
    /// braft join: waits for a requested shutdown.
    void join() {
        if (n_ && shut_) raft_node_join(n_);
    }
    raft_node_t *handle() const { return n_; }

private:
    using ChangeFn = int32_t (*)(raft_node_t *, const char *, raft_done_fn, void *);
    void change(ChangeFn fn, const std::string &arg, Closure *done) {
        int rc = fn(n_, arg.c_str(), done ? detail::run_closure : nullptr, done);
        if (rc != 0) detail::fail(done, rc);
    }
    void close() {
        if (n_ == nullptr) return;
        if (!shut_) raft_node_shutdown(n_, nullptr, nullptr);
        raft_node_join(n_);
        raft_node_free(n_);
        n_ = nullptr;
        delete owned_fsm_;
        owned_fsm_ = nullptr;
    }
    raft_server_t *server_;
    std::string group_;
    PeerId peer_;
    raft_node_t *n_ = nullptr;
    StateMachine *owned_fsm_ = nullptr;
    bool shut_ = false;
    Status last_error_;
};

/* ----------------------------------------------------------------- Client */

/// braft's route table + channel: calls a method on the group's leader.
class Client {
public:
    Client(const std::string &group, const Configuration &conf)
        : c_(raft_client_new(group.c_str(), conf.to_string().c_str())) {}
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;
    Client(Client &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Client &operator=(Client &&o) noexcept {
        if (this != &o) {
            raft_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    ~Client() { raft_client_free(c_); }
    explicit operator bool() const { return c_ != nullptr; }

    /// Blocking call; on OK `*reply` holds the answer.
    Status call(const std::string &method, std::string_view request, std::string *reply,
                int timeout_ms = 5000) {
        raft_buffer_t buf{nullptr, 0};
        int rc = raft_client_call(c_, method.c_str(), reinterpret_cast<const uint8_t *>(request.data()),
                                  request.size(), timeout_ms, &buf);
        if (rc != 0) return Status::last_error(rc);
        if (reply) reply->assign(reinterpret_cast<const char *>(buf.data), buf.len);
        raft_buffer_free(&buf);
        return Status();
    }
    PeerId leader() const { return PeerId(detail::take_string(raft_client_leader(c_))); }

private:
    raft_client_t *c_;
};

}  // namespace rraft

#endif /* RRAFT_HPP */
