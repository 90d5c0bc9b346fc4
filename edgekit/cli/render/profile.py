"""What ``edgekit profile`` prints (the command is made from the stage's options model:
``edgekit.stages.profile``)."""

from __future__ import annotations

from .._common import console, fmt_bytes


def render(result) -> None:
    """The measurements as a table; where the result was written."""
    _print(result.to_json(), result.path)


def _print(r: dict, output) -> None:
    from rich.table import Table

    from ...core.preprocessing import describe

    lat, s = r["latency_ms"], r["settings"]
    table = Table(show_header=False, title=f"{r['model']['path']} ({r['model']['precision'] or '?'}, "
                  f"{fmt_bytes(r['model']['size_bytes'])})", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("measured on", f"{r['provenance']['measured']}, {s['threads']} threads, "
                  f"{r['provenance']['runtime']} {r['provenance']['runtime_version']}")
    if lat.get("meaningful") is False:
        table.add_row("latency", f"not meaningful: {lat.get('note', '')}")
    shown = "  ".join(f"{k} {lat[k]:.3f}" for k in ("p50", "mean", "std", "min", "p5", "p90",
                                                     "p95", "p99", "max") if k in lat)
    table.add_row("latency (ms)", f"{shown}  (n={lat['count']}, warm-up {s['warmup']})")
    table.add_row("preprocessing", describe(r["model"].get("preprocessing")))
    table.add_row("init (ms)", f"{r['init_ms']:.1f}")
    mem = r["memory"]
    own = (f"model peak +{mem['model_peak_mb']:.1f} MB over {mem['baseline_rss_mb']:.1f} MB of "
           f"Python and runtime, " if mem.get("model_peak_mb") is not None else "")
    table.add_row("memory", f"{own}model load +{mem['model_rss_mb']:.1f} MB, process peak RSS "
                  f"{mem['peak_rss_mb']:.1f} MB")
    if r.get("outputs") and not r["outputs"]["class_scores"]:
        table.add_row("outputs", f"{r['outputs']['why']}: no accuracy or top-1 agreement")
    if r.get("accuracy"):
        a = r["accuracy"]
        table.add_row("accuracy", f"top-1 {a['top1']:.2f}%  top-5 {a['top5']:.2f}%  "
                      f"(n={a['n']}, {a['dataset']})")
        if a.get("degenerate"):
            table.add_row("", f"[yellow]{'; '.join(a['degenerate'])}[/]")
    if r.get("fidelity"):
        f = r["fidelity"]
        snr = "identical" if f["identical"] else f"{f['snr_db']:.1f} dB"
        agree = ("" if f.get("top1_agreement") is None
                 else f"top-1 agreement {f['top1_agreement']:.2f}%, ")
        table.add_row("fidelity", f"{agree}SNR {snr}, max |diff| {f['max_abs_diff']:.3g} "
                      f"vs {f['reference']}")
        for who, reasons in (f.get("degenerate") or {}).items():
            table.add_row("", f"[red]NOT MEANINGFUL: the {who}'s {'; '.join(reasons)}[/]")
        table.add_row("reference input", describe(f.get("reference_preprocessing")))
    if r.get("reference_accuracy"):
        table.add_row("reference acc.", f"top-1 {r['reference_accuracy']['top1']:.2f}%")
    console.print(table)
    if output:
        console.print(f"wrote {output}")
