"""Desktops on demand: `cubicle fleet serve` creates, proxies and reaps many isolated desktops,
on the Docker engine or on Kubernetes.

    service.py     the app: management routes (routes.py), the proxy (proxy.py), auth (auth.py)
    manager.py     the desktops and their lifecycle: create (cold or from the warm pool), reset,
                   keepalive, delete, the reaper, re-adoption after a restart
    backends/      where desktops run: docker.py (the Docker Engine API), kubernetes.py (Pods)
    models.py      the API's bodies
    client.py      FleetClient, for the worker and anyone else

Nothing is imported here: the worker imports the client without the engines' SDKs.
"""
