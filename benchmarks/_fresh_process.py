"""Run one measurement in a fresh spawned interpreter, so peak memory and caches are its own."""

from __future__ import annotations

import multiprocessing as mp


def run_in_fresh_process(target, *args):
    """Call ``target(*args, queue)`` in a spawned process and return what it put on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    res = q.get()
    p.join()
    return res
