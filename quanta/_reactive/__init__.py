"""The reactive layer: the change bus, the one subscriber queue, and the one public
subscription shape (:class:`Watch`: a reactivex Observable that is also an async iterator).

Live queries (a later layer) are built on these pieces; the layers above import this facade.
"""

from .bus import Change, ChangeBus, ChangeSet, EventHub, Tap
from .faces import Opener, Pullable, Watch
from .queue import DEFAULT_CAPACITY, EMPTY, Queue

__all__ = [
    "DEFAULT_CAPACITY",
    "EMPTY",
    "Change",
    "ChangeBus",
    "ChangeSet",
    "EventHub",
    "Opener",
    "Pullable",
    "Queue",
    "Tap",
    "Watch",
]
