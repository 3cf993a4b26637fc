"""`python -m modelops_local.apiserver --dir DIR [--port 0]`: run the local API server."""

from modelops_local.apiserver.main import main

if __name__ == "__main__":
    main()
