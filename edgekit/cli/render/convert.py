"""What ``edgekit quantize`` and ``edgekit export`` print (the commands are made from the
stages' options models: ``edgekit.stages.convert``)."""

from __future__ import annotations

from .._common import console, fmt_bytes


def render(art) -> None:
    """What quantize and export wrote, and the checks made on it."""
    from ...core.preprocessing import describe

    m = art.meta
    io = m.get("input", {})
    console.print(f"wrote {art.path} ({m.get('precision')}, {fmt_bytes(m['size_bytes'])}, "
                  f"input {io.get('shape')} {io.get('dtype')})")
    console.print(f"  preprocessing: {describe(m.get('preprocessing'))}")
    if m.get("check"):
        console.print(f"  outputs match Keras on {m['check']['inputs']} inputs "
                      f"(max |diff| {m['check']['max_abs_diff_vs_keras']:.2g})")
    fid = m.get("fidelity_on_calibration")
    if fid:
        console.print(f"  agrees with the float model on {fid['top1_agreement']:.1f}% of "
                      f"{fid['n']} calibration inputs (output SNR {fid['snr_db'] or 0:.1f} dB)")
        for who, reasons in (fid.get("degenerate") or {}).items():
            who = "quantized model" if who == "model" else "float model"
            console.print(f"  [red]this check is NOT MEANINGFUL: the {who}'s "
                          f"{'; '.join(reasons)}[/]")
    acc = m.get("accuracy_aware")
    if acc:
        console.print(f"  top-1 on {acc['data']}: float {acc['float_top1']:.2f}%, "
                      f"quantized {acc['top1']:.2f}% (drop {acc['drop']:.2f} pt, limit "
                      f"{acc['max_drop']:.2f}); "
                      + (f"after {acc['qat']['epochs']} epoch(s) of quantization-aware training "
                         f"({acc['qat']['model']})" if acc.get("qat") else
                         f"{len(acc['float_layers'])} layer(s) kept in float")
                      + ("" if acc["met"] else " -- LIMIT NOT MET, best achievable written"))
        cost = acc.get("latency_cost")
        if cost:
            console.print(f"  latency cost of the float layers: {cost['mixed_ms']:.2f} ms vs "
                          f"{cost['int8_ms']:.2f} ms fully int8 ({cost['slowdown']:.2f}x, "
                          f"measured on {cost['measured_on']})")
    islands = (m.get("stage", {}).get("config") or {}).get("float_islands")
    if islands:
        console.print("  in float between int8 ops (XNNPACK has no int8 kernel for them): "
                      + ", ".join(f"{n} {kind}" for kind, n in islands.items()))
    sc = m.get("speed_check")
    if sc:
        console.print(f"  {sc['candidate_ms']:.2f} ms vs {sc['baseline']} {sc['baseline_ms']:.2f} ms "
                      f"({sc['speedup']:.2f}x, {sc['threads']} thread(s), {sc['runtime']}, "
                      f"measured on {sc['measured_on']})")
    for precision, cmd in (m.get("trtexec") or {}).items():
        console.print(f"  TensorRT {precision} on the device: {cmd}", soft_wrap=True)
    for issue in (m.get("compat") or {}).get("unsupported", [])[:10]:
        console.print(f"  [yellow]GPU delegate:[/] {issue['op']} {issue['name']}: {issue['reason']}")
