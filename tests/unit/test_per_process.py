"""The one fork-safe singleton: one object per process and key, built once, built again in a forked
child (the parent's left unclosed), replaced when its key changes or it is no longer usable."""

from __future__ import annotations

import os
import threading

from worker.per_process import PerProcess


class Thing:
    def __init__(self, key):
        self.key = key
        self.pid = os.getpid()
        self.closed = False
        self.forgotten = False


def _closed(thing: Thing) -> None:
    thing.closed = True


def _forgotten(thing: Thing) -> None:
    thing.forgotten = True


def test_one_object_per_key_built_once():
    built = []
    things = PerProcess(lambda key: built.append(key) or Thing(key), close=_closed)
    first = things.get("a")
    assert things.get("a") is first and built == ["a"]
    assert things.peek("a") is first and things.peek("b") is None


def test_a_new_key_replaces_the_old_one_and_closes_it():
    things = PerProcess(Thing, close=_closed, replaces=lambda old, new: old[0] != new[0])
    bounded, plain = things.get(("url1", True)), things.get(("url1", False))
    assert not bounded.closed and not plain.closed  # same URL: both stay
    things.get(("url2", True))
    assert bounded.closed and plain.closed


def test_an_unusable_object_is_closed_and_built_again():
    things = PerProcess(Thing, close=_closed, usable=lambda thing: not thing.closed)
    first = things.get()
    first.closed = True
    assert things.get() is not first


def test_reset_closes_this_process_objects():
    things = PerProcess(Thing, close=_closed)
    thing = things.get()
    things.reset()
    assert thing.closed and things.peek() is None


def test_threads_share_one_object():
    things = PerProcess(Thing)
    seen, start = [], threading.Barrier(8)

    def use():
        start.wait()
        seen.append(things.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(thing) for thing in seen}) == 1


def test_a_forked_child_builds_its_own_and_leaves_the_parents_open():
    things = PerProcess(Thing, close=_closed, forget_inherited=_forgotten)
    parent = things.get()
    things._lock.acquire()  # a thread of the parent holds the lock at fork time
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: exits with its verdict, never returns into pytest
            ok = False
            try:
                child = things.get()
                ok = (child is not parent and child.pid == os.getpid() and not parent.closed and parent.forgotten)
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
    finally:
        things._lock.release()
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert things.get() is parent and not parent.forgotten  # the parent's own is untouched
