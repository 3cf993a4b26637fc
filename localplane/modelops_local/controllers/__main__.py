"""Entry point: `python -m modelops_local.controllers --kubeconfig DIR/kubeconfig --dir DIR`."""

from modelops_local.controllers.manager import main

if __name__ == "__main__":
    raise SystemExit(main())
