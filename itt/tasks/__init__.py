"""Task registry: built-in tasks by name, plus tasks defined (or re-pointed) in a config.

>>> from itt.tasks import resolve_task
>>> resolve_task("xnli").languages[:3]
('en', 'ar', 'bg')
"""

from __future__ import annotations

import dataclasses

from itt.errors import ConfigError
from itt.tasks._base import SPLITS, Kind, Task

_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    problems = task.problems()
    if problems:
        raise ValueError(f"task '{task.name}': {problems[0]}")
    _REGISTRY[task.name] = task
    return task


def registered() -> dict[str, Task]:
    return dict(_REGISTRY)


def resolve_task(name: str, specs: dict | None = None, where: str = "config") -> Task:
    """A task by name: a built-in one, updated by any ``tasks.<name>`` block of the config."""
    spec = (specs or {}).get(name)
    base = _REGISTRY.get(name)
    if base is None and spec is None:
        raise ConfigError(f"{where}: unknown task '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    if spec is None:
        return base
    given = {k: v for k, v in spec.model_dump(exclude_unset=True).items()}
    # keep DataSpec objects (model_dump turned them into dicts)
    for s in SPLITS:
        if s in given:
            given[s] = getattr(spec, s)
    for k in ("fields", "labels", "languages"):
        if given.get(k) is not None:
            given[k] = tuple(given[k])
    options = given.pop("options", None) or {}
    if options:
        given["metadata"] = {**(base.metadata if base is not None else {}), **options}
    if base is None:
        missing = [k for k in ("kind", "fields", "train") if given.get(k) is None
                   and not (k == "fields" and given.get("kind") in Kind.DEFAULT_FIELDS)
                   and not (k == "train" and given.get("kind") == Kind.RETRIEVAL)]
        if missing:
            raise ConfigError(f"{where}: new task '{name}' needs {', '.join(repr(m) for m in missing)}")
        kind = given["kind"]
        given.setdefault("metric", Kind.METRICS.get(kind, ("accuracy",))[0])
        given.setdefault("fields", Kind.DEFAULT_FIELDS.get(kind))
        given.setdefault("languages", ("en",))
        given.setdefault("labels", None)
        task = Task(name=name, **given)
    else:
        task = dataclasses.replace(base, **given)
    problems = task.problems()
    if problems:
        raise ConfigError(f"{where}: tasks.{name}: {problems[0]}")
    return task


def intermediate_problem(t: Task, target: str) -> str | None:
    """Why task ``t`` cannot be an intermediate stage of a chain whose target is ``target``, or None."""
    if t.name == target:
        return f"'{t.name}' is the target task (every chain fine-tunes on it after its intermediate stages)"
    if not t.trains:
        return f"'{t.name}' is a {t.kind} task (evaluated without training); it can be a target, not an intermediate task"
    if t.train is None:
        return f"task '{t.name}' has no 'train' data source"
    return None


def normalization_problem(t: Task, languages) -> str | None:
    """Why ``t``'s QA scoring cannot score one of ``languages``, or None: MLQA's normalisation knows the
    articles and segmentation of its own seven languages only (a chain found out after its training)."""
    if t.kind != Kind.QA or t.metadata.get("qa_normalization") != "mlqa":
        return None
    from itt.metrics import MLQA_LANGS

    bad = [lang for lang in languages if lang not in MLQA_LANGS]
    if not bad:
        return None
    return (f"task '{t.name}': MLQA normalisation (qa_normalization: mlqa) knows no language '{bad[0]}' "
            f"(known: {', '.join(MLQA_LANGS)}); leave it out, or score the task with qa_normalization: squad")


def check_config_tasks(cfg, where: str) -> None:
    """Every task the config names exists and fits its role; raises ConfigError naming the key."""
    tgt = resolve_task(cfg.target.task, cfg.tasks, f"{where}: target.task")
    for name in cfg.order:
        problem = intermediate_problem(resolve_task(name, cfg.tasks, f"{where}: order"), tgt.name)
        if problem:
            raise ConfigError(f"{where}: order: {problem}")
    if tgt.train is None and tgt.trains:
        raise ConfigError(f"{where}: target.task '{tgt.name}' has no 'train' data source")
    for lang in cfg.target.languages or ():
        if lang not in tgt.languages:
            raise ConfigError(
                f"{where}: target.languages: unknown language '{lang}' for task '{tgt.name}' "
                f"(known: {', '.join(tgt.languages)})"
            )
    problem = normalization_problem(tgt, cfg.target.languages or tgt.languages)
    if problem:
        raise ConfigError(f"{where}: target.languages: {problem}")
    for split in cfg.eval.splits:
        for lang in cfg.target.languages or tgt.languages:
            if tgt.source(split, lang) is None:
                have = [x for x in tgt.languages if tgt.source(split, x) is not None]
                raise ConfigError(f"{where}: target task '{tgt.name}' has no '{split}' data for language '{lang}' (it "
                                  f"has in {len(have)} of its {len(tgt.languages)} languages; choose them in "
                                  f"target.languages, or leave '{split}' out of eval.splits)")
    for name in cfg.stages:  # may name tasks outside this order: a search shares one config
        resolve_task(name, cfg.tasks, f"{where}: stages")
    for name in cfg.tasks:
        resolve_task(name, cfg.tasks, where)


# Built-in tasks register on import.
from itt.tasks import builtin as _builtin  # noqa: E402,F401
from itt.tasks import toy as _toy  # noqa: E402,F401
from itt.tasks import xtreme as _xtreme  # noqa: E402,F401

__all__ = ["Kind", "Task", "SPLITS", "register", "registered", "resolve_task", "check_config_tasks",
           "normalization_problem"]
