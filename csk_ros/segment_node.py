"""Alias of csk_ros.node.segment_node, so that `python -m csk_ros.segment_node` (the harness, benchmarks, docs)
and `from csk_ros.segment_node import SegmentNode, main` keep working: the module itself, not a copy."""

import sys

from csk_ros.node import segment_node

if __name__ == "__main__":
    sys.exit(segment_node.main())
sys.modules[__name__] = segment_node
