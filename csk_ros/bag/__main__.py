"""python -m csk_ros.bag segment | from-images | to-images (see csk_ros/bag/__init__.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from csk_ros.backends import BACKENDS, load_configured
from csk_ros.bag.bagio import STORAGES, BagError, MessageFactory, find_topic, open_reader
from csk_ros.bag.images import from_images, to_images
from csk_ros.bag.params import offline_config
from csk_ros.bag.segment import OfflineSegmenter, print_summary, summary_json
from csk_ros.bag.stages import ReadAhead, WriteBehind
from csk_ros.bundle import BundleError
from csk_ros.logic.labels import class_list_json
from csk_ros.pipeline import SegmentationPipeline

NS = 1e-9
# What a damaged recording raises inside rosbags / its storage libraries while messages are read.
READ_ERRORS = (OSError, ValueError, KeyError, IndexError, EOFError, AssertionError, RuntimeError)


def _segment(args) -> int:
    overrides = {"model_dir": str(args.bundle), "backend": args.backend, "precision": args.precision}
    with open_reader(args.input) as reader:
        eo_topic, eo_kind = find_topic(reader, "eo", args.eo_topic)
        ir_topic, ir_kind = find_topic(reader, "ir", args.ir_topic)
        for stream, kind, asked in (("eo", eo_kind, args.eo_transport), ("ir", ir_kind, args.ir_transport)):
            if asked is not None and asked != kind:
                topic = eo_topic if stream == "eo" else ir_topic
                raise BagError(f"--{stream}-transport {asked}, but {topic} holds {kind} images")
        overrides.update({"eo_transport": eo_kind, "ir_transport": ir_kind})
        config = offline_config(args.params, overrides, args.node_name)
        segmenter = load_configured(config, log=lambda m: print(f"[bag] {m}", file=sys.stderr))
        connections = [c for c in reader.connections if c.topic in (eo_topic, ir_topic)]
        stream_of = {eo_topic: "eo", ir_topic: "ir"}
        total = sum(c.msgcount for c in connections)
        factory = MessageFactory()
        t_start = time.monotonic()
        try:
            topics = WriteBehind(args.output, args.storage, factory)
            try:
                pipeline = SegmentationPipeline(config, segmenter)
                offline = OfflineSegmenter(pipeline, topics, args.node_name, args.diagnostics_period)
                bundle = segmenter.bundle
                offline.start(reader.start_time * NS, class_list_json(
                    bundle.class_names, config.confidence_threshold, config.low_confidence_policy, bundle.palette))
                t_last = reader.start_time * NS
                bar = tqdm(total=total, unit="msg", desc="segment", disable=args.quiet, file=sys.stderr)
                ahead = ReadAhead(reader, reader.messages(connections=connections), stream_of, pipeline.decode,
                                  READ_ERRORS)
                try:
                    for stream, connection, t_ns, raw, msg, decoded in ahead:
                        t_last = max(t_last, t_ns * NS)
                        if msg is None:
                            offline.undecodable(stream, "deserialize")
                        else:
                            offline.on_message(stream, msg, t_ns * NS, decoded)
                            if args.copy_inputs:
                                topics.write_raw(connection.topic, connection, raw, t_ns)
                        bar.update()
                        bar.set_postfix(ir_fps=f"{offline.summary.masks / max(time.monotonic() - t_start, 1e-9):.1f}",
                                        refresh=False)
                finally:
                    ahead.close()
                if ahead.error is not None:  # a recording cut off mid-write: keep what was read, say so
                    offline.summary.bag_truncated = f"reading stopped after {bar.n} messages: {ahead.error}"
                bar.close()
                summary = offline.finish(t_last)
            except BaseException:
                topics.abort()  # a failed or interrupted run leaves no output
                raise
            topics.close()
        finally:
            segmenter.close()
    summary.wall_s = time.monotonic() - t_start
    summary.frames_per_s = summary.masks / summary.wall_s if summary.wall_s > 0 else 0.0
    print(f"segmented {args.input} -> {args.output} (EO {eo_topic} {eo_kind}, IR {ir_topic} {ir_kind}, "
          f"{segmenter.backend_name})")
    print_summary(summary)
    if summary.bag_truncated:
        print(f"[bag] WARNING: {summary.bag_truncated}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(summary_json(summary) + "\n")
    return 0


def _from_images(args) -> int:
    n = from_images(args.eo_dir, args.ir_dir, args.output, args.rate, args.compressed, args.storage, args.limit,
                    progress=lambda it: tqdm(it, unit="pair", desc="from-images", disable=args.quiet,
                                             file=sys.stderr))
    kind = "compressed" if args.compressed else "raw"
    print(f"wrote {n} EO/IR pairs at {args.rate:g} Hz ({kind}) to {args.output}")
    return 0


def _to_images(args) -> int:
    counts = to_images(args.input, args.out_dir, args.eo_topic, args.ir_topic, args.every, args.slop,
                       progress=lambda it: tqdm(it, unit="msg", desc="to-images", disable=args.quiet,
                                                file=sys.stderr))
    print(f"wrote {counts['written']} pairs to {args.out_dir}/vi and {args.out_dir}/ir "
          f"({counts['pairs']} paired, {counts['unpaired_ir']} IR frames without an EO partner, "
          f"{counts['undecodable']} undecodable messages)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csk_ros.bag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment every IR frame of a bag with the node's pipeline")
    seg.add_argument("input", type=Path, help="rosbag2 folder (sqlite3 or MCAP) or a .mcap / .db3 file")
    seg.add_argument("output", type=Path, help="new bag folder to write (never overwritten)")
    seg.add_argument("--bundle", type=Path, required=True, help="model bundle (python -m engines.export)")
    seg.add_argument("--eo-topic"), seg.add_argument("--ir-topic")
    seg.add_argument("--eo-transport", choices=("raw", "compressed"), help="check the EO topic's type (found "
                     "from the bag otherwise)")
    seg.add_argument("--ir-transport", choices=("raw", "compressed"))
    seg.add_argument("--precision", choices=("fp32", "int8"))
    seg.add_argument("--backend", choices=BACKENDS)
    seg.add_argument("--params", type=Path, help="the node's parameters file (as --params-file takes)")
    seg.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    seg.add_argument("--node-name", default="segment_node", help="outputs go to /<node-name>/... as the node's")
    seg.add_argument("--diagnostics-period", type=float, help="bag seconds between /diagnostics "
                     "(default: the diagnostics_period_s parameter)")
    seg.add_argument("--copy-inputs", action="store_true", help="copy the EO and IR topics into the output")
    seg.add_argument("--json", type=Path, help="write the summary as JSON")
    seg.add_argument("--quiet", action="store_true", help="no progress bar")
    seg.set_defaults(run=_segment)
    fro = sub.add_parser("from-images", help="EO/IR image folders (pairs by file name) -> a bag")
    fro.add_argument("eo_dir", type=Path), fro.add_argument("ir_dir", type=Path), fro.add_argument("output", type=Path)
    fro.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time")
    fro.add_argument("--compressed", action="store_true", help="EO as JPEG, IR as PNG (image_transport style)")
    fro.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    fro.add_argument("--limit", type=int, help="the first N pairs only")
    fro.add_argument("--quiet", action="store_true")
    fro.set_defaults(run=_from_images)
    to = sub.add_parser("to-images", help="a bag's EO/IR pairs by stamp -> OUT_DIR/vi and OUT_DIR/ir (MSRS layout)")
    to.add_argument("input", type=Path), to.add_argument("out_dir", type=Path)
    to.add_argument("--eo-topic"), to.add_argument("--ir-topic")
    to.add_argument("--every", type=int, default=1, help="keep every N-th pair")
    to.add_argument("--slop", type=float, default=0.05, help="max |EO stamp - IR stamp| of a pair (s)")
    to.add_argument("--quiet", action="store_true")
    to.set_defaults(run=_to_images)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (BagError, BundleError, ValueError) as exc:
        print(f"[bag] {args.command} failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"[bag] {args.command} interrupted: nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
