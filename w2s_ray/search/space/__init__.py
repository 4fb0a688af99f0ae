"""Search spaces: YAML files in ``search_spaces/`` turned into Optuna define-by-run spaces.

A space file names the weak/strong pair and the bootstrap ladder, the student knobs to
search (with conditions such as "``aux_coef`` only when ``loss`` is ``logconf``") and the
baseline points that are always measured first; it may build on a base file with
``include:``. The format is documented in ``search_spaces/README.md``. Every file is validated
completely at load time; any fault becomes one ``UserError`` line ``<file>:<line>: <key>: <problem>``.

Modules, one job each (YAML with file:line locations comes from ``w2s_ray.yaml_lines``):
``files`` (where spaces live), ``include`` (``include:`` resolution and merging), ``knobs``
(the table of what may be searched), ``domain`` (a parameter's values, via ``optuna.distributions``),
``validate`` (document -> ``SearchSpace``), ``model`` (the data model), ``optuna_adapter``
(define-by-run and baseline points), ``loader`` (``load_space``).
"""

from w2s_ray.search.space.files import default_space_path, spaces_dir
from w2s_ray.search.space.loader import load_space
from w2s_ray.search.space.model import ParamSpec, SearchSpace, split_config

__all__ = [
    "ParamSpec",
    "SearchSpace",
    "default_space_path",
    "load_space",
    "spaces_dir",
    "split_config",
]
