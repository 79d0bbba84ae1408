"""The reactive layer: the change bus, the one subscriber queue, and the one public
subscription shape (:class:`Watch`: a reactivex Observable that is also an async iterator),
and the shapes live queries emit (:class:`ResultDiff`) and take (``Coalesce``).

Live queries (a later layer) are built on these pieces; the layers above import this facade.
"""

from .bus import Change, ChangeBus, ChangeSet, EventHub, Tap
from .diffs import ResultDiff
from .faces import Coalesce, Opener, Pullable, Watch
from .queue import DEFAULT_CAPACITY, EMPTY, Queue

__all__ = [
    "DEFAULT_CAPACITY",
    "EMPTY",
    "Change",
    "ChangeBus",
    "ChangeSet",
    "Coalesce",
    "EventHub",
    "Opener",
    "Pullable",
    "Queue",
    "ResultDiff",
    "Tap",
    "Watch",
]
