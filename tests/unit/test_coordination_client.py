"""Redis errors are translated where the library is used: the coordination client maps each redis-py
error to the most specific of ``reconciler.core.errors``, chained ``from`` it, for single commands,
pipelines and scripts alike. The connection failures are real sockets on loopback (a closed port, a
server that accepts and never answers); the refused commands are a throw-away Valkey's replies."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from redis import exceptions as redis_errors

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.breaker import RedisBreaker
from reconciler.adapters.coordination.client import CoordinationClient, CoordinationPipeline, no_retry, translate
from reconciler.adapters.coordination.workqueue import WorkQueue
from reconciler.core.errors import CoordinationError, CoordinationTimeout, CoordinationUnavailable


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _client(port: int) -> CoordinationClient:
    return CoordinationClient(host="127.0.0.1", port=port, socket_timeout=0.2, socket_connect_timeout=0.2,
                              retry=no_retry())


def test_a_refused_connection_is_unavailable_and_chained(closed_port):
    with pytest.raises(CoordinationUnavailable) as raised:
        _client(closed_port).get("x")
    assert type(raised.value) is CoordinationUnavailable
    assert isinstance(raised.value.__cause__, redis_errors.ConnectionError)


def test_a_silent_server_is_a_timeout_for_commands_pipelines_and_scripts(silent_port):
    client = _client(silent_port)
    with pytest.raises(CoordinationTimeout) as raised:
        client.ping()
    assert isinstance(raised.value.__cause__, redis_errors.TimeoutError)
    pipe = client.pipeline(transaction=False)
    assert isinstance(pipe, CoordinationPipeline)
    pipe.get("a")
    with pytest.raises(CoordinationTimeout):
        pipe.execute()
    with pytest.raises(CoordinationTimeout):
        client.register_script("return 1")(keys=[], args=[])
    # A timeout is a kind of unavailability: what retries on the one retries on the other.
    assert issubclass(CoordinationTimeout, CoordinationUnavailable)


def test_the_adapters_raise_ours_without_catching_redis_errors(closed_port):
    client = _client(closed_port)
    breaker = RedisBreaker(client, key_fingerprint="abc", base_seconds=60, cap_seconds=3600)
    with pytest.raises(CoordinationUnavailable):
        breaker.states()
    with pytest.raises(CoordinationUnavailable):
        WorkQueue(client).add(7)


def test_a_refused_command_is_a_coordination_error_not_unavailable(redis_url):
    client = CoordinationClient.from_url(redis_url)
    client.set(keys.dirty(7), "x")
    with pytest.raises(CoordinationError) as raised:
        client.hget(keys.dirty(7), "field")
    assert not isinstance(raised.value, CoordinationUnavailable)
    assert isinstance(raised.value.__cause__, redis_errors.ResponseError)
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.dirty(7), "field")
    with pytest.raises(CoordinationError):
        pipe.execute()


def test_a_forgotten_script_is_loaded_again_not_translated(redis_url):
    client = CoordinationClient.from_url(redis_url)
    script = client.register_script("return 41 + 1")
    assert script(keys=[], args=[]) == 42
    client.script_flush()
    assert script(keys=[], args=[]) == 42  # redis-py's Script met NoScriptError and loaded it again


@pytest.mark.parametrize(("theirs", "ours"), [
    (redis_errors.TimeoutError("read"), CoordinationTimeout),
    (redis_errors.ConnectionError("reset"), CoordinationUnavailable),
    (redis_errors.BusyLoadingError("loading"), CoordinationUnavailable),
    (redis_errors.AuthenticationError("wrong"), CoordinationUnavailable),
    (redis_errors.ReadOnlyError("You can't write against a read only replica."), CoordinationUnavailable),
    (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), CoordinationUnavailable),
    (redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), CoordinationUnavailable),
    (redis_errors.ResponseError("BUSY Redis is busy running a script"), CoordinationUnavailable),
    (redis_errors.ResponseError("BUSYKEY Target key name already exists."), CoordinationError),
    (redis_errors.ResponseError("Error running script"), CoordinationError),
    (redis_errors.DataError("Invalid input of type: 'dict'"), CoordinationError),
    (redis_errors.InvalidResponse("Protocol Error"), CoordinationError),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__)
def test_the_map_picks_the_most_specific_error(theirs, ours):
    assert type(translate(theirs)) is ours
