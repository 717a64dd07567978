#!/usr/bin/env python3
"""Checks an installed acp-relay the way an MCP host uses it, through a given launcher
(the venv's entry point, uvx, npx, or the bare binary).

    mcp_session.py --version X.Y.Z [--sigterm] [--exit-code] -- LAUNCHER [ARGS...]

LAUNCHER ARGS is the command a host config would hold, without acp-relay's own arguments:
e.g. `npx --offline acp-relay`. The script then
  * runs `LAUNCHER --version`: one line `acp-relay X.Y.Z (commit …)` on stdout;
  * with --exit-code: runs `LAUNCHER serve --port not-a-number` and expects clap's exit code 2
    (the launcher passes the binary's exit code on);
  * starts `LAUNCHER mcp --name … --port 0 …` (loopback only, a temporary data dir) and holds
    a real MCP session over stdio: initialize, tools/list (acp_status among the tools),
    tools/call acp_status (its version is X.Y.Z, its REST port answers /status on 127.0.0.1);
  * ends that session by closing stdin (exit code 0), or with --sigterm by sending SIGTERM to
    the launcher's pid, and expects the binary to shut down gracefully (its "shutting down"
    log line) and every process the launcher started to be gone.

Everything has a timeout; processes this script started are killed by pid if they outlive
them. Prints `N passed, 0 failed` at the end, exits non-zero on the first failure.
"""

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TIMEOUT = 60  # seconds for any one step: a first uvx/npx start may unpack a cache
PROTOCOL = "2025-06-18"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def descendants(pid):
    """Pids of all processes below `pid` (from /proc), so none is left behind."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_once(cmd, env, args):
    out = subprocess.run(
        cmd + args,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return out


class Session:
    """One `acp-relay mcp` process behind the launcher, spoken to over its stdio."""

    def __init__(self, cmd, env, data_dir):
        self.stderr_path = os.path.join(os.path.dirname(data_dir), "stderr.log")
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd
            + [
                "mcp",
                "--name",
                "packaging-check",
                "--port",
                "0",
                "--ws-host",
                "127.0.0.1",
                "--advertise-host",
                "127.0.0.1",
                "--data-dir",
                data_dir,
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            start_new_session=True,
        )
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.next_id = 1
        self.tree = []

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send(self, msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method, params):
        rid = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + TIMEOUT
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise Failure(f"stdout carries a line that is not JSON-RPC: {line[:200]!r}")
                if msg.get("id") == rid and "method" not in msg:
                    check("error" not in msg, f"{method}: error {msg.get('error')}")
                    return msg["result"]
                # notifications and server requests are not what we wait for
            left = deadline - time.monotonic()
            check(left > 0, f"{method}: no answer within {TIMEOUT}s; stderr:\n{self.stderr()}")
            if not self.sel.select(timeout=left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            check(chunk, f"{method}: stdout closed; stderr:\n{self.stderr()}")
            self.buf += chunk

    def wait(self, what):
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure(f"{what}: still running after {TIMEOUT}s")

    def cleanup(self):
        pids = [self.proc.pid] + self.tree + descendants(self.proc.pid)
        kill_all([p for p in pids if alive(p)])
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self.sel.close()
        self.stderr_file.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True, help="the version Cargo.toml says")
    ap.add_argument("--sigterm", action="store_true", help="end the session with SIGTERM")
    ap.add_argument("--exit-code", action="store_true", help="check exit-code pass-through")
    ap.add_argument("launcher", nargs="+")
    a = ap.parse_args()
    cmd = a.launcher
    env = dict(os.environ, NO_COLOR="1", ACP_LOG="info")
    passed = 0
    what = " ".join(cmd)

    out = run_once(cmd, env, ["--version"])
    check(out.returncode == 0, f"{what} --version: exit {out.returncode}: {out.stderr}")
    first = out.stdout.splitlines()[0] if out.stdout else ""
    check(
        out.stdout.count("\n") == 1 and first.startswith(f"acp-relay {a.version} (commit "),
        f"{what} --version printed {out.stdout!r}, want one line `acp-relay {a.version} (commit …)`",
    )
    print(f"ok  {what} --version: {first}")
    passed += 1

    if a.exit_code:
        out = run_once(cmd, env, ["serve", "--port", "not-a-number"])
        check(out.returncode == 2, f"{what}: a rejected flag gives exit 2, got {out.returncode}")
        print(f"ok  {what}: the binary's exit code (2 for a bad flag) comes through")
        passed += 1

    with tempfile.TemporaryDirectory(prefix="acp-relay-mcp-check-") as tmp:
        data_dir = os.path.join(tmp, "data")
        os.mkdir(data_dir)
        s = Session(cmd, env, data_dir)
        try:
            init = s.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "acp-relay-packaging-check", "version": "1"},
                },
            )
            check(init["serverInfo"]["name"], "initialize names the server")
            s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            tools = [t["name"] for t in s.request("tools/list", {})["tools"]]
            check("acp_status" in tools and "acp_send" in tools, f"tools/list: {tools}")
            res = s.request("tools/call", {"name": "acp_status", "arguments": {}})
            check(not res.get("isError"), f"acp_status failed: {res}")
            status = res.get("structuredContent") or json.loads(res["content"][0]["text"])
            check(status.get("version") == a.version, f"acp_status version: {status.get('version')}")
            port = status["http_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
                rest = json.load(r)
            check(rest["agent_name"] == "packaging-check", f"/status: {rest}")
            print(
                f"ok  {what} mcp: {len(tools)} tools, acp_status version {status['version']}"
                f" commit {status.get('commit')}, REST /status on 127.0.0.1:{port}"
            )
            passed += 1

            s.tree = descendants(s.proc.pid)
            if a.sigterm:
                os.kill(s.proc.pid, signal.SIGTERM)
                code = s.wait("after SIGTERM")
                # The binary logs this when a signal (or stdin EOF) starts its graceful stop;
                # stdin is still open here, so only the forwarded SIGTERM can have caused it.
                deadline = time.monotonic() + 10
                while "shutting down" not in s.stderr() and time.monotonic() < deadline:
                    time.sleep(0.1)
                check("shutting down" in s.stderr(), f"the binary never saw SIGTERM:\n{s.stderr()}")
                ended = f"SIGTERM → exit {code}, the binary shut down gracefully"
            else:
                s.proc.stdin.close()
                code = s.wait("after closing stdin")
                check(code == 0, f"exit code after stdin EOF: {code}\n{s.stderr()}")
                ended = "stdin closed → exit 0"
            deadline = time.monotonic() + 10
            while any(alive(p) for p in s.tree) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = [p for p in s.tree if alive(p)]
            check(not left, f"processes left running after the launcher exited: {left}")
            print(f"ok  {what}: {ended}; none of its {len(s.tree)} child processes left")
            passed += 1
        finally:
            s.cleanup()
    return passed


if __name__ == "__main__":
    try:
        n = main()
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
        print(f"FAIL {e}", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
    print(f"{n} passed, 0 failed")
