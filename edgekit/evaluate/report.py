"""``edgekit report``: every variant of a run in one table and three plots.

Inputs are the JSON documents edgekit writes: ``run.json`` of ``edgekit run`` (its stages'
artifacts and profiles are read from its folder), ``edgekit profile`` results and artifact
sidecars. A *variant* is one model file (keyed by its sha256): its size, MACs and parameters
(from its architecture spec, else from the model graph), the latency measured by each profile
of it (with where it was measured) or, without one, predicted for the run's device by the cost
model (with its expected error), its accuracy and its fidelity to its reference.

Plots (matplotlib, PNG): accuracy vs latency with the Pareto front, the MACs share of each
block of the final model, and the before/after of each stage (size, MACs, top-1).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Optional

from ..core.errors import BadInput, first_line
from ..core.results import PROFILE_SCHEMA, RUN_SCHEMA, SIDECAR_SCHEMA, check

REPORT_SCHEMA = "edgekit.report/1"
TITLES = {"pareto": "Accuracy vs latency", "layers": "MACs per block of the final model",
          "stages": "Before and after each stage"}


def collect(paths: list[Path]) -> dict[str, Any]:
    """Variants (in stage order) and runs from ``paths``; unknown documents are an error."""
    variants: dict[str, dict] = {}
    profiles: list[dict] = []
    runs: list[dict] = []
    aliases: dict[str, str] = {}  # a run's cache paths -> stage ids
    docs = [(path, _load(path)) for path in _expand(paths)]
    order = {RUN_SCHEMA: 0, PROFILE_SCHEMA: 1}  # runs first: they name the variants
    several = sum(doc.get("schema") == RUN_SCHEMA for _, doc in docs) > 1
    for path, doc in sorted(docs, key=lambda pd: order.get(pd[1].get("schema"), 2)):
        schema = doc.get("schema")
        if schema == RUN_SCHEMA:
            runs.append(doc)
            for st in doc["stages"]:  # the outputs sit beside run.json (folders move)
                out = Path(path).parent / Path(st["output"]["path"]).name
                name = f"{doc['name']}/{st['id']}" if several else st["id"]
                aliases[st["output"].get("cache_path", "")] = name
                if not out.exists():
                    raise BadInput(f"{path}: {out} is missing (the run folder was changed)")
                if st["stage"] == "profile":
                    profiles.append(_load(out))
                else:
                    _add_variant(variants, out, name, st["stage"])
        elif schema == PROFILE_SCHEMA:
            profiles.append(doc)
        else:  # a sidecar, validated when its model is opened
            model = Path(path).with_name(Path(path).name.removesuffix(".json"))
            _add_variant(variants, model, model.stem)
    for p in profiles:
        v = variants.get(p["model"]["sha256"])
        model = Path(p["model"]["path"])
        if v is None and model.exists():  # a standalone profile: its model, where it still is
            from ..core.artifacts import sha256_of

            if sha256_of(model) == p["model"]["sha256"]:
                _add_variant(variants, model, model.stem, None)
                v = variants.get(p["model"]["sha256"])
        if v is None:  # a profile of a model that is gone or has changed since
            v = variants.setdefault(p["model"]["sha256"], _bare_variant(p))
        v["profiles"].append(_profile_summary(p, aliases))
    device = next((r["recipe"]["device"] for r in runs if r["recipe"].get("device")), None)
    rows = list(variants.values())
    for v in rows:
        v["predicted"] = _predict(v, device) if device else None
    fronts = device_fronts(rows)
    if len(fronts) < 2:  # one device (or none measured): measured, else predicted latency
        front = pareto([v for v in rows if _acc(v) is not None and _latency(v)[0] is not None])
        fronts = {device or "": front} if front else {}
    for v in rows:
        v["pareto_on"] = sorted(d for d, front in fronts.items() if v["sha256"] in front)
        v["pareto"] = bool(v["pareto_on"])
    return {"schema": REPORT_SCHEMA, "device": device, "runs": [_run_summary(r) for r in runs],
            "variants": rows, "fronts": {d: [v["name"] for v in rows if v["sha256"] in f]
                                         for d, f in sorted(fronts.items())}}


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; a run folder as its run.json, and a sweep's folder as the run.json
    of each of its variants."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(path)
            continue
        doc_path = path / "run.json"
        if not doc_path.is_file():
            raise BadInput(f"{path}: a folder without run.json (not a run or sweep folder)")
        try:
            doc = json.loads(doc_path.read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{doc_path}: cannot read as JSON ({first_line(exc, 120)})") from None
        if isinstance(doc, dict) and doc.get("schema") == "edgekit.sweep-run/1":
            subs = [path / Path(str(v.get("run_dir", ""))).name for v in doc.get("variants", [])
                    if isinstance(v, dict)]
            out += [p / "run.json" for p in subs if (p / "run.json").is_file()]
        else:
            out.append(doc_path)
    return out


def device_fronts(rows: list[dict]) -> dict[str, set[str]]:
    """Per device: the sha256 of the variants on its Pareto front (measured latency and
    top-1 of the profiles on that device)."""
    points: dict[str, dict[str, tuple[float, float]]] = {}
    for v in rows:
        for p in v["profiles"]:
            if p["latency_p50_ms"] is not None and p.get("accuracy"):
                points.setdefault(p["device"], {})[v["sha256"]] = (
                    p["latency_p50_ms"], p["accuracy"]["top1"])
    return {d: {k for k, (lat, acc) in pts.items()
                if not any(o_lat <= lat and o_acc >= acc and (o_lat < lat or o_acc > acc)
                           for o_lat, o_acc in pts.values())}
            for d, pts in points.items()}


def _load(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: cannot read as JSON ({first_line(exc, 120)})") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema not in (RUN_SCHEMA, PROFILE_SCHEMA, SIDECAR_SCHEMA):
        raise BadInput(f"{path}: not a run, profile result or artifact sidecar (schema "
                       f"{str(schema)[:60]!r})")
    return doc if schema == SIDECAR_SCHEMA else check(doc, Path(path))  # sidecars: when opened


def _add_variant(variants: dict, path: Path, name: str, stage: Optional[str] = None) -> None:
    """Add the model at ``path``; its stage is ``stage``, else the one its sidecar names."""
    from ..core.artifacts import open_artifact

    art = open_artifact(path)
    m = art.meta
    if art.sha256 in variants:
        return
    stage = stage or (m.get("stage") or {}).get("name")
    macs, params = _work(art)
    variants[art.sha256] = {
        "name": name, "stage": stage, "path": str(path), "sha256": art.sha256,
        "format": art.format, "precision": m.get("precision") or "fp32",
        "size_bytes": m.get("size_bytes") or path.stat().st_size, "macs": macs, "params": params,
        "spec": m.get("spec"), "parent": (m.get("parent") or {}).get("sha256"), "profiles": []}


def _bare_variant(p: dict) -> dict:
    m = p["model"]
    return {"name": Path(m["path"]).stem, "stage": None, "path": m["path"],
            "sha256": m["sha256"], "format": m["format"], "precision": m["precision"] or "?",
            "size_bytes": m["size_bytes"], "macs": None, "params": None, "spec": None,
            "parent": None, "profiles": []}


def _work(art) -> tuple[Optional[int], Optional[int]]:
    """MACs and params: from the spec when edgekit built the model, else from its graph."""
    if art.meta.get("spec"):
        from ..estimate.work import spec_work, totals
        from ..models.spec import spec_from_dict

        t = totals(spec_work(spec_from_dict(art.meta["spec"])))
        return t["macs"], art.meta.get("params") or t["params"]
    from .analyze import analyze

    try:
        a = analyze(art.path, art.format)
    except BadInput:
        return None, None
    return a.get("macs"), a.get("params")


def _profile_summary(p: dict, aliases: dict[str, str]) -> dict:
    lat = p["latency_ms"]
    out = {"latency_p50_ms": lat.get("p50") if lat.get("meaningful", True) else None,
           "measured_on": p["provenance"]["measured"], "device": p["device"]["name"],
           "threads": p["settings"]["threads"], "date": p["provenance"]["date"],
           "runtime": f"{p['provenance']['runtime']} {p['provenance']['runtime_version']}",
           "peak_rss_mb": p["memory"]["peak_rss_mb"]}
    if p.get("accuracy"):
        a = p["accuracy"]
        out["accuracy"] = {"top1": a["top1"], "top5": a.get("top5"), "n": a["n"],
                           "dataset": a["dataset"]}
    if p.get("fidelity"):
        f = p["fidelity"]
        out["fidelity"] = {"top1_agreement": f["top1_agreement"], "snr_db": f["snr_db"],
                           "reference": aliases.get(f["reference"], f["reference"])}
    return out


def _predict(v: dict, device: str) -> Optional[dict]:
    """The cost model's latency for ``device`` (None without a spec or a cost model)."""
    if not v.get("spec"):
        return None
    from ..estimate.latency import predict_for_device

    try:
        return predict_for_device(device, v["spec"], v["precision"])
    except BadInput:
        return None


