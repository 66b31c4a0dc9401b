"""A call cancelled before its task first ran on the worker still gets its answer (else it stays in flight)."""

from __future__ import annotations

import asyncio

from vastnb.wire import Connection
from vastnb.wire import messages as m

from .conftest import worker_port


def test_call_and_its_cancel_in_one_read_are_answered_as_cancelled(make_app):
    app = make_app()
    app.configure_autoscaling(cold_workers=1, max_workers=1)

    @app.remote()
    async def slow():
        await asyncio.sleep(30)

    app.ensure_ready(progress=False)
    fn_hash = app.spec().functions["slow"].hash
    port = worker_port(app, "w1")
    secret = app._backend.secret  # a second runtime connection, as the notebook's own runtime holds one

    async def main() -> list[tuple[int, m.Message]]:
        conn = await Connection.connect("127.0.0.1", port, secret)
        answers = []
        try:
            for req_id in (101, 102, 103):  # the call and its cancel leave in the same write, arrive in one read
                conn.send_message(m.CallFunction(fn_hash), req_id)
                conn.send_message(m.Cancel(req_id), 0)
            for _ in range(3):
                answers.append(await asyncio.wait_for(conn.recv(), 30))
        finally:
            conn.close()
            await conn.writer.wait_closed()
        return answers

    answers = asyncio.run(main())
    assert sorted(req_id for req_id, _ in answers) == [101, 102, 103]
    assert all(msg == m.Result(ok=False, cancelled=True) for _, msg in answers)
