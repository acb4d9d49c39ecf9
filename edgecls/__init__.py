"""edgecls: train, quantise and run small image classifiers on Pi-class CPUs."""

__version__ = "0.1.0"
