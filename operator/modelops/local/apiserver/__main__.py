"""`python -m modelops.local.apiserver --dir DIR [--port 0]`: run the local API server."""

from modelops.local.apiserver.main import main

if __name__ == "__main__":
    main()
