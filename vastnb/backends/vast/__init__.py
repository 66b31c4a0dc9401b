"""The Vast backend: a deployment on Vast Serverless through the official ``vastai`` SDK (``Deployment(backend="vast")``).

:class:`VastBackend` implements :class:`vastnb.backends.Backend`. Inside:
``_backend`` (lifecycle, calls, cells), ``_ready`` (what ready means and the
wait for it), ``_teardown`` (deleting what was deployed), ``_monitor`` (status
polls, heartbeats, logs), ``_calls`` (frames through the SDK with deadlines),
``_route`` (``/route/``'s transient failures and status text), ``_status``
(Vast's worker list as vastnb's state model), ``_sdk`` (the SDK's client and
deploy steps), ``_offers`` (the marketplace search) and ``_module`` (the
deployment module and code snapshot the workers run).
"""

from __future__ import annotations

from ._backend import DEFAULT_SESSION_TTL, VastBackend
from ._offers import OffersSummary, find_offers, offers_provider, search_offers
from ._sdk import VastApiError

__all__ = ["DEFAULT_SESSION_TTL", "OffersSummary", "VastApiError", "VastBackend", "find_offers", "offers_provider",
           "search_offers"]
