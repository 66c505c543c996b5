"""OSWorld on cubicle, the client's side: cubicle desktops for OSWorld's own `DesktopEnv`
(the `desktop-env` package), so that its tasks run unchanged and many at once.

    provider.py   the provider desktop-env asks for machines (start, address, reset, stop)
    sources.py    where the desktops come from: the fleet, the Docker engine, or this host

The desktop's side, the protocol OSWorld's client speaks to port 5000 of each machine, is
cubicle.server.osworld (`cubicle desktop --osworld`). This package imports nothing of X or of the
server: it runs wherever OSWorld runs.
"""
