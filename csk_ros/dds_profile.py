"""Alias of csk_ros.tools.dds_profile, so that `python -m csk_ros.dds_profile` and `from csk_ros.dds_profile
import ...` (docs/dds.md, users' launch files and scripts) keep working: the module itself, not a copy."""

import sys

from csk_ros.tools import dds_profile

if __name__ == "__main__":
    sys.exit(dds_profile.main())
sys.modules[__name__] = dds_profile