def _acc(v: dict) -> Optional[float]:
    accs = [p["accuracy"]["top1"] for p in v["profiles"] if p.get("accuracy")]
    return accs[-1] if accs else None


def _latency(v: dict) -> tuple[Optional[float], str]:
    """The latency the plots use: the last measured one, else the prediction."""
    measured = [p for p in v["profiles"] if p["latency_p50_ms"] is not None]
    if measured:
        return measured[-1]["latency_p50_ms"], "measured"
    if v.get("predicted"):
        return v["predicted"]["latency_ms"], "predicted"
    return None, ""


def pareto(rows: list[dict]) -> set[str]:
    """sha256 of the variants no other beats on both latency (lower) and accuracy (higher)."""
    front = set()
    for v in rows:
        lat, acc = _latency(v)[0], _acc(v)
        if not any((_latency(o)[0] <= lat and _acc(o) >= acc) and
                   (_latency(o)[0] < lat or _acc(o) > acc) for o in rows):
            front.add(v["sha256"])
    return front


def _run_summary(r: dict) -> dict:
    return {"name": r["name"], "status": r["status"], "run_dir": r["run_dir"],
            "started": r["started"], "wall_s": r["wall_s"], "gates": r["gates"],
            "stages": [{k: s[k] for k in ("index", "id", "stage", "cached", "seconds",
                                           "command")} for s in r["stages"]]}


