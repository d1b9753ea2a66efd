"""Schedulers: which running trials go on. ``OrderASHA`` (asha.py) or Ray's FIFO (``type: none``)."""

from __future__ import annotations

from search.schedulers.asha import OrderASHA, make_scheduler

__all__ = ["OrderASHA", "make_scheduler"]
