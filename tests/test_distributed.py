"""Multi-process training over `jax.distributed`: two local CPU processes (gloo
collectives, two devices each) against one process, through the `holoode`
command as a user would start it on several machines."""

import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest


# The console script installed next to this interpreter (or else on the PATH).
BIN = os.path.dirname(sys.executable)
HOLOODE = shutil.which("holoode", path=BIN) or shutil.which("holoode")
# A few steps of a tiny network on the embedded digits: 3 steps per epoch of a
# global batch of 16, evaluation over all 360 test examples.
ARGS = ["train", "--rule", "bp", "--hidden", "8", "--no-progress",
        "--set", "batch_size=16", "--set", "steps_per_epoch=3",
        "--set", "eval_every=1", "--set", "eval_batch_size=64"]  # fmt: skip
TEST_EXAMPLES = 360
TIMEOUT = 420  # seconds for one round of processes: generous, for loaded machines

pytestmark = pytest.mark.skipif(HOLOODE is None, reason="`holoode` not installed")


_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
    # Later processes reuse what earlier ones compiled (the same programs for
    # the same process and device counts): the test spends its time on what it
    # checks, not on compiling.
    _CACHE["dir"] = str(tmp_path_factory.mktemp("jax-cache"))


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    )
    env["JAX_COMPILATION_CACHE_DIR"] = _CACHE["dir"]
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(run_dir, epochs, processes, *extra):
    """The commands of one run: `processes` of them, or one without
    `--distributed`."""
    base = [HOLOODE, *ARGS, "--epochs", str(epochs), "--run-dir", str(run_dir), *extra]
    if processes == 1:
        commands = [base]
    else:
        address = f"127.0.0.1:{_free_port()}"
        commands = [
            [*base, "--distributed", "--coordinator", address,
             "--num-processes", str(processes), "--process-id", str(i)]
            for i in range(processes)
        ]  # fmt: skip
    return [
        subprocess.Popen(c, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for c in commands
    ]  # fmt: skip


def _finish(procs, deadline):
    """Wait for every process; returns `[(returncode, stdout, stderr)]`."""
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
        out.append((p.returncode, stdout, stderr))
    return out


def _run_all(*runs):
    """Start several runs at once, wait for all of them (killing every process
    if one does not end in time) and check that each process succeeded."""
    procs = []
    try:
        started = [_start(*run) for run in runs]
        procs = [p for group in started for p in group]
        results = _finish(procs, time.monotonic() + TIMEOUT)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGKILL: jax.distributed intercepts SIGTERM
                p.wait()
    for code, stdout, stderr in results:
        assert code == 0, f"{stdout[-2000:]}\n{stderr[-4000:]}"


def _checkpoint(run_dir):
    """The header and the arrays of a run's checkpoint (parameters, optimiser
    state, PRNG key data, in order), read without holoode."""
    raw = (pathlib.Path(run_dir) / "checkpoint.eqx").read_bytes()
    newline = raw.index(b"\n")
    header = json.loads(raw[:newline])
    payload = io.BytesIO(raw[newline + 1 :])
    arrays = []
    while payload.tell() < len(raw) - newline - 1:
        arrays.append(np.load(payload))
    return header, arrays


def _compare(a_dir, b_dir, start=None):
    """The largest difference between the checkpointed arrays of two runs,
    relative to how far the parameters moved from `start`."""
    (ha, a), (hb, b) = _checkpoint(a_dir), _checkpoint(b_dir)
    assert ha["position"]["step"] == hb["position"]["step"]
    assert [x.shape for x in a] == [x.shape for x in b] and len(a) > 2
    floats = [(x, y) for x, y in zip(a, b) if np.issubdtype(x.dtype, np.floating)]
    diff = max(float(np.max(np.abs(x - y))) for x, y in floats)
    scale = max(float(np.max(np.abs(x))) for x, _ in floats)
    # Integer leaves (step counts, PRNG key data) must agree exactly.
    for x, y in zip(a, b):
        if not np.issubdtype(x.dtype, np.floating):
            np.testing.assert_array_equal(x, y)
    return diff, scale


def _records(run_dir):
    lines = (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("augment", [False, True])
def test_loader_shards_make_up_the_batch(augment):
    import holoode.data as hd

    train, test = hd.load("digits", "train"), hd.load("digits", "test")
    full = hd.Loader(train, 32, seed=3, augment=augment)
    for n in (2, 4):
        shards = [
            hd.Loader(train, 32, seed=3, augment=augment, shard=(i, n))
            for i in range(n)
        ]
        for k in (0, 7):
            parts = [s.batch(2, k) for s in shards]
            assert all(len(p.y) == 32 // n for p in parts)
            whole = full.batch(2, k)
            for field in ("x", "y", "mask"):
                joined = np.concatenate([getattr(p, field) for p in parts])
                np.testing.assert_array_equal(joined, getattr(whole, field))
    # Evaluation: 360 examples in padded batches of 64; 4 shards see every
    # example exactly once (one shard of the last batch is only padding).
    seen = []
    for i in range(4):
        loader = hd.Loader(test, 64, shuffle=False, drop_remainder=False, shard=(i, 4))
        for k in range(len(loader)):
            b = loader.batch(0, k)
            index = k * 64 + i * 16 + np.flatnonzero(b.mask)
            np.testing.assert_array_equal(b.x[b.mask], test.get(index)[0])
            seen += list(index)
    assert sorted(seen) == list(range(TEST_EXAMPLES)) and len(test) == TEST_EXAMPLES
    with pytest.raises(ValueError, match="shard"):
        hd.Loader(train, 30, shard=(0, 4))


@pytest.mark.slow
def test_two_processes_match_one_and_resume_across(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # Epoch 1: one process (two devices) and two processes (two devices each).
    _run_all((one, 1, 1), (two, 1, 2))
    diff, scale = _compare(one, two)
    print(f"epoch 1, 1 vs 2 processes: largest difference {diff:.3g} (of {scale:.3g})")
    assert diff <= 1e-5 * scale
    # Only process 0 wrote; both evaluated every test example exactly once.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    for run in (one, two):
        (record,) = _records(run)
        assert record["test_examples"] == TEST_EXAMPLES and record["step"] == 3
    ra, rb = _records(one)[0], _records(two)[0]
    assert abs(ra["test_loss"] - rb["test_loss"]) <= 1e-5
    assert abs(ra["train_loss"] - rb["train_loss"]) <= 1e-5
    # Epoch 2: each run resumed with the other process count.
    _run_all((one, 2, 2, "--resume"), (two, 2, 1, "--resume"))
    diff, scale = _compare(one, two)
    print(
        f"epoch 2, resumed 1→2 vs 2→1: largest difference {diff:.3g} (of {scale:.3g})"
    )
    assert diff <= 1e-5 * scale
    for run in (one, two):
        records = _records(run)
        assert [r["step"] for r in records] == [3, 6]
        assert records[1]["test_examples"] == TEST_EXAMPLES
        # Wall time continues across the resumption.
        assert records[1]["seconds"] > records[0]["seconds"]


@pytest.mark.slow  # two more process launches
def test_a_dead_process_stops_the_other(tmp_path):
    run = tmp_path / "run"
    procs = []
    try:
        procs = _start(run, 50, 2, "--set", "checkpoint_every=2")
        ckpt = run / "checkpoint.eqx"
        deadline = time.monotonic() + TIMEOUT
        while not ckpt.exists():
            assert time.monotonic() < deadline, "no checkpoint in time"
            assert procs[0].poll() is None and procs[1].poll() is None
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
        # Process 0 stops on its own, with a message naming process 1, instead of
        # waiting for it: at once, or when process 1's heartbeat is overdue.
        code, _, stderr = _finish(procs[:1], time.monotonic() + 120)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert code != 0
    # Either holoode's own message or jax.distributed's (whichever notices first).
    named = "because process(es) 1 stopped" in stderr or (
        "unhealthy" in stderr and "\n1\n" in stderr
    )
    assert named, stderr[-3000:]
    # The last complete checkpoint is intact (its data match the checksum in its
    # header), at a step where one was due; resuming a checkpoint with another
    # process count is the test above.
    raw = (run / "checkpoint.eqx").read_bytes()
    header = json.loads(raw[: raw.index(b"\n")])
    payload = raw[raw.index(b"\n") + 1 :]
    assert hashlib.sha256(payload).hexdigest() == header["payload_sha256"]
    step = header["position"]["step"]
    assert step >= 2 and step % 2 == 0


class _FakeCoordinationClient:
    """Answers `get_live_nodes` from a script: a process killed a moment ago still
    counts as live for the first answers, as it does until the coordination
    service notices the closed connection or the missed heartbeats."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = 0

    def get_live_nodes(self, nodes):
        self.asked += 1
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize(
    "answers, me, wait, lost, asks",
    [
        ([[0, 1], [0, 1], [0]], 0, 30.0, [1], 3),  # noticed late: asks again
        ([[0, 1]], 0, 0.3, [], 2),  # never noticed: gives up after `wait`
        ([RuntimeError("gone")], 1, 30.0, [0], 1),  # the service in process 0 is gone
        ([RuntimeError("gone")], 0, 30.0, [], 1),  # ... and this is process 0
    ],
)
def test_a_process_noticed_late_is_still_named(answers, me, wait, lost, asks):
    from holoode._training._sharding import _ask_for_lost

    client = _FakeCoordinationClient(answers)
    assert _ask_for_lost(client, 2, me, wait=wait) == lost
    assert client.asked >= asks
