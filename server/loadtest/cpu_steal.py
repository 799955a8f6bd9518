"""Time the hypervisor gave this machine's CPUs to others ("steal"), over the window.

On a virtual machine a vCPU can be taken away for tens of milliseconds at a
time. For a process pinned to it, such as the server in the README's load test,
that is a stall no code can avoid: packets wait in the socket meanwhile, and
show as the server's own delay. On the Intel Xeon VM of the README, the share
of forwarded packets held over 5 ms was 0.02 % in seconds without steal, 1 %
in seconds with up to 5 % steal and 10 % in seconds with more. The report
gives each CPU's steal so that a run's latency can be read with it.

It also gives each CPU's busy share (all but idle, iowait and steal) and the
softirq part of it (the kernel's network work). The server's own CPU figure is
its process's time; the busy share is everything that ran on its CPU: at
21 + 63 with last-N full the process said 61.2 % and its CPU was 62.9 % busy,
16.0 % of the CPU's time in softirq.
"""

from __future__ import annotations

from pathlib import Path

#: Linux's per-CPU counters (USER_HZ ticks): user nice system idle iowait irq softirq steal ...
PROC_STAT = Path("/proc/stat")
#: The positions of `idle`, `iowait`, `softirq` and `steal` among a CPU line's
#: counters (after the name).
IDLE_FIELD, IOWAIT_FIELD, SOFTIRQ_FIELD, STEAL_FIELD = 3, 4, 6, 7

#: {cpu name: (steal, all, busy, softirq) ticks}; busy is all but idle, iowait, steal.
CpuTicks = dict[str, tuple[int, int, int, int]]


def read_ticks(path: Path = PROC_STAT) -> CpuTicks | None:
    """{cpu name: (steal, all, busy, softirq ticks)} now (None where /proc/stat is not
    Linux's)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    ticks: CpuTicks = {}
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()) or len(fields) <= STEAL_FIELD:
            continue
        try:
            # guest and guest_nice (fields 8 and 9) are already counted in user and nice.
            values = [int(v) for v in fields[:8]]
        except ValueError:
            return None
        steal, total = values[STEAL_FIELD], sum(values)
        busy = total - values[IDLE_FIELD] - values[IOWAIT_FIELD] - steal
        ticks[name] = (steal, total, busy, values[SOFTIRQ_FIELD])
    return ticks or None


def steal_percent(before: CpuTicks, after: CpuTicks) -> dict[str, float]:
    """Each CPU's steal between two readings, in % of its time."""
    shares = {}
    for name, (steal, total, _, _) in after.items():
        if name not in before:
            continue
        elapsed = total - before[name][1]
        if elapsed > 0:
            shares[name] = round(100 * (steal - before[name][0]) / elapsed, 1)
    return shares


def busy_percent(before: CpuTicks, after: CpuTicks) -> dict[str, dict[str, float]]:
    """Each CPU's busy share between two readings, and its softirq part, in % of its
    time: {cpu name: {"busy": ..., "softirq": ...}}."""
    shares = {}
    for name, (_, total, busy, softirq) in after.items():
        if name not in before:
            continue
        _, total_before, busy_before, softirq_before = before[name]
        elapsed = total - total_before
        if elapsed > 0:
            shares[name] = {
                "busy": round(100 * (busy - busy_before) / elapsed, 1),
                "softirq": round(100 * (softirq - softirq_before) / elapsed, 1),
            }
    return shares
