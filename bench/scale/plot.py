"""Draws bench/scale.sh's figures: one PNG per figure against the key count,
a line per server (kvd, etcd), and prints the markdown table of every figure.

    python plot.py scale.csv OUTDIR
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402

# kvd blue; the etcd versions (Debian 3.4, the newest) orange, green, red.
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]

# (png name, title, y label, [(column, series label, line style)])
FIGURES = [
    ("scale-rss", "Memory", "MiB",
     [("peak_rss_mb", "peak RSS (load, reads)", "-"),
      ("rss_after_restart_mb", "RSS after restart", "--")]),
    ("scale-disk", "Data dir on disk", "MiB",
     [("disk_mb", "after load", "-"),
      ("disk_after_defrag_mb", "after compaction + defrag", "--")]),
    ("scale-restart", "Restart until the first linearizable read", "seconds",
     [("restart_s", "restart", "-")]),
    ("scale-range", "Linearizable range of a 1000-key prefix", "ms",
     [("range1000_p50_ms", "p50", "-"), ("range1000_p99_ms", "p99", "--")]),
    ("scale-maintenance", "Compaction at the head and defrag", "seconds",
     [("compact_s", "compaction", "-"), ("defrag_s", "defrag", "--")]),
    ("scale-maintenance-puts", "p99 of 8 concurrent putters", "ms",
     [("compact_baseline_put_p99_ms", "before", ":"),
      ("compact_put_p99_ms", "during compaction", "-"),
      ("defrag_put_p99_ms", "during defrag", "--")]),
    ("scale-catchup", "New member: add until caught up", "seconds",
     [("catchup_s", "catch-up", "-")]),
    ("scale-watch", "10k watchers over 1k streams: events/s", "events/s",
     [("watch_events_per_s", "events/s", "-")]),
    ("scale-watch-rss", "10k watchers over 1k streams: peak RSS", "MiB",
     [("watch_rss_mb", "peak RSS while watching", "-")]),
    ("scale-load", "Load rate (txns of 100 puts, 16 writers)", "puts/s",
     [("load_puts_per_s", "puts/s", "-")]),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def human(n):
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1], newline="")))
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    # A line per server and version: one CSV may hold runs against several etcds.
    tags = []
    for r in rows:
        r["tag"] = f"{r['server']} {r['version']}".strip()
        if r["tag"] not in tags:
            tags.append(r["tag"])
    tags.sort(key=lambda t: (not t.startswith("kvd"), t))
    sizes = sorted({int(r["keys"]) for r in rows})
    by = {(r["tag"], int(r["keys"])): r for r in rows}

    for name, title, ylabel, series in FIGURES:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        drawn = False
        seen = []
        for server, color in zip(tags, COLORS):
            for (col, label, style), marker in zip(series, "os^"):
                pts = [(k, num(by.get((server, k), {}).get(col))) for k in sizes]
                pts = [(k, v) for k, v in pts if v is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                seen += [y for y in ys if y > 0]
                lbl = server if len(series) == 1 else f"{server}: {label}"
                ax.plot(xs, ys, style, marker=marker, color=color, label=lbl)
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        if len(sizes) > 1 and sizes[-1] / sizes[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(sizes, [human(k) for k in sizes])
        ax.minorticks_off()
        ax.set_xlabel(f"keys (256-byte values, {rows[0]['versions']} revisions per key)")
        ax.set_ylabel(ylabel)
        if seen and max(seen) / min(seen) > 30:
            ax.set_yscale("log")  # growth over decades: a straight line is a power law
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png")
        plt.close(fig)
        print(f"wrote {out / (name + '.png')}", file=sys.stderr)

    # A table per size: a row per figure, a column per server, and the ratio
    # kvd/etcd for each etcd version.
    kvd = [t for t in tags if t.startswith("kvd")][:1]
    etcds = [t for t in tags if not t.startswith("kvd")]
    for k in sizes:
        head = [f"{human(k)} keys"] + tags + [f"kvd/{e}" for e in etcds if kvd]
        print(f"\n| {' | '.join(head)} |")
        print("|" + "---|" * len(head))
        for _, _, _, series in FIGURES:
            for col, _, _ in series:
                vals = {t: num(by.get((t, k), {}).get(col)) for t in tags}
                cells = [col] + ["" if vals[t] is None else f"{vals[t]:.4g}" for t in tags]
                for e in etcds if kvd else []:
                    a, b = vals[kvd[0]], vals[e]
                    cells.append(f"{a / b:.2f}" if a is not None and b else "")
                print("| " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
