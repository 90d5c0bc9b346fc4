"""What ``edgekit zoo build`` prints."""

from __future__ import annotations

from .._common import console, fmt_count


def render(art) -> None:
    """The model built, and the check of pretrained weights against their framework."""
    meta = art.meta
    spec, weights, prep = meta["spec"], meta.get("pretrained"), meta.get("preprocessing")
    console.print(f"wrote {art.path}: {spec['name']} width {spec['width']} depth {spec['depth']} "
                  f"resolution {spec['resolution']}, {fmt_count(meta['params'])} params, "
                  f"{spec['classes']} classes")
    if weights is not None:
        check = weights["check"]
        console.print(f"weights: {weights['source']} ({weights['file']}); input (pixel - "
                      f"{prep['mean']}) / {prep['std']}, centre crop {prep['crop']}")
        console.print(f"checked against {check['reference']} on {check['n_images']} images "
                      f"({check['images']}): max |difference| of the probabilities "
                      f"{check['max_abs_diff_probs']:.2g} (limit {check['tolerance']:g}); "
                      f"top-1 {'; '.join(check['top1'])}")
