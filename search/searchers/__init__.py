"""Searchers: who proposes the next order (and its hyperparameters).

Every searcher is an Optuna sampler behind Ray Tune's ``OptunaSearch``, wrapped in ``OrderSearcher``
(``_base.py``: no configuration twice, stopped orders may continue, the recommendation), except
``exhaustive``, which is Ray's grid over every order (``exhaustive.py``). One module per searcher:

* ``order_bo`` (``order_bo.py``, the default; ``auto`` names it): a GP over order features that knows which
  tasks, where, and which precedes which; cost-aware (the stage cache), probes as low-fidelity evidence.
* ``tpe``, ``gp``: Optuna's own samplers over the Lehmer digits (``optuna_samplers.py``).
* ``random`` (``uniform_random.py``): a uniform random order without replacement (a length in proportion
  to its number of orders), hyperparameters as Optuna's RandomSampler draws them.
* ``exhaustive``: every order once, shuffled by the search seed.

``stopping.py``: when a search stops itself (``search.stop``: its model says a longer one would not pay).
"""

from __future__ import annotations

from search.searchers._base import CONTINUES, OrderSearcher
from search.searchers.exhaustive import exhaustive_param_space, exhaustive_search_alg
from search.searchers.optuna_samplers import make_searcher, study_copy_url
from search.searchers import stopping
from search.searchers.seed_points import seed_point_orders

SEARCHERS = ("order_bo", "tpe", "gp", "random", "exhaustive")  # "auto" = the default, order_bo

__all__ = ["CONTINUES", "OrderSearcher", "SEARCHERS", "exhaustive_param_space", "exhaustive_search_alg", "make_searcher",
           "study_copy_url", "seed_point_orders", "stopping"]
