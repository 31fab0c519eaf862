"""The chaos soak (``python3 dev.py soak``): real parts, faults from a seed, an invariant checker.

``schedule`` draws what happens when from the seed (pure), ``proxy`` is the TCP proxy that stalls the
broker, ``stack`` starts and stops the real parts, ``run`` drives them, ``facts`` reads what happened
from the database and the simulator, and ``invariants`` checks it (pure).
"""
