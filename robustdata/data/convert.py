"""Converts image datasets to sharded ArrayRecord that robustdata reads by row, never whole.

  python -m robustdata.data.convert --kind image_folder --input DIR --output OUT \
      [--image_size 64] [--splits train,val,test] [--shard_size 2048] [--workers 4]
  python -m robustdata.data.convert --kind caption_table --input train.csv --split train \
      --output OUT [--encoding jpeg --jpeg_quality 95] [--on_bad_image skip]
  python -m robustdata.data.convert --verify OUT

`image_folder`: a group-labelled folder in the layout `waterbirds_folder` reads
(robustdata/data/group_folders.py), read back by the `image_folder_records` source.
`caption_table`: a CC3M-style CSV/TSV of (image path, caption) as `caption_csv` reads it, one
split per call (several calls fill one OUT), read back by `caption_records`. Images are resized
as the in-memory sources resize them and stored as PNG (lossless: the same pixels as the
in-memory source) or JPEG, one record per example (robustdata/data/records.py's format: a JSON
header with id, label, group, caption, then the image bytes); each shard has a JSON sidecar
with its examples' metadata, sha256 and size. `manifest.json` lists per split the shards, the
counts, the skipped rows and a fingerprint of the shards' contents.

Resumable: a shard whose sidecar matches its planned rows and whose file has the recorded sha256
is kept; anything else (missing, truncated, corrupt, another plan) is rewritten, so a killed
conversion reruns with the same command. Shards are written in parallel by `--workers`
processes; the output does not depend on the number of workers. A missing or unreadable image
stops the conversion (`--on_bad_image stop`, a ConfigError naming the row), or is skipped,
printed and counted in the manifest (`skip`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

from robustdata.data import caption_csv, group_folders, records
from robustdata.registry import ConfigError

KINDS = ("image_folder", "caption_table")
ENCODINGS = ("png", "jpeg")
ON_BAD_IMAGE = ("stop", "skip")
SPLITS = ("train", "val", "test")
CAPTION_ID_OFFSET = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}  # as caption_csv


def plan_image_folder(root: str, *, metadata: str = "metadata.csv",
                      splits: Sequence[str] = SPLITS) -> dict[str, list[dict[str, Any]]]:
  """The examples of each requested split of a Waterbirds-style folder, in the order
  `waterbirds_folder` gives them; a requested split without rows is a ConfigError."""
  y, place, split, ids, rows = group_folders.read_waterbirds_metadata(root, metadata)
  out = {}
  for name in splits:
    code = group_folders.WATERBIRDS_SPLITS[name]
    idx = np.flatnonzero(split == code)
    if not len(idx):
      raise ConfigError(f"--input={root!r}: {metadata} has no rows of the requested split "
                        f"{name!r} (split={code}); request only the splits it has (--splits)")
    out[name] = [{"row": int(i) + 2, "path": os.path.join(root, rows[i]["img_filename"]),
                  "id": int(ids[i]), "label": int(y[i]), "spurious": int(place[i]),
                  "group": int(y[i] * 2 + place[i])} for i in idx]
  return out


def plan_caption_table(path: str, *, split: str, image_key: str = "image",
                       caption_key: str = "caption", delimiter: Optional[str] = None
                       ) -> dict[str, list[dict[str, Any]]]:
  """The rows of a CSV/TSV of (image path, caption) as one split (ids as `caption_csv`)."""
  paths, captions = caption_csv.read_caption_table(
      path, image_key=image_key, caption_key=caption_key, delimiter=delimiter,
      check_images=False)
  if not paths:
    raise ConfigError(f"--input={path!r} holds no rows")
  off = CAPTION_ID_OFFSET[split]
  return {split: [{"row": i + 2, "path": p, "id": off + i, "caption": c}
                  for i, (p, c) in enumerate(zip(paths, captions))]}


def _encode(image: np.ndarray, encoding: str, quality: int) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  if encoding == "png":
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
  else:
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
  return buf.getvalue()


def _shard_plan_hash(task: dict[str, Any]) -> str:
  keys = ("kind", "image_size", "encoding", "jpeg_quality", "on_bad_image", "rows")
  text = json.dumps([records.FORMAT] + [task[k] for k in keys], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _done(task: dict[str, Any]) -> Optional[dict[str, Any]]:
  """The sidecar of a shard already written for exactly this plan, with intact content."""
  out = task["output"]
  path, meta = os.path.join(out, task["file"]), os.path.join(out, task["meta"])
  try:
    with open(meta, encoding="utf-8") as f:
      side = json.load(f)
  except (OSError, ValueError):
    return None
  if (side.get("plan") != task["plan"] or not os.path.isfile(path)
      or os.path.getsize(path) != side.get("bytes") or records.file_sha256(path) != side["sha256"]):
    return None
  return side


def _replace_json(path: str, obj: Any, indent: Optional[int] = None) -> None:
  """Writes `obj` as JSON to `path` through a temporary file and a rename: a killed conversion
  leaves the old file or the new one, never a torn one. (run_dir.write_json also syncs, but it
  imports JAX, which the converter's worker processes do not need.)"""
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=indent, sort_keys=True)
  os.replace(path + ".tmp", path)


