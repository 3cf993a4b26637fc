"""Entry point: `python -m modelops.local.controllers --kubeconfig DIR/kubeconfig --dir DIR`."""

from modelops.local.controllers.manager import main

if __name__ == "__main__":
    raise SystemExit(main())
