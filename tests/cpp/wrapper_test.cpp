// The C++ wrapper (include/rraft.hpp) end to end: three nodes of one group in
// this process, applies with closures (braft style: on_apply runs the done
// through an AsyncClosureGuard), every node applies the same, snapshots,
// list_peers, leader transfer, the error path of apply, shutdown by RAII.
// Usage: wrapper_test DATA_DIR. Exit 0 when every check passed.

#include "rraft.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <sstream>
#include <thread>

static int g_checks = 0, g_failed = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        ++g_checks;                                                              \
        if (!(cond)) {                                                           \
            ++g_failed;                                                          \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

static bool wait_until(const std::function<bool()> &cond, int ms = 10000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
}

// A closure that counts its outcome (braft style: it deletes itself).
struct Counted : rraft::Closure {
    std::atomic<int> *ok, *failed;
    std::atomic<int> *last_code;
    Counted(std::atomic<int> *o, std::atomic<int> *f, std::atomic<int> *c) : ok(o), failed(f), last_code(c) {}
    void Run() override {
        std::unique_ptr<Counted> self(this);
        if (status().ok()) ++*ok; else { ++*failed; *last_code = status().error_code(); }
    }
};

class Recorder : public rraft::StateMachine {
public:
    std::vector<std::string> applied() {
        std::lock_guard<std::mutex> g(mu_);
        return log_;
    }
    int leader_starts() const { return leader_starts_; }
    int loads() const { return loads_; }
    bool shut() const { return shut_; }

    void on_apply(rraft::Iterator &iter) override {
        for (; iter.valid(); iter.next()) {
            rraft::AsyncClosureGuard guard(iter.done());
            std::lock_guard<std::mutex> g(mu_);
            log_.emplace_back(iter.data());
        }
    }
    void on_snapshot_save(rraft::SnapshotWriter *writer, rraft::Closure *done) override {
        rraft::ClosureGuard guard(done);
        std::string path = writer->get_path() + "/data";
        {
            std::ofstream out(path);
            std::lock_guard<std::mutex> g(mu_);
            for (auto &e : log_) out << e << '\n';
        }
        if (writer->add_file("data") != 0) done->status().set_error(5, "add_file failed");
    }
    int on_snapshot_load(rraft::SnapshotReader *reader) override {
        std::vector<std::string> files;
        reader->list_files(&files);
        if (files.size() != 1) return -1;
        std::ifstream in(reader->get_path() + "/data");
        std::vector<std::string> log;
        for (std::string line; std::getline(in, line);) log.push_back(line);
        std::lock_guard<std::mutex> g(mu_);
        log_ = log;
        ++loads_;
        return 0;
    }
    void on_leader_start(int64_t term) override {
        (void)term;
        ++leader_starts_;
    }
    void on_shutdown() override { shut_ = true; }

private:
    std::mutex mu_;
    std::vector<std::string> log_;
    std::atomic<int> leader_starts_{0}, loads_{0};
    std::atomic<bool> shut_{false};
};

static void propose(rraft::Node &node, const std::string &prefix, int n, std::atomic<int> *ok,
                    std::atomic<int> *failed, std::atomic<int> *code) {
    for (int i = 0; i < n; ++i) {
        std::string data = prefix + std::to_string(i);
        rraft::Task task;
        task.data = &data;
        task.done = new Counted(ok, failed, code);
        node.apply(task);
    }
}

/// Throws from on_apply (on "boom") and from on_leader_start: the wrapper
/// must stop the node through its error path, never unwind into rraft.
class Thrower : public rraft::StateMachine {
public:
    void on_apply(rraft::Iterator &iter) override {
        for (; iter.valid(); iter.next()) {
            if (iter.data() == "boom") throw std::runtime_error("boom in on_apply");
            rraft::AsyncClosureGuard guard(iter.done());
            ++applied;
        }
    }
    void on_leader_start(int64_t term) override {
        ++leader_starts;
        throw std::logic_error("thrown by on_leader_start at term " + std::to_string(term));
    }
    void on_error(const rraft::Status &st) override {
        std::lock_guard<std::mutex> g(mu);
        error = st;
        ++errors;
    }
    std::mutex mu;
    rraft::Status error;
    std::atomic<int> applied{0}, leader_starts{0}, errors{0};
};

static void exceptions_stop_at_the_wrapper(rraft::Server &server, const std::string &dir) {
    std::string id = "127.0.0.1:" + std::to_string(server.port()) + ":7";
    Thrower fsm;
    rraft::Node node(server, "cpp-throw", rraft::PeerId(id));
    rraft::NodeOptions opts;
    opts.election_timeout_ms = 300;
    opts.snapshot_interval_s = 0;
    rraft::Configuration conf;
    conf.parse_from(id);
    opts.initial_conf = conf;
    opts.log_uri = "local://" + dir + "/throw/log";
    opts.raft_meta_uri = "local://" + dir + "/throw/meta";
    opts.snapshot_uri = "local://" + dir + "/throw/snapshot";
    opts.fsm = &fsm;
    CHECK(node.init(opts) == 0);
    CHECK(wait_until([&] { return node.is_leader() && fsm.leader_starts == 1; }));
    std::atomic<int> ok{0}, failed{0}, code{0};
    propose(node, "fine-", 3, &ok, &failed, &code);
    CHECK(wait_until([&] { return ok == 3; }));  // the node survived on_leader_start's throw
    std::string boom = "boom";
    rraft::Task task;
    task.data = &boom;
    task.done = new Counted(&ok, &failed, &code);
    node.apply(task);
    CHECK(wait_until([&] { return failed == 1 && fsm.errors == 1; }));
    CHECK(code == RAFT_ESTATEMACHINE);
    {
        std::lock_guard<std::mutex> g(fsm.mu);
        CHECK(fsm.error.error_code() == RAFT_ESTATEMACHINE);
        CHECK(fsm.error.error_str().find("boom in on_apply") != std::string::npos);
    }
    CHECK(fsm.applied == 3);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    rraft::Server server;
    CHECK(server.start("127.0.0.1:0") == 0);
    int port = server.port();
    std::string base = "127.0.0.1:" + std::to_string(port) + ":";
    rraft::Configuration conf;
    CHECK(conf.parse_from(base + "0," + base + "1," + base + "2,") == 0);
    CHECK(conf.size() == 3);

    {
        // init errors carry the code and the library's message.
        Recorder unused;
        rraft::Node bad(server, "cpp", rraft::PeerId("not a peer id"));
        rraft::NodeOptions o;
        o.fsm = &unused;
        CHECK(bad.init(o) == 22);
        CHECK(!bad.init_error().error_str().empty());
        rraft::Node nofsm(server, "cpp", rraft::PeerId(base + "9"));
        CHECK(nofsm.init(rraft::NodeOptions()) == 22);
    }

    Recorder fsm[3];
    std::vector<rraft::Node> nodes;
    for (int i = 0; i < 3; ++i) {
        nodes.emplace_back(server, "cpp", rraft::PeerId(base + std::to_string(i)));
        rraft::NodeOptions opts;
        opts.election_timeout_ms = 300;
        opts.snapshot_interval_s = 0;
        opts.initial_conf = conf;
        std::string d = dir + "/n" + std::to_string(i);
        opts.log_uri = "local://" + d + "/log";
        opts.raft_meta_uri = "local://" + d + "/meta";
        opts.snapshot_uri = "local://" + d + "/snapshot";
        opts.fsm = &fsm[i];
        int rc = nodes.back().init(opts);
        if (rc != 0) std::fprintf(stderr, "init: %s\n", nodes.back().init_error().to_string().c_str());
        CHECK(rc == 0);
    }
    // A Node is movable: the vector may have moved them.
    auto leader = [&]() -> int {
        for (int i = 0; i < 3; ++i)
            if (nodes[i].is_leader()) return i;
        return -1;
    };
    // Proposes `n` entries "<prefix><i>" on `node`; true once all succeeded
    // and every replica applied `total` entries, the same ones.
    auto replicate = [&](rraft::Node &node, const char *prefix, int n, size_t total) {
        std::atomic<int> pok{0}, pfailed{0}, pcode{0};
        propose(node, prefix, n, &pok, &pfailed, &pcode);
        bool done = wait_until([&] { return pok + pfailed == n; }) && pok == n;
        bool applied = wait_until([&] {
            return fsm[0].applied().size() == total && fsm[1].applied().size() == total &&
                   fsm[2].applied().size() == total;
        });
        return done && applied && fsm[0].applied() == fsm[1].applied() && fsm[1].applied() == fsm[2].applied();
    };
    CHECK(wait_until([&] { return leader() >= 0; }));
    int l = leader();
    if (l < 0) return 1;
    CHECK(wait_until([&] { return fsm[l].leader_starts() == 1; }));

    CHECK(replicate(nodes[l], "a-", 50, 50));
    CHECK(!fsm[0].applied().empty() && fsm[0].applied()[49] == "a-49");

    // Snapshot on every node.
    std::atomic<int> sok{0}, sfailed{0}, scode{0};
    for (auto &n : nodes) n.snapshot(new Counted(&sok, &sfailed, &scode));
    CHECK(wait_until([&] { return sok + sfailed == 3; }));
    CHECK(sok == 3);
    std::string st = nodes[l].status_json();
    CHECK(st.find("\"snapshot_index\":0") == std::string::npos);
    CHECK(st.find("\"state\":\"Leader\"") != std::string::npos);

    // list_peers on the leader; EPERM elsewhere.
    std::vector<rraft::PeerId> peers;
    CHECK(nodes[l].list_peers(&peers).ok());
    CHECK(peers.size() == 3);
    int f = (l + 1) % 3;
    rraft::Status lp = nodes[f].list_peers(&peers);
    CHECK(!lp.ok() && lp.error_code() == 1 /* EPERM */ && !lp.error_str().empty());
    CHECK(nodes[f].leader_id() == nodes[l].node_id());

    // apply on a follower fails through the closure (EPERM).
    std::atomic<int> fok{0}, ffailed{0}, fcode{0};
    propose(nodes[f], "x-", 1, &fok, &ffailed, &fcode);
    CHECK(wait_until([&] { return fok + ffailed == 1; }));
    CHECK(ffailed == 1 && fcode == 1);

    // Leader transfer to f, then more writes through the new leader.
    CHECK(nodes[l].transfer_leadership_to(nodes[f].node_id()) == 0);
    CHECK(wait_until([&] { return nodes[f].is_leader(); }));
    CHECK(replicate(nodes[f], "b-", 10, 60));

    // ReadIndex on a follower.
    std::atomic<int> rok{0}, rfailed{0}, rcode{0};
    nodes[l].read_index(new Counted(&rok, &rfailed, &rcode));
    CHECK(wait_until([&] { return rok + rfailed == 1; }));
    CHECK(rok == 1);

    exceptions_stop_at_the_wrapper(server, dir);

    // Shutdown with a closure, then RAII for the rest.
    std::atomic<int> dok{0}, dfailed{0}, dcode{0};
    nodes[0].shutdown(new Counted(&dok, &dfailed, &dcode));
    nodes[0].join();
    CHECK(dok == 1);  // every shutdown done has run when join returns
    CHECK(fsm[0].shut());
    nodes.clear();
    CHECK(fsm[1].shut() && fsm[2].shut());

    std::printf("cpp wrapper: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed == 0 ? 0 : 1;
}
