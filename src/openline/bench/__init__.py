"""``openline bench``: openline side by side with other Python WebSocket servers.

The runner (:mod:`.runner`) starts each server under test (:mod:`.servers`)
in a process pinned to one CPU and the load generator (:mod:`.loadgen`,
built on :mod:`.wire`) in a process pinned to another, then summarises the
runs (:mod:`.stats`) into JSON, Markdown and a PNG chart (:mod:`.report`,
:mod:`.chart`). ``openline bench --cluster`` (:mod:`.cluster`) runs the hub
instead: two nodes (:mod:`.hubnode`) on a private Redis (:mod:`.redis_server`)
against one node in memory, under the hub-protocol generator of
:mod:`.hubload`, reported by :mod:`.cluster_report`. ``bench/README.md`` in
the repository explains the method.

The peers come from the ``bench`` extra: ``pip install 'openline[bench]'``.
This package sits on top of the library, beside the CLI: nothing in openline
imports it.
"""

from __future__ import annotations

__all__: list[str] = []
