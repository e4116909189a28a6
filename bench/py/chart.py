"""The chart of BENCHMARKS.md, drawn from a results file of
`cargo xtask bench`: throughput as a fraction of direct, and the proxy's
CPU per request, for every route and load. Usage: chart.py RESULTS OUT.png"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["airlock-explicit", "airlock-transparent", "airlock-container", "mitmproxy", "squid"]
COLORS = {
    "airlock-explicit": "#1f77b4",
    "airlock-transparent": "#2ca02c",
    "airlock-container": "#17becf",
    "mitmproxy": "#d62728",
    "squid": "#9467bd",
}
KIND_LABEL = {"keepalive": "keep-alive", "new-connections": "new conn.", "http2": "HTTP/2"}


def main():
    results = json.load(open(sys.argv[1]))
    scen = [s for s in results["scenarios"] if s["name"] != "direct"]
    loads = []
    for s in scen:
        key = (s.get("kind", "keepalive"), s["connections"])
        if key not in loads:
            loads.append(key)
    kinds = list(KIND_LABEL)
    loads.sort(key=lambda k: (kinds.index(k[0]) if k[0] in kinds else 9, k[1]))
    routes = [r for r in ORDER if any(s["name"] == r for s in scen)]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    width = 0.8 / max(len(routes), 1)
    for i, route in enumerate(routes):
        ratios, cpus = [], []
        for kind, conns in loads:
            s = next(
                (x for x in scen if x["name"] == route and x.get("kind", "keepalive") == kind and x["connections"] == conns),
                None,
            )
            ratios.append((s or {}).get("vs_direct", {}) and s["vs_direct"]["rps_ratio"] if s else 0)
            cpus.append((s["median"].get("gateway_cpu_us_per_req") or 0) if s else 0)
        xs = [j + (i - (len(routes) - 1) / 2) * width for j in range(len(loads))]
        ax1.bar(xs, ratios, width, label=route, color=COLORS.get(route))
        ax2.bar(xs, cpus, width, label=route, color=COLORS.get(route))
        for x, r in zip(xs, ratios):
            # A missing bar: the peer answered nothing, or does not speak it.
            ax1.text(x, r, f"{r:.2f}" if r else "n/a", ha="center", va="bottom", fontsize=7)
    h2 = results["settings"].get("http2", "")
    labels = [
        f"{KIND_LABEL.get(k, k)}\n" + (f"{c}×{h2.split('x')[-1]} streams" if k == "http2" and h2 else f"c={c}")
        for k, c in loads
    ]
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels(labels, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax1.axhline(1.0, color="black", linewidth=0.8)
    ax1.axhline(0.6, color="grey", linewidth=0.8, linestyle="--")
    ax1.text(len(loads) - 0.5, 0.61, "target 0.6 (c=16)", ha="right", va="bottom", fontsize=8, color="grey")
    ax1.set_ylabel("requests/s as a fraction of direct (same run)")
    ax1.set_title("Throughput vs direct (higher is better)")
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=10)
    ax2.axhline(20, color="grey", linewidth=0.8, linestyle="--")
    ax2.text(-0.45, 21, "target 20 µs", ha="left", va="bottom", fontsize=8, color="grey")
    ax2.set_ylabel("proxy CPU per request, µs (log)")
    ax2.set_title("Proxy CPU time per request (lower is better)")
    ax1.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        f"cargo xtask bench, {results['timestamp']} ({results['git']}); "
        f"{results['machine']['nproc']} shared cores, load avg at start {results['machine']['loadavg_at_start'].split()[0]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


main()
