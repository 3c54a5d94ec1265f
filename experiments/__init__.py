"""The command-line entry points: main (one run), sweep (a config's get_sweep) and report."""

import os as _os
import sys as _sys

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def huge_page_environ(environ, *, platform: str = _sys.platform, libc: str | None = None,
                      thp_mode: str | None = None) -> dict | None:
  """`environ` with glibc's malloc told to back its large blocks with transparent huge pages
  (GLIBC_TUNABLES glibc.malloc.hugetlb=1, glibc >= 2.35), or None where that changes nothing:
  not Linux/glibc, an older glibc, the kernel's THP mode not 'madvise' ('always' has them
  already, 'never' refuses), the tunable already set, or ROBUSTDATA_HUGE_PAGES=0.

  XLA:CPU maps each large temporary buffer afresh on every call of a compiled step and unmaps
  it after, so with 4 KiB pages every step page-faults its whole working set in again (500,000
  faults a step for ResNet-20's ghost-clipped DP step at batch 256); with 2 MiB pages a few
  thousand (docs/results/speed.md, "Huge pages")."""
  if environ.get("ROBUSTDATA_HUGE_PAGES", "1").lower() in ("0", "off", "false", "no"):
    return None
  tunables = environ.get("GLIBC_TUNABLES", "")
  if not platform.startswith("linux") or "glibc.malloc.hugetlb" in tunables:
    return None
  if libc is None:
    try:
      libc = _os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
      libc = ""
  name, _, version = libc.partition(" ")
  try:
    if name != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
      return None
  except ValueError:
    return None
  if thp_mode is None:
    try:
      with open(THP_MODE) as f:
        thp_mode = f.read()
    except OSError:
      return None
  if "[madvise]" not in thp_mode:
    return None
  return {**environ, "GLIBC_TUNABLES": ":".join(t for t in (tunables, HUGE_PAGES_TUNABLE) if t)}


def restart_with_huge_pages() -> None:
  """Restarts this command once with `huge_page_environ`'s environment where it helps: glibc
  reads its tunables when a process starts, so a command calls this first, before it imports
  JAX or allocates (sweep workers are spawned from the restarted process and inherit it)."""
  env = huge_page_environ(_os.environ)
  if env is not None:
    _os.execve(_sys.executable, [_sys.executable, *_sys.orig_argv[1:]], env)


def parse_flags_or_exit(argv):
  """absl's parser for experiments.sweep and experiments.report; a bad flag ends with one
  message and exit status 2."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=_sys.stderr)
    raise SystemExit(2) from None
