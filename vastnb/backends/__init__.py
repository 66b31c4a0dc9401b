"""Where workers come from: ``local`` (processes on this machine) and ``vast`` (Vast Serverless via the official SDK).

Both publish the same events (:mod:`vastnb.events`), so every view works with either.
"""

from __future__ import annotations
