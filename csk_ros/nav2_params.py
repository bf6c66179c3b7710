"""Alias of csk_ros.tools.nav2_params, so that `python -m csk_ros.nav2_params` and `from csk_ros.nav2_params
import ...` (docs/nav2.md, users' scripts) keep working: the module itself, not a copy."""

import sys

from csk_ros.tools import nav2_params

if __name__ == "__main__":
    sys.exit(nav2_params.main())
sys.modules[__name__] = nav2_params
