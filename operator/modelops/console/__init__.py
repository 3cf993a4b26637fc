"""`modelops console`: a read-only web console over what the operator reconciles.

It runs as whoever starts it, through their kubeconfig (or, in a cluster, a read-only
ServiceAccount), and only ever gets, lists and reads pod logs and events: it cannot change anything,
and it never reads Secrets. Pages are rendered on the server (each a URL one can share, readable
without JavaScript); a few lines of vanilla JavaScript keep them live over server-sent events.

Modules: `reader` (the API calls, cached and read-only), `views` (pure functions from Kubernetes
objects to page models, where the tests go), `charts` (inline SVG), `pages` (HTML), `server`
(aiohttp: routes, the event stream, the command line).
"""
