"""Holds `sitecustomize.py`, which the local kubelet puts on every container's PYTHONPATH.

This directory is the PYTHONPATH entry; nothing here is meant to be imported by the operator.
"""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
