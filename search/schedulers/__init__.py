"""Schedulers: which running trials go on. ``OrderASHA`` (asha.py), ``ParetoASHA`` with several
objectives (pareto_asha.py), or Ray's FIFO (``type: none``). ``SchedulerState`` (state.py) carries
their rungs over an ``itt resume``; ``Peers`` (peers.py) is whom a reproducible search ranks a probe among."""

from __future__ import annotations

from search.schedulers.asha import OrderASHA, make_scheduler
from search.schedulers.pareto_asha import ParetoASHA

__all__ = ["OrderASHA", "ParetoASHA", "make_scheduler"]
