"""A 3-node group in this Python process through the ctypes binding.

Run: RRAFT_LIB=target/release/librraft.so python3 -m unittest discover -s bindings/python/tests
"""

import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rraft  # noqa: E402

GROUP = "py"


def wait_for(cond, what, limit=15.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


class Recorder(rraft.StateMachine):
    """Records every entry; its snapshot is the list of entries."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.leader_terms = []
        self.loads = 0
        self.confs = []
        self.shut = False

    def applied(self):
        with self.lock:
            return list(self.entries)

    def on_apply(self, iterator):
        for entry in iterator:
            with self.lock:
                self.entries.append(entry.data)
                count = len(self.entries)
            entry.set_result((entry.index, count))

    def on_snapshot_save(self, writer, done):
        with self.lock:
            body = b"\n".join(self.entries)
        with open(os.path.join(writer.path, "data"), "wb") as f:
            f.write(body)
        writer.add_file("data")
        done()

    def on_snapshot_load(self, reader):
        assert reader.files == ["data"], reader.files
        with open(os.path.join(reader.path, "data"), "rb") as f:
            body = f.read()
        with self.lock:
            self.entries = body.split(b"\n") if body else []
            self.loads += 1
        return True

    def on_leader_start(self, term):
        self.leader_terms.append(term)

    def on_configuration_committed(self, voters, learners, index):
        self.confs.append((voters, index))

    def on_shutdown(self):
        self.shut = True


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.server = rraft.Server("127.0.0.1:0")
        port = cls.server.port
        cls.ids = ["127.0.0.1:%d:%d" % (port, i) for i in range(3)]
        cls.fsms = [Recorder() for _ in range(3)]
        cls.nodes = []
        for i, peer in enumerate(cls.ids):
            node = rraft.Node(cls.server, GROUP, peer)
            node.init(
                cls.fsms[i],
                initial_conf=cls.ids,
                data_dir=os.path.join(cls.dir.name, "n%d" % i),
                election_timeout_ms=300,
                snapshot_interval_s=0,
            )
            cls.nodes.append(node)

    @classmethod
    def tearDownClass(cls):
        futures = [n.shutdown() for n in cls.nodes]
        for f in futures:
            f.result(timeout=10)
        for n in cls.nodes:
            n.close()
        assert all(f.shut for f in cls.fsms)
        cls.server.close()
        cls.dir.cleanup()

    def leader(self):
        found = []

        def one():
            found[:] = [i for i, n in enumerate(self.nodes) if n.is_leader()]
            return len(found) == 1

        wait_for(one, "a single leader")
        return found[0]

    def converge(self, count):
        wait_for(lambda: all(len(f.applied()) >= count for f in self.fsms), "every node to apply %d" % count)
        first = self.fsms[0].applied()
        for f in self.fsms[1:]:
            self.assertEqual(f.applied(), first)
        return first

    def test_1_apply_replicates_to_every_node(self):
        l = self.leader()
        base = len(self.fsms[l].applied())
        futures = [self.nodes[l].apply(b"a-%d" % i) for i in range(40)]
        results = [f.result(timeout=15) for f in futures]
        indexes = [r[0] for r in results]
        self.assertEqual(indexes, sorted(indexes))
        self.assertEqual([r[1] for r in results], list(range(base + 1, base + 41)))
        entries = self.converge(base + 40)
        self.assertEqual(entries[-1], b"a-39")
        self.assertTrue(self.fsms[l].leader_terms)

    def test_2_errors_are_exceptions_with_code_and_message(self):
        l = self.leader()
        f = (l + 1) % 3
        with self.assertRaises(rraft.RaftError) as ctx:
            self.nodes[f].apply(b"nope").result(timeout=10)
        self.assertEqual(ctx.exception.code, rraft.EPERM)
        with self.assertRaises(rraft.RaftError) as ctx:
            self.nodes[f].list_peers()
        self.assertEqual(ctx.exception.code, rraft.EPERM)
        self.assertIn("leader", ctx.exception.message)
        with self.assertRaises(rraft.RaftError) as ctx:
            self.nodes[l].apply(b"x", expected_term=self.nodes[l].term + 7).result(timeout=10)
        self.assertEqual(ctx.exception.code, rraft.EPERM)
        with self.assertRaises(rraft.RaftError) as ctx:
            rraft.Node(self.server, GROUP, "not a peer id")
        self.assertEqual(ctx.exception.code, rraft.EINVAL)
        self.assertTrue(ctx.exception.message)
        with self.assertRaises(rraft.RaftError) as ctx:
            self.nodes[l].add_peer("bad peer").result(timeout=10)
        self.assertEqual(ctx.exception.code, rraft.EINVAL)

    def test_3_status_peers_snapshot_read_index(self):
        l = self.leader()
        self.nodes[l].apply(b"s").result(timeout=10)
        self.assertEqual(sorted(self.nodes[l].list_peers()), sorted(self.ids))
        status = self.nodes[l].status()
        self.assertEqual(status["state"], "Leader")
        self.assertEqual(status["peer_id"], self.ids[l])
        self.assertEqual(len(status["peers"]), 2)
        for n in self.nodes:
            n.snapshot().result(timeout=15)
        for n in self.nodes:
            self.assertGreater(n.status()["snapshot_index"], 0)
        f = (l + 1) % 3
        self.nodes[f].read_index().result(timeout=10)
        self.assertEqual(self.nodes[f].leader_id(), self.ids[l])

    def test_4_leader_transfer(self):
        l = self.leader()
        t = (l + 1) % 3
        self.nodes[l].transfer_leadership_to(self.ids[t])
        wait_for(lambda: self.nodes[t].is_leader(), "the transfer")
        base = len(self.fsms[t].applied())
        futures = [self.nodes[t].apply(b"b-%d" % i) for i in range(10)]
        for fut in futures:
            fut.result(timeout=15)
        self.assertEqual(self.converge(base + 10)[-1], b"b-9")
        with self.assertRaises(rraft.RaftError) as ctx:
            self.nodes[l].transfer_leadership_to(self.ids[t])
        self.assertEqual(ctx.exception.code, rraft.EPERM)

    def test_5_user_methods_and_client(self):
        def echo(request):
            l = [i for i, n in enumerate(self.nodes) if n.is_leader()]
            if not l:
                request.reply_error(rraft.EAGAIN, "no leader yet")
                return
            future = self.nodes[l[0]].apply(request.data)
            future.add_done_callback(
                lambda f: request.reply(b"applied %d" % f.result()[0])
                if f.exception() is None
                else request.reply_error(f.exception().code, f.exception().message)
            )

        self.server.add_method("py.apply", echo)
        with self.assertRaises(rraft.RaftError) as ctx:
            self.server.add_method("py.apply", echo)
        self.assertEqual(ctx.exception.code, rraft.EEXIST)
        with rraft.Client(GROUP, self.ids) as client:
            reply = client.call("py.apply", b"via-client", timeout_ms=10000)
            self.assertTrue(reply.startswith(b"applied "), reply)
        wait_for(lambda: all(f.applied()[-1:] == [b"via-client"] for f in self.fsms), "via-client everywhere")

    def test_5b_client_over_baidu_std(self):
        seen = []

        def echo(request):
            seen.append((request.log_id, request.attachment))
            request.set_reply_attachment(b"att")
            request.reply(request.data)

        self.server.add_method("py.EchoService.echo", echo)
        with rraft.Client(GROUP, self.ids) as client:
            client.use_baidu_std()
            self.assertEqual(client.call("py.EchoService.echo", b"brpc", timeout_ms=10000), b"brpc")
            with self.assertRaises(rraft.RaftError) as ctx:
                client.call("py.EchoService.missing", b"", timeout_ms=10000)
            self.assertEqual(ctx.exception.code, 1002)  # brpc's ENOMETHOD
        self.assertEqual(seen, [(0, b"")])

    def test_6_membership(self):
        l = self.leader()
        r = (l + 1) % 3
        self.nodes[l].remove_peer(self.ids[r]).result(timeout=15)
        self.assertEqual(sorted(self.nodes[l].list_peers()), sorted(p for p in self.ids if p != self.ids[r]))
        self.nodes[l].add_peer(self.ids[r]).result(timeout=15)
        self.assertEqual(sorted(self.nodes[l].list_peers()), sorted(self.ids))
        base = len(self.fsms[l].applied())
        self.nodes[l].apply(b"after-membership").result(timeout=10)
        self.assertEqual(self.converge(base + 1)[-1], b"after-membership")


class MiscTest(unittest.TestCase):
    def test_version_and_strerror(self):
        self.assertTrue(rraft.version())
        self.assertTrue(rraft.strerror(rraft.EPERM))
        self.assertTrue(os.path.exists(rraft.LIB_PATH) or rraft.LIB_PATH)

    def test_error_names_are_symbolic(self):
        self.assertEqual(rraft.RaftError(rraft.EPERM).name, "EPERM")
        self.assertEqual(rraft.RaftError(rraft.ERAFTTIMEDOUT).name, "ERAFTTIMEDOUT")
        self.assertEqual(rraft.RaftError(rraft.ENODESHUTDOWN).name, "ENODESHUTDOWN")
        self.assertEqual(rraft.RaftError(rraft.EINVAL).name, "EINVAL")
        self.assertEqual(rraft.RaftError(rraft.EINTERNAL).name, "EINTERNAL")
        self.assertEqual(rraft.RaftError(110).name, "ETIMEDOUT")
        self.assertEqual(rraft.RaftError(98765).name, "E98765")
        err = rraft.RaftError(rraft.EPERM, "not the leader")
        self.assertEqual(str(err), "EPERM (1): not the leader")
        self.assertEqual(err.description, rraft.strerror(rraft.EPERM))

    def test_errors_print_their_code_once(self):
        # raft_last_error() is "[code] message": the binding keeps the message.
        with self.assertRaises(rraft.RaftError) as ctx:
            rraft.Server("")
        text = str(ctx.exception)
        self.assertTrue(text.startswith("EINVAL (22): "), text)
        self.assertNotIn("[22]", text)
        self.assertEqual(text.count("22"), 1, text)

    def test_apply_accepts_bytes_like_and_str_only(self):
        class Keep(rraft.StateMachine):
            def on_apply(self, iterator):
                for entry in iterator:
                    entry.set_result(entry.data)

        with tempfile.TemporaryDirectory() as d, rraft.Server("127.0.0.1:0") as server:
            peer = "127.0.0.1:%d:0" % server.port
            with rraft.Node(server, "types", peer) as node:
                node.init(Keep(), initial_conf=peer, data_dir=d, election_timeout_ms=200)
                wait_for(node.is_leader, "the single node to lead")
                for bad in (12345, [1, 2], (1, 2), None, 1.5, object()):
                    with self.assertRaises(TypeError, msg=repr(bad)):
                        node.apply(bad)
                self.assertEqual(node.apply(b"\x01\x02").result(timeout=10), b"\x01\x02")
                self.assertEqual(node.apply(bytearray(b"ba")).result(timeout=10), b"ba")
                self.assertEqual(node.apply(memoryview(b"mv")).result(timeout=10), b"mv")
                self.assertEqual(node.apply("caf\u00e9").result(timeout=10), "caf\u00e9".encode("utf-8"))
                with self.assertRaises(rraft.RaftError) as ctx:
                    node.apply(b"x", expected_term=node.term + 5).result(timeout=10)
                text = str(ctx.exception)
                self.assertTrue(text.startswith("EPERM (1): "), text)
                self.assertNotIn("[1]", text)
                with rraft.Client("types", [peer]) as client:
                    with self.assertRaises(TypeError):
                        client.call("any.method", 7)

    def test_bad_server_address(self):
        with self.assertRaises(rraft.RaftError) as ctx:
            rraft.Server("")
        self.assertEqual(ctx.exception.code, rraft.EINVAL)

    def test_on_apply_exception_stops_the_node(self):
        class Broken(rraft.StateMachine):
            def __init__(self):
                self.errors = []

            def on_apply(self, iterator):
                for entry in iterator:
                    if entry.data == b"boom":
                        raise ValueError("boom")

            def on_error(self, error):
                self.errors.append(error)

        with tempfile.TemporaryDirectory() as d, rraft.Server("127.0.0.1:0") as server:
            peer = "127.0.0.1:%d:0" % server.port
            fsm = Broken()
            with rraft.Node(server, "broken", peer) as node:
                node.init(fsm, initial_conf=peer, data_dir=d, election_timeout_ms=200)
                wait_for(node.is_leader, "the single node to lead")
                node.apply(b"fine").result(timeout=10)
                fut = node.apply(b"boom")
                wait_for(lambda: fsm.errors, "on_error")
                self.assertIn("boom", fsm.errors[0].message)
                with self.assertRaises(rraft.RaftError):
                    fut.result(timeout=10)


if __name__ == "__main__":
    unittest.main()
