// Client of counter_server: finds the leader from --conf and calls a method.
// Usage: counter_client --conf P1,P2,P3 [--group Counter] fetch_add DELTA | get
// Prints the answer; exits non-zero with the reason on failure.

#include "rraft.hpp"

#include <cstdio>
#include <string>

int main(int argc, char **argv) {
    std::string conf, group = "Counter";
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        std::string k = argv[i];
        if (k == "--conf") conf = argv[i + 1];
        else if (k == "--group") group = argv[i + 1];
    }
    if (conf.empty() || i >= argc) {
        std::fprintf(stderr, "usage: %s --conf P1,P2,P3 fetch_add DELTA | get\n", argv[0]);
        return 2;
    }
    std::string method = argv[i];
    std::string body = (method == "fetch_add" && i + 1 < argc) ? argv[i + 1] : "";
    rraft::Configuration peers;
    if (peers.parse_from(conf) != 0) {
        std::fprintf(stderr, "bad --conf\n");
        return 2;
    }
    rraft::Client client(group, peers);
    std::string reply;
    rraft::Status st = client.call(method, body, &reply, 10000);
    if (!st.ok()) {
        std::fprintf(stderr, "%s failed: %s\n", method.c_str(), st.to_string().c_str());
        return 1;
    }
    std::printf("%s\n", reply.c_str());
    return 0;
}