def write_shard(task: dict[str, Any]) -> dict[str, Any]:
  """Writes one shard (records, then its sidecar; each via a temporary file and a rename) or
  keeps it when already done; returns its manifest entry (plus 'skipped' and 'kept')."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  side = _done(task)
  kept = side is not None
  if side is None:
    out, size, kind = task["output"], task["image_size"], task["kind"]
    load = (group_folders.load_image_uint8 if kind == "image_folder" else caption_csv.resized_rgb)
    examples: dict[str, list] = {}
    skipped = []
    path = os.path.join(out, task["file"])
    writer = array_record_module.ArrayRecordWriter(path + ".tmp", "group_size:1")
    for r in task["rows"]:
      try:
        if not os.path.isfile(r["path"]):
          raise FileNotFoundError("missing")
        image = load(r["path"], size)
      except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError: OSError
        reason = "missing" if str(e) == "missing" else f"unreadable ({type(e).__name__})"
        if task["on_bad_image"] == "stop":
          writer.close()
          os.remove(path + ".tmp")
          raise ConfigError(f"--input row {r['row']}: image {r['path']!r} is {reason}; fix or "
                            "remove the row, or pass --on_bad_image=skip to skip and count "
                            "such rows") from None
        skipped.append({"row": r["row"], "path": r["path"], "reason": reason})
        print(f"convert: skipped {task['split']} row {r['row']}: image {r['path']!r} is {reason}",
              flush=True)
        continue
      header = {k: r[k] for k in ("id", "label", "group", "spurious", "caption") if k in r}
      writer.write(records.pack_record(header, _encode(image, task["encoding"],
                                                       task["jpeg_quality"])))
      for k, v in header.items():
        examples.setdefault(k, []).append(v)
      if kind == "caption_table":
        examples.setdefault("path", []).append(r["path"])
    writer.close()
    os.replace(path + ".tmp", path)
    side = {"plan": task["plan"], "count": len(task["rows"]) - len(skipped),
            "bytes": os.path.getsize(path), "sha256": records.file_sha256(path),
            "skipped": skipped, "examples": examples}
    meta = os.path.join(out, task["meta"])
    _replace_json(meta, side)
  return {"file": task["file"], "meta": task["meta"], "count": side["count"],
          "bytes": side["bytes"], "sha256": side["sha256"],
          "meta_sha256": records.file_sha256(os.path.join(task["output"], task["meta"])),
          "skipped": side["skipped"], "kept": kept}


def convert(kind: str, input_path: str, output: str, *, image_size: int = 64,
            encoding: str = "png", jpeg_quality: int = 95, shard_size: int = 2048,
            workers: int = 1, on_bad_image: str = "stop", splits: Sequence[str] = SPLITS,
            split: str = "train", metadata: str = "metadata.csv", image_key: str = "image",
            caption_key: str = "caption", delimiter: Optional[str] = None,
            verbose: bool = True) -> dict[str, Any]:
  """Converts `input_path` into `output` (see the module docstring) and returns the manifest.
  `splits` (image_folder) or `split` (caption_table) name what is converted. `workers` > 1
  starts spawned processes: a script calling this needs an `if __name__ == "__main__"` guard."""
  checks = ((kind, KINDS, "--kind"), (encoding, ENCODINGS, "--encoding"),
            (on_bad_image, ON_BAD_IMAGE, "--on_bad_image"))
  for value, allowed, flag in checks:
    if value not in allowed:
      raise ConfigError(f"{flag}={value!r} is not known; allowed: {list(allowed)}")
  for value, flag in ((image_size, "--image_size"), (shard_size, "--shard_size"),
                      (workers, "--workers")):
    if not isinstance(value, int) or value < 1:
      raise ConfigError(f"{flag}={value!r} must be an integer >= 1")
  if not 1 <= jpeg_quality <= 100:
    raise ConfigError(f"--jpeg_quality={jpeg_quality} must be in [1, 100]")
  for name in ([split] if kind == "caption_table" else splits):
    if name not in SPLITS:
      raise ConfigError(f"the split {name!r} is not known; allowed: {list(SPLITS)}")
  if kind == "image_folder":
    if not os.path.isdir(input_path or ""):
      raise ConfigError(f"--input={input_path!r} is not a directory (an image folder)")
    plan = plan_image_folder(input_path, metadata=metadata, splits=splits)
  else:
    plan = plan_caption_table(input_path, split=split, image_key=image_key,
                              caption_key=caption_key, delimiter=delimiter)
  os.makedirs(output, exist_ok=True)
  head = {"format": records.FORMAT, "kind": kind, "image_shape": [image_size, image_size, 3],
          "encoding": encoding, "jpeg_quality": jpeg_quality if encoding == "jpeg" else None}
  manifest_path = os.path.join(output, records.MANIFEST)
  manifest = dict(head, splits={})
  if os.path.isfile(manifest_path):
    old = records.read_manifest(output, field="--output")
    if any(old.get(k) != v for k, v in head.items()):
      raise ConfigError(f"--output={output!r} holds a conversion with other settings "
                        f"({ {k: old.get(k) for k in head} }); use another --output")
    manifest = old
  tasks = []
  for name, rows in plan.items():
    n = max(1, -(-len(rows) // shard_size))
    for i in range(n):
      stem = f"{name}-{i:05d}-of-{n:05d}"
      task = {"kind": kind, "split": name, "output": output, "file": stem + ".array_record",
              "meta": stem + ".json", "rows": rows[i * shard_size:(i + 1) * shard_size],
              "image_size": image_size, "encoding": encoding, "jpeg_quality": jpeg_quality,
              "on_bad_image": on_bad_image}
      task["plan"] = _shard_plan_hash(task)
      tasks.append(task)
  if workers > 1 and len(tasks) > 1:
    with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
      done = pool.map(write_shard, tasks, chunksize=1)
  else:
    done = [write_shard(t) for t in tasks]
  for name in plan:
    shards = [d for d, t in zip(done, tasks) if t["split"] == name]
    skipped = sum(len(s.pop("skipped")) for s in shards)
    kept = sum(s.pop("kept") for s in shards)
    manifest["splits"][name] = {"count": sum(s["count"] for s in shards), "skipped": skipped,
                                "shards": shards, "fingerprint": records.split_fingerprint(shards),
                                "source": os.path.abspath(input_path)}
    if verbose:
      print(f"convert: {name}: {manifest['splits'][name]['count']} examples in {len(shards)} "
            f"shards ({kept} kept from an earlier run), {skipped} rows skipped"
            + (" (listed in the shards' .json sidecars)" if skipped else ""), flush=True)
  if kind == "image_folder":
    manifest.update(num_classes=2, num_groups=4,
                    group_names=list(group_folders.WATERBIRDS_GROUP_NAMES),
                    info=dict(group_folders.WATERBIRDS_INFO))
  _replace_json(manifest_path, manifest, indent=1)
  return manifest


def verify(output: str) -> dict[str, int]:
  """Checks every split of a conversion against its manifest (sizes, counts, every shard's
  sha256, the fingerprints); returns the example count per split. A mismatch: ConfigError."""
  manifest = records.read_manifest(output, field="--verify")
  return {name: records.check_split(output, manifest, name, full=True,
                                    field="--verify")["count"]
          for name in manifest["splits"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m robustdata.data.convert", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--kind", choices=KINDS)
  p.add_argument("--input", help="the image folder, or the CSV/TSV of (image, caption)")
  p.add_argument("--output", help="the output directory (manifest.json and shards)")
  p.add_argument("--verify", metavar="DIR", help="check a conversion's shards and exit")
  p.add_argument("--image_size", type=int, default=64)
  p.add_argument("--encoding", choices=ENCODINGS, default="png")
  p.add_argument("--jpeg_quality", type=int, default=95)
  p.add_argument("--shard_size", type=int, default=2048, help="examples per shard")
  p.add_argument("--workers", type=int, default=1, help="processes writing shards")
  p.add_argument("--on_bad_image", choices=ON_BAD_IMAGE, default="stop")
  p.add_argument("--splits", default="train,val,test", help="image_folder: splits to convert")
  p.add_argument("--split", default="train", help="caption_table: the split the table is")
  p.add_argument("--metadata", default="metadata.csv")
  p.add_argument("--image_key", default="image")
  p.add_argument("--caption_key", default="caption")
  p.add_argument("--delimiter", default=None)
  a = p.parse_args(argv)
  try:
    if a.verify:
      for name, count in verify(a.verify).items():
        print(f"verify: {name}: {count} examples, every shard matches the manifest")
      return 0
    if not a.kind or not a.input or not a.output:
      p.error("--kind, --input and --output are required (or --verify DIR)")
    convert(a.kind, a.input, a.output, image_size=a.image_size, encoding=a.encoding,
            jpeg_quality=a.jpeg_quality, shard_size=a.shard_size, workers=a.workers,
            on_bad_image=a.on_bad_image, splits=[s for s in a.splits.split(",") if s],
            split=a.split, metadata=a.metadata, image_key=a.image_key,
            caption_key=a.caption_key, delimiter=a.delimiter)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
