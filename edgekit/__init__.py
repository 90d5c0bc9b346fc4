"""edgekit: fit MobileNet/EfficientNet classifiers to edge devices, compress, export, profile."""

__version__ = "0.1.0"
