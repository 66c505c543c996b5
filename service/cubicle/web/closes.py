"""WebSocket close codes of every cubicle service, defined once.

The 4xxx codes mirror the HTTP status a plain request would get."""

NORMAL = 1000  # one side ended the session
POLICY = 1008  # the client sent something the route does not take
ERROR = 1011  # a fault on the server's side
TRY_AGAIN = 1013  # what the route relays to cannot be reached now: retry shortly
UNAUTHORIZED = 4401  # missing or wrong token
NOT_FOUND = 4404  # no such run, desktop ...
NOT_LIVE = 4409  # it exists but is not live (a run that has ended)
