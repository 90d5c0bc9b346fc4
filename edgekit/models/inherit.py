"""Weights carried from one Keras model into another where layer names and shapes match
(``scale --from``): how many were copied, and why the others were not."""

from __future__ import annotations


def inherit(src, dst) -> tuple[int, int, list[tuple[str, str]]]:
    """Copy weights layer by layer where the name and every weight shape match: (copied,
    weighted layers, (layer, why not) for each one not copied)."""
    from .load import leaf_layers

    by_name = {layer.name: layer for layer in leaf_layers(src)}
    copied = total = 0
    misses = []
    for layer in leaf_layers(dst):
        weights = layer.get_weights()
        if not weights:
            continue
        total += 1
        other = by_name.get(layer.name)
        if other is None:
            misses.append((layer.name, "no layer of that name"))
            continue
        theirs = other.get_weights()
        if len(theirs) == len(weights) and all(a.shape == b.shape for a, b in zip(theirs, weights)):
            layer.set_weights(theirs)
            copied += 1
        else:
            misses.append((layer.name, f"shapes {[tuple(w.shape) for w in theirs]} there, "
                                       f"{[tuple(w.shape) for w in weights]} here"))
    return copied, total, misses


def why_not(misses: list[tuple[str, str]], n: int) -> str:
    """Why layers were not inherited, in one phrase: how many by missing name, how many by
    shape, with the first of each."""
    by_name = [m for m in misses if m[1] == "no layer of that name"]
    by_shape = [m for m in misses if m[1] != "no layer of that name"]
    parts = []
    if by_name:
        parts.append(f"{len(by_name)} layer name(s) of the zoo's builder not in it, e.g. "
                     f"'{by_name[0][0]}'")
    if by_shape:
        parts.append(f"{len(by_shape)} with other weight shapes, e.g. '{by_shape[0][0]}': "
                     f"{by_shape[0][1]}")
    return f"{n} not inherited: " + "; ".join(parts)
