// braft's counter example ported to rraft through include/rraft.hpp: the
// braft names are renamed (braft:: → rraft::), the brpc service becomes two
// methods on the rraft::Server port. A replicated int64 counter:
//   fetch_add <delta>  → adds delta (through Raft), answers the previous value
//   get                → answers the value (leader only)
// Requests and answers are decimal text. Snapshots hold the value.
//
// Usage: counter_server --peer IP:PORT:IDX --conf P1,P2,P3 [--data DIR]
//                       [--group Counter] [--snapshot_interval S]
// Stops cleanly on SIGINT / SIGTERM.

#include "rraft.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace example {

class Counter;

// Like braft's FetchAddClosure: carries the request until on_apply answers.
class FetchAddClosure : public rraft::Closure {
public:
    FetchAddClosure(Counter *counter, rraft::Request request)
        : counter_(counter), request_(std::move(request)) {}
    void Run() override;
    void set_value(int64_t v) { value_ = v; }

private:
    Counter *counter_;
    rraft::Request request_;
    int64_t value_ = 0;
};

class Counter : public rraft::StateMachine {
public:
    Counter() = default;
    ~Counter() override { delete node_; }

    int start(rraft::Server &server, const std::string &group, const std::string &peer,
              const std::string &conf, const std::string &data, int snapshot_interval) {
        rraft::NodeOptions node_options;
        if (node_options.initial_conf.parse_from(conf) != 0) {
            std::fprintf(stderr, "Fail to parse configuration `%s'\n", conf.c_str());
            return -1;
        }
        node_options.election_timeout_ms = 1000;
        node_options.fsm = this;
        node_options.node_owns_fsm = false;
        node_options.snapshot_interval_s = snapshot_interval;
        node_options.log_uri = "local://" + data + "/log";
        node_options.raft_meta_uri = "local://" + data + "/raft_meta";
        node_options.snapshot_uri = "local://" + data + "/snapshot";
        node_options.disable_cli = false;
        node_ = new rraft::Node(server, group, rraft::PeerId(peer));
        if (node_->init(node_options) != 0) {
            std::fprintf(stderr, "Fail to init raft node: %s\n",
                         node_->init_error().to_string().c_str());
            delete node_;
            node_ = nullptr;
            return -1;
        }
        return 0;
    }

    // Service methods (braft: CounterServiceImpl).
    void fetch_add(rraft::Request request) {
        const int64_t term = leader_term_.load(std::memory_order_relaxed);
        if (term < 0) return redirect(std::move(request));
        std::string log(request.data());
        char *end = nullptr;
        std::strtoll(log.c_str(), &end, 10);
        if (log.empty() || *end != '\0') {
            request.reply_error(EINVAL, "fetch_add wants a decimal delta");
            return;
        }
        rraft::Task task;
        task.data = &log;
        task.done = new FetchAddClosure(this, std::move(request));
        task.expected_term = term;  // avoid ABA, as braft's example does
        return node_->apply(task);
    }

    void get(rraft::Request request) {
        if (!is_leader()) return redirect(std::move(request));
        request.reply(std::to_string(value_.load(std::memory_order_relaxed)));
    }

    bool is_leader() const { return leader_term_.load(std::memory_order_acquire) > 0; }

    void shutdown() {
        if (node_) node_->shutdown(nullptr);
    }
    void join() {
        if (node_) node_->join();
    }

    void redirect(rraft::Request request) {
        rraft::PeerId leader = node_ ? node_->leader_id() : rraft::PeerId();
        request.reply_error(EPERM, "not the leader", leader.to_string());
    }

private:
    friend class FetchAddClosure;

    void on_apply(rraft::Iterator &iter) override {
        for (; iter.valid(); iter.next()) {
            int64_t delta = std::strtoll(std::string(iter.data()).c_str(), nullptr, 10);
            FetchAddClosure *c = nullptr;
            if (iter.done()) c = dynamic_cast<FetchAddClosure *>(iter.done());
            rraft::AsyncClosureGuard closure_guard(iter.done());
            const int64_t prev = value_.fetch_add(delta, std::memory_order_relaxed);
            if (c) c->set_value(prev);
        }
    }

