"""The front door: command line, the pipeline that chains the layers, reports.

May import every layer (``market``, ``solvers``, ``provisioning``). Nothing imports it.
"""

__version__ = "0.1.0"
