"""The CPUs a process may use, and OpenMP threads that sleep while they wait.

A container, a cgroup or `taskset` may give a process fewer CPUs than the machine has;
`os.cpu_count()` counts the machine's, and LightGBM's default of "all of them" oversubscribes
the few it has. And LightGBM's OpenMP threads spin while waiting for work by default: on a
shared machine the same training took 146 CPU seconds spinning and 21 with a passive wait
policy (issue 34). The policy must be set before OpenMP loads, which is when LightGBM is first
imported: the training, models and serving packages call `passive_openmp()` as they load,
before any of their modules imports LightGBM. A value the user set is kept.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def passive_openmp() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