    void on_snapshot_save(rraft::SnapshotWriter *writer, rraft::Closure *done) override {
        rraft::ClosureGuard done_guard(done);
        std::string path = writer->get_path() + "/data";
        std::ofstream out(path, std::ios::trunc);
        out << value_.load(std::memory_order_relaxed) << '\n';
        out.close();
        if (!out || writer->add_file("data") != 0) {
            done->status().set_error(EIO, "Fail to save " + path);
        }
    }

    int on_snapshot_load(rraft::SnapshotReader *reader) override {
        if (is_leader()) {
            std::fprintf(stderr, "Leader is not supposed to load snapshot\n");
            return -1;
        }
        std::ifstream in(reader->get_path() + "/data");
        int64_t value = 0;
        if (!(in >> value)) return -1;
        value_.store(value, std::memory_order_relaxed);
        return 0;
    }

    void on_leader_start(int64_t term) override {
        leader_term_.store(term, std::memory_order_release);
        std::fprintf(stderr, "Node becomes leader of term %lld\n", static_cast<long long>(term));
    }
    void on_leader_stop(const rraft::Status &status) override {
        leader_term_.store(-1, std::memory_order_release);
        std::fprintf(stderr, "Node stepped down: %s\n", status.to_string().c_str());
    }
    void on_shutdown() override { std::fprintf(stderr, "This node is down\n"); }
    void on_error(const rraft::Status &e) override {
        std::fprintf(stderr, "Met raft error %s\n", e.to_string().c_str());
    }
    void on_configuration_committed(const rraft::Configuration &conf, int64_t index) override {
        std::fprintf(stderr, "Configuration of this group is %s (index %lld)\n",
                     conf.to_string().c_str(), static_cast<long long>(index));
    }
    void on_start_following(const rraft::LeaderChangeContext &ctx) override {
        std::fprintf(stderr, "Node start following %s\n", ctx.leader_id().to_string().c_str());
    }

    rraft::Node *node_ = nullptr;  // set before init: callbacks may read it
    std::atomic<int64_t> value_{0};
    std::atomic<int64_t> leader_term_{-1};
};

void FetchAddClosure::Run() {
    std::unique_ptr<FetchAddClosure> self_guard(this);
    if (status().ok()) {
        request_.reply(std::to_string(value_));
        return;
    }
    // Try the leader this node knows of.
    rraft::PeerId leader = counter_->node_ ? counter_->node_->leader_id() : rraft::PeerId();
    request_.reply_error(status().error_code(), status().error_str(), leader.to_string());
}

}  // namespace example

static std::atomic<bool> g_stop{false};
static void on_signal(int) { g_stop = true; }

int main(int argc, char **argv) {
    std::string peer, conf, data = "./data", group = "Counter";
    int snapshot_interval = 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--peer") peer = v;
        else if (k == "--conf") conf = v;
        else if (k == "--data") data = v;
        else if (k == "--group") group = v;
        else if (k == "--snapshot_interval") snapshot_interval = std::atoi(v.c_str());
        else {
            std::fprintf(stderr, "unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    if (peer.empty() || conf.empty()) {
        std::fprintf(stderr, "usage: %s --peer IP:PORT:IDX --conf P1,P2,P3 [--data DIR]\n", argv[0]);
        return 2;
    }
    std::string addr = peer.substr(0, peer.rfind(':'));
    rraft::Server server;  // braft: brpc::Server + braft::add_service
    if (server.start(addr) != 0) {
        std::fprintf(stderr, "Fail to start Server on %s: %s\n", addr.c_str(), raft_last_error());
        return 1;
    }
    example::Counter counter;
    server.add_method("fetch_add", [&counter](rraft::Request req) { counter.fetch_add(std::move(req)); });
    server.add_method("get", [&counter](rraft::Request req) { counter.get(std::move(req)); });
    if (counter.start(server, group, peer, conf, data, snapshot_interval) != 0) return 1;
    std::fprintf(stderr, "Counter service is running on %s\n", addr.c_str());

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));

    std::fprintf(stderr, "Counter service is going to quit\n");
    counter.shutdown();
    counter.join();
    server.stop();
    return 0;
}
