"""Request ids: random version 4 UUIDs, drawn from the OS many at a time."""

from __future__ import annotations

import os
import uuid

from chatq.domain import new_request_id


def test_ids_are_version_4_uuids_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(2000)]  # several draws from the OS
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_a_forked_child_does_not_give_out_its_parents_next_ids() -> None:
    new_request_id()  # the parent now holds ids drawn but not given out
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's own exit ends it)
        os.write(write, " ".join(new_request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        in_child = set(pipe.read().split())
    in_parent = {new_request_id() for _ in range(10)}
    assert len(in_child) == 10
    assert not in_child & in_parent
