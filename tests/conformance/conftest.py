"""Fixtures of the SDK conformance suite: a real `dashclaw serve` on a fresh database of the
throwaway PostgreSQL that tests/run started, keys minted with `dashclaw keys create`, and a
`dashclaw verify` of the whole ledger after the suite (every step must be in the chain) and a
`dashclaw replay-decision` of every decision it recorded (each must replay identically)."""

import contextlib
import json
import threading
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import pytest
from dashclaw import DashClaw

BOOTSTRAP_KEY = "oc_test_bootstrap_" + uuid.uuid4().hex


@dataclass
class Server:
    base_url: str
    agent_key: str
    admin_key: str
    env: dict

    def client(self, agent_id, key=None, **kwargs):
        return DashClaw(self.base_url, key or self.agent_key, agent_id, **kwargs)

    def admin(self, agent_id="operator-console"):
        return DashClaw(self.base_url, self.admin_key, agent_id)

    def call(self, method, path, body=None, key=None):
        """Plain HTTP: (status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json", "x-api-key": key or self.admin_key},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def subscribers(self):
        return self.call("GET", "/api/stream/status")[1]["subscribers"]

    def wait_for_subscribers(self, more_than, timeout=10.0):
        """Blocks until the server has more than `more_than` SSE subscribers (a waiting SDK is
        connected); fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.subscribers() <= more_than:
            assert time.monotonic() < deadline, "the SDK never connected to /api/stream"
            time.sleep(0.01)


def later(fn):
    """Runs `fn` on another thread; `.join()` returns its result or raises its error."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in join
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    class Handle:
        def join(self):
            thread.join(60)
            assert not thread.is_alive(), "background step did not finish"
            if "error" in box:
                raise box["error"]
            return box.get("value")

    return Handle()


def _run(args, env):
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def server():
    binary = os.environ["DASHCLAW_BIN"]
    base = os.environ["DATABASE_URL"]
    database = f"conformance_{os.getpid()}"
    psql = os.path.join(os.environ["PG_BINDIR"], "psql")
    _run([psql, base, "-qc", f"CREATE DATABASE {database}"], dict(os.environ))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=base.rsplit("/", 1)[0] + "/" + database,
        DASHCLAW_API_KEY=BOOTSTRAP_KEY,
        DASHCLAW_RATE_LIMIT_MAX="1000000",
        DASHCLAW_ORG_RATE_LIMIT_MAX="1000000",
        RUST_LOG="warn",
    )
    _run([binary, "migrate"], env)
    agent_key = _run([binary, "keys", "create", "--role", "member", "--name", "agent"], env).strip()
    admin_key = _run([binary, "keys", "create", "--role", "admin", "--name", "approver"], env).strip()
    process = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, text=True
    )
    line = process.stdout.readline()
    assert "listening on http://" in line, line
    address = line.split("http://", 1)[1].split()[0]
    try:
        yield Server(f"http://{address}", agent_key, admin_key, env)
    finally:
        process.terminate()
        process.wait(timeout=30)
    verified = subprocess.run([binary, "verify"], env=env, capture_output=True, text=True)
    assert verified.returncode == 0, f"dashclaw verify failed:\n{verified.stdout}{verified.stderr}"
    assert "intact:" in verified.stdout, verified.stdout
    # Every decision the suite recorded replays identically under the policies of its time.
    replayed = subprocess.run(
        [binary, "replay-decision", "--org", "org_default"], env=env, capture_output=True, text=True
    )
    assert replayed.returncode == 0, f"replay-decision:\n{replayed.stdout}{replayed.stderr}"
    assert "identical:" in replayed.stdout, replayed.stdout
    print(replayed.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def another_node(server, env):
    """Another `dashclaw serve` on the same database (another node of the same deployment),
    started with `env`."""
    process = subprocess.Popen(
        [os.environ["DASHCLAW_BIN"], "serve", "--bind", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    assert "listening on http://" in line, line
    address = line.split("http://", 1)[1].split()[0]
    try:
        yield Server(f"http://{address}", server.agent_key, server.admin_key, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def second_node(server):
    """A second `dashclaw serve` on the same database."""
    with another_node(server, server.env) as node:
        yield node


@pytest.fixture
def agent_id():
    """A fresh agent id per test: policies are scoped to it, so tests never see each other."""
    return "agent-" + uuid.uuid4().hex[:12]


@pytest.fixture
def policy(server, agent_id):
    """Creates a policy scoped to this test's agent (admin REST, as an operator would)."""

    def create(policy_type, rules, name=None):
        status, body = server.call(
            "POST",
            "/api/policies",
            {
                "name": name or f"{policy_type} for {agent_id} {uuid.uuid4().hex[:6]}",
                "policy_type": policy_type,
                "rules": rules,
                "agent_ids": [agent_id],
            },
        )
        assert status == 201, body
        return body["policy_id"]

    return create
