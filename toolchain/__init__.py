"""edgec: plan, compress, export and measure transformers for edge devices."""

__version__ = "0.1.0"
