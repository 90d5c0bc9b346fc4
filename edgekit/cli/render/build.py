"""What ``edgekit zoo build`` prints."""

from __future__ import annotations

from .._common import console, fmt_count


def render(art) -> None:
    """The model built, and the check of pretrained weights against their framework."""
    output = art.path
    family, classes, weights = art.meta["spec"]["name"], art.meta["spec"]["classes"], \
        art.meta.get("pretrained")
    spec = art.meta["spec"]
    console.print(f"wrote {output}: {family} width {spec['width']} depth {spec['depth']} "
                  f"resolution {spec['resolution']}, {fmt_count(art.meta['params'])} params, "
                  f"{classes} classes")
    if weights is not None:
        rec, prep = art.meta["pretrained"], art.meta["preprocessing"]
        check = rec["check"]
        console.print(f"weights: {rec['source']} ({rec['file']}); input (pixel - "
                      f"{prep['mean']}) / {prep['std']}, centre crop {prep['crop']}")
        console.print(f"checked against {check['reference']} on {check['n_images']} images "
                      f"({check['images']}): max |difference| of the probabilities "
                      f"{check['max_abs_diff_probs']:.2g} (limit {check['tolerance']:g}); "
                      f"top-1 {'; '.join(check['top1'])}")

