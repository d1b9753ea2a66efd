"""Task kinds: one handler per kind (classification, tagging, extractive QA, multiple choice, retrieval).

>>> from itt.kinds import handler
>>> handler("extractive_qa").trains, handler("retrieval").trains
(True, False)
"""

from __future__ import annotations

from itt.kinds._base import EvalContext, EvalFeatures, KindHandler


def handler(kind: str) -> KindHandler:
    from itt.kinds.choice import ChoiceHandler
    from itt.kinds.classification import ClassificationHandler
    from itt.kinds.qa import QAHandler
    from itt.kinds.retrieval import RetrievalHandler
    from itt.kinds.tagging import TaggingHandler
    from itt.tasks import Kind

    table = {Kind.SINGLE: ClassificationHandler, Kind.PAIR: ClassificationHandler, Kind.REGRESSION: ClassificationHandler,
             Kind.TOKEN: TaggingHandler, Kind.QA: QAHandler, Kind.CHOICE: ChoiceHandler, Kind.RETRIEVAL: RetrievalHandler}
    return table[kind]()


__all__ = ["EvalContext", "EvalFeatures", "KindHandler", "handler"]
