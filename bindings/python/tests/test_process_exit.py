"""A script that exits with nodes and servers still open exits cleanly, with
its own exit code: the binding shuts them down before the interpreter
finalizes. Also: the README's example runs as printed.

Run: RRAFT_LIB=target/release/librraft.so python3 -m unittest discover -s bindings/python/tests
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join(HERE, "..")

# A 3-node group, a user method, a node that was never initialised, and 50
# proposals still in flight when the script ends; then MODE decides how.
OPEN_GROUP = r"""
import os, sys, time
import rraft

class Echo(rraft.StateMachine):
    def on_apply(self, iterator):
        for entry in iterator:
            entry.set_result(entry.data)

data = sys.argv[1]
mode = sys.argv[2]
server = rraft.Server("127.0.0.1:0")
ids = ["127.0.0.1:%d:%d" % (server.port, i) for i in range(3)]
nodes = []
for i, peer in enumerate(ids):
    node = rraft.Node(server, "exit", peer)
    node.init(Echo(), initial_conf=ids, data_dir=os.path.join(data, str(i)), election_timeout_ms=200)
    nodes.append(node)
server.add_method("echo", lambda request: request.reply(request.data))
idle = rraft.Node(server, "idle", "127.0.0.1:%d:7" % server.port)
end = time.monotonic() + 20
while not any(n.is_leader() for n in nodes):
    assert time.monotonic() < end, "no leader"
    time.sleep(0.01)
leader = [n for n in nodes if n.is_leader()][0]
assert leader.apply(b"first").result(10) == b"first"
pending = [leader.apply(b"p%d" % i) for i in range(50)]
print("ready", flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "raise":
    raise RuntimeError("uncaught on purpose")
"""


def run_script(source, *args, cwd=None, timeout=60):
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", source] + list(args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


class ExitWithOpenNodesTest(unittest.TestCase):
    def run_mode(self, mode):
        with tempfile.TemporaryDirectory() as d:
            out = run_script(OPEN_GROUP, d, mode)
        self.assertIn("ready", out.stdout, out.stderr)
        self.assertNotIn("FATAL", out.stderr)
        self.assertNotIn("Aborted", out.stderr)
        return out

    def test_normal_end_with_open_nodes_exits_0(self):
        out = self.run_mode("normal")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stderr, "")

    def test_sys_exit_code_is_kept_with_open_nodes(self):
        out = self.run_mode("exit3")
        self.assertEqual(out.returncode, 3, out.stderr)
        self.assertEqual(out.stderr, "")

    def test_uncaught_exception_exits_1_with_its_traceback(self):
        out = self.run_mode("raise")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("Traceback (most recent call last)", out.stderr)
        self.assertIn("RuntimeError: uncaught on purpose", out.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReadmeExampleTest(unittest.TestCase):
    def test_readme_example_runs_as_printed(self):
        with open(os.path.join(PACKAGE_DIR, "README.md")) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertEqual(len(blocks), 1, "expected one python block in the README")
        # Its one change: a free port instead of 8100, so runs never collide.
        source = blocks[0].replace("127.0.0.1:8100", "127.0.0.1:%d" % free_port())
        with tempfile.TemporaryDirectory() as d:
            out = run_script(source, cwd=d)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.strip().splitlines()[-1], "5", out.stdout)


if __name__ == "__main__":
    unittest.main()
