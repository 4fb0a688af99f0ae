"""Entry point: ``python -m w2s_ray.search --task rm``."""

from __future__ import annotations

import sys

from w2s_ray.errors import cli_entry


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from w2s_ray.search.cli import parse_settings
    from w2s_ray.search.driver import plan_search, run_search

    plan = plan_search(parse_settings(argv))
    run_search(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
