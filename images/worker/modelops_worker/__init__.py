"""modelops-worker: the code that runs inside the pods the operator creates (train, verify).

It is the only part of modelops that imports torch. Its contract with the operator lives in
`modelops.api.runconfig` (environment, run configuration, result, exit codes) and docs/worker.md.
"""

from modelops import __version__

__all__ = ["__version__"]
