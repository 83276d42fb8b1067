"""The asyncio facade: the same names as ``kvclient``, asyncio flavoured.

>>> from kvclient.aio import Client
>>> async def main() -> None:  # doctest: +SKIP
...     async with Client(["127.0.0.1:2379"]) as c:
...         await c.put("k", "v")
...         watch = await c.watch_prefix("k")
...         async for event in watch:
...             print(event.key, event.value)
"""

from kvclient._native import AsyncClient as Client
from kvclient._native import AsyncElection as Election
from kvclient._native import AsyncLease as Lease
from kvclient._native import AsyncLeaseKeeper as LeaseKeeper
from kvclient._native import AsyncLeadership as Leadership
from kvclient._native import AsyncLock as Lock
from kvclient._native import AsyncObserver as Observer
from kvclient._native import AsyncRegistration as Registration
from kvclient._native import AsyncSubscription as Subscription
from kvclient._native import AsyncWatch as Watch

__all__ = [
    "Client",
    "Election",
    "Lease",
    "LeaseKeeper",
    "Leadership",
    "Lock",
    "Observer",
    "Registration",
    "Subscription",
    "Watch",
]
