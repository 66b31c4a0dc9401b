"""The Vast backend: a deployment on Vast Serverless through the official ``vastai`` SDK (``Deployment(backend="vast")``).

:class:`VastBackend` implements :class:`vastnb.backends.Backend`. Inside:
``_backend`` (lifecycle, calls, cells, status, teardown), ``_calls`` (frames
through the SDK with deadlines), ``_status`` (Vast's worker list as
vastnb's state model), ``_sdk`` (the SDK's client and deploy steps) and
``_module`` (the deployment module and code snapshot the workers run).
"""

from __future__ import annotations

from ._backend import VastBackend
from ._sdk import OffersSummary, VastApiError, find_offers, offers_provider, search_offers

__all__ = ["OffersSummary", "VastApiError", "VastBackend", "find_offers", "offers_provider", "search_offers"]
