"""The reactive layer: the change bus and its two faces (async iterators, reactivex Observables).

Live queries (a later layer) are built on these pieces; the layers above import this facade.
"""

from .bus import DEFAULT_CAPACITY, Change, ChangeBus, ChangeSet, EventHub, Subscription
from .faces import Feed, Stream

__all__ = ["DEFAULT_CAPACITY", "Change", "ChangeBus", "ChangeSet", "EventHub", "Feed", "Stream", "Subscription"]