# --- plots -----------------------------------------------------------------------------------
def plots(report: dict) -> dict[str, bytes]:
    """PNG bytes by name: pareto, layers, stages (those the data allows)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    out = {}
    rows = report["variants"]
    points = [v for v in rows if _acc(v) is not None and _latency(v)[0] is not None]
    if points:
        out["pareto"] = _pareto_png(points)
    final = next((v for v in reversed(rows) if v.get("spec")), None)
    if final:
        out["layers"] = _layers_png(final)
    if len(rows) > 1:
        out["stages"] = _stages_png(rows)
    return out


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pareto_png(points: list[dict]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    kinds = {_latency(v)[1] for v in points}
    for v in points:
        lat, kind = _latency(v)
        ax.scatter(lat, _acc(v), s=60, marker="o" if kind == "measured" else "^",
                   color="tab:blue" if v["pareto"] else "tab:gray", zorder=3)
        ax.annotate(f"{v['name']} ({v['precision']})", (lat, _acc(v)), fontsize=8,
                    xytext=(5, 4), textcoords="offset points")
    front = sorted((v for v in points if v["pareto"]), key=lambda v: _latency(v)[0])
    ax.step([_latency(v)[0] for v in front], [_acc(v) for v in front], where="post",
            color="tab:blue", lw=1.5, label="Pareto front", zorder=2)
    where = sorted({f"{p['measured_on']}, {p['threads']} thread(s)" for v in points
                    for p in v["profiles"] if p["latency_p50_ms"] is not None})
    ax.set_xlabel("latency p50 (ms), " + (f"measured on {'; '.join(where)}" if kinds ==
                                          {"measured"} else "measured (o) / predicted (^)"),
                  fontsize=8)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _layers_png(v: dict) -> bytes:
    import matplotlib.pyplot as plt

    from ..estimate.work import spec_work
    from ..models.spec import spec_from_dict

    blocks: dict[str, int] = {}
    for w in spec_work(spec_from_dict(v["spec"])):
        name = w.name.split("_")[0]
        blocks[name] = blocks.get(name, 0) + w.macs
    total = sum(blocks.values()) or 1
    fig, ax = plt.subplots(figsize=(max(5.0, 0.28 * len(blocks)), 3.4))
    ax.bar(list(blocks), [100 * m / total for m in blocks.values()], color="tab:orange")
    ax.set_ylabel("share of MACs (%)")
    ax.set_title(f"{v['name']}: MACs per block ({total / 1e6:.2f} M in all)")
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _stages_png(rows: list[dict]) -> bytes:
    import matplotlib.pyplot as plt

    names = [f"{v['name']} ({v['precision']})" for v in rows]
    series = [("size (MB)", [v["size_bytes"] / 1e6 for v in rows]),
              ("MACs (M)", [None if v["macs"] is None else v["macs"] / 1e6 for v in rows]),
              ("top-1 (%)", [_acc(v) for v in rows])]
    fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.75 * len(rows)), 7.0), sharex=True)
    for ax, (label, values) in zip(axes, series):
        x = range(len(rows))
        ax.bar(x, [v or 0 for v in values], color="tab:green")
        for i, v in zip(x, values):
            ax.annotate("n/a" if v is None else f"{v:.3g}", (i, v or 0), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_ylabel(label, fontsize=8)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(rows)), names, rotation=40, fontsize=7, ha="right")
    axes[0].set_title("the output of each stage, in order (n/a: not measured)", fontsize=9)
    return _png(fig)


# --- documents -------------------------------------------------------------------------------
def table_rows(report: dict, short: bool = False) -> list[list[str]]:
    """The variants table; ``short`` leaves details (n, references) to ``notes``."""
    device = report.get("device") or "device"
    rows = [["variant", "stage", "format", "size", "MACs", "params", "measured p50",
             f"predicted p50 ({device})", "top-1", "fidelity"]]
    for v in report["variants"]:
        measured = [p for p in v["profiles"] if p["latency_p50_ms"] is not None]
        pred = v.get("predicted")
        acc = next((p["accuracy"] for p in reversed(v["profiles"]) if p.get("accuracy")), None)
        fid = next((p["fidelity"] for p in reversed(v["profiles"]) if p.get("fidelity")), None)
        rows.append([
            v["name"] + (" *" if v["pareto"] else ""), v["stage"] or "-",
            f"{v['format']} {v['precision']}", f"{v['size_bytes'] / 1e6:.2f} MB",
            f"{v['macs'] / 1e6:.1f} M" if v["macs"] else "-",
            f"{v['params'] / 1e6:.2f} M" if v["params"] else "-",
            _measured_cell(measured),
            f"{pred['latency_ms']:.2f} ms ±{pred['expected_error_pct']:.0f}%" if pred else "-",
            (f"{acc['top1']:.2f}%" + ("" if short else f" (n={acc['n']})")) if acc else "-",
            "-" if not fid or fid["snr_db"] is None else
            f"{fid['top1_agreement']:.0f}%, {fid['snr_db']:.1f} dB" if short else
            (f"{fid['top1_agreement']:.1f}% agree, {fid['snr_db']:.1f} dB vs "
             f"{Path(fid['reference']).name}")])
    return rows


def _measured_cell(measured: list[dict]) -> str:
    """The last p50 measured, or on several devices, the last on each (device named)."""
    last = {p["device"]: p["latency_p50_ms"] for p in measured}
    if len(last) > 1:
        return ", ".join(f"{ms:.3f} ms ({d})" for d, ms in last.items())
    return f"{measured[-1]['latency_p50_ms']:.3f} ms" if measured else "-"


def notes(report: dict) -> list[str]:
    """Where the latencies in the table come from, one line each."""
    where = sorted({f"{p['measured_on']}, {p['threads']} thread(s), {p['runtime']}"
                    for v in report["variants"] for p in v["profiles"]
                    if p["latency_p50_ms"] is not None})
    out = [f"measured p50: {w}" for w in where]
    if len(report.get("fronts") or {}) > 1:
        out += [f"Pareto front on {d}: {', '.join(names)}"
                for d, names in report["fronts"].items()]
    basis = sorted({(p["device"], p["runtime"], p["precision"], p["threads"], p["basis"])
                    for v in report["variants"] if (p := v.get("predicted"))})
    out += [f"predicted p50 for {d} ({rt} {pr}, {t} thread(s)) by the cost model, {b}"
            for d, rt, pr, t, b in basis]
    return out


def _seconds(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.1f} s"


def markdown(report: dict, images: dict[str, str]) -> str:
    lines = ["# edgekit report", ""]
    for r in report["runs"]:
        lines += [f"Run **{r['name']}**: {r['status']} in {_seconds(r['wall_s'])}, started "
                  f"{r['started']} ({r['run_dir']}).", ""]
        lines += [f"- gate {'pass' if g['passed'] else 'FAIL'}: {g['detail']} ({g['basis']})"
                  for g in r["gates"]] + [""]
    rows = table_rows(report)
    lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    lines += ["", "`*`: on the Pareto front (no other variant is both faster and more "
              "accurate; latency measured where there is a profile, else predicted). "
              "Predicted latencies come from edgekit's cost model with its expected error.", ""]
    lines += [f"- {n}" for n in notes(report)] + [""]
    for name, src in images.items():
        lines += [f"## {TITLES[name]}", "", f"![{TITLES[name]}]({src})", ""]
    return "\n".join(lines)


def to_html(md_report: dict, pngs: dict[str, bytes]) -> str:
    """Self-contained HTML: the same content as the Markdown, images inlined as base64."""
    rows = table_rows(md_report)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>edgekit report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 6px;text-align:left}img{max-width:100%}</style></head><body>",
             "<h1>edgekit report</h1>"]
    for r in md_report["runs"]:
        parts.append(f"<p>Run <b>{html.escape(r['name'])}</b>: {html.escape(r['status'])} in "
                     f"{_seconds(r['wall_s'])}, started {html.escape(r['started'])}.</p><ul>")
        parts += [f"<li>gate {'pass' if g['passed'] else '<b>FAIL</b>'}: "
                  f"{html.escape(g['detail'])} ({html.escape(g['basis'])})</li>"
                  for g in r["gates"]]
        parts.append("</ul>")
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>")
    for row in rows[1:]:
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    parts.append("</table><p>*: on the Pareto front (latency measured where there is a "
                 "profile, else predicted). Predicted latencies come from edgekit's cost model "
                 "with its expected error.</p><ul>")
    parts += [f"<li>{html.escape(n)}</li>" for n in notes(md_report)]
    parts.append("</ul>")
    for name, data in pngs.items():
        parts.append(f"<h2>{TITLES[name]}</h2><img alt='{name}' src='data:image/png;base64,"
                     f"{base64.b64encode(data).decode()}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
