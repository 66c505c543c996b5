# cubicle's two images, built from this checkout:
#
#   docker build --target desktop -t cubicle-desktop .   # X, the apps, the server: port 8000
#   docker build --target agent   -t cubicle-agent   .   # no X: the agent worker (port 8001)
#                                                          # and the fleet (cubicle fleet serve, 8002)
#
# The desktop image runs as two containers sharing one network and IPC namespace (see
# docker-compose.yml): `session` (X, the apps, VNC, the runner) as the user cubicle, and
# `server` (the API, which holds the token) as the user cubicle-server, so that no program on
# the desktop can read the token, the server's memory or its logs.
#
# docker-compose.yml builds and runs them. Build arguments:
#   BASE_IMAGE    the Debian 12 image to start from (default debian:bookworm-slim)
#   WITH_OFFICE   1 (default) installs LibreOffice Calc and Writer; 0 leaves them out, which
#                 makes the desktop image much smaller
#   WIDTH HEIGHT  the desktop's default screen size (also settable when the container starts)
#   PIP_CERT      a CA bundle for pip to trust, when the build reaches PyPI through an
#                 intercepting proxy: a path inside BASE_IMAGE (a build has no host mount);
#                 empty means pip's own. docker-compose.yml passes $CUBICLE_PIP_CERT.
ARG BASE_IMAGE=debian:bookworm-slim

# -- the Python package in a virtualenv, made once and copied into both images --------------
FROM ${BASE_IMAGE} AS venv
# pip reads PIP_CERT from the environment, where build arguments are during RUN; empty is ignored.
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/cubicle
# The dependencies first, read from pyproject.toml, so that a change to the source alone
# reuses this layer.
# One virtualenv serves both images, so it has the agent, fleet and osworld extras; PyAutoGUI,
# which OSWorld's /execute imports, comes without its declared dependencies (see the file).
COPY pyproject.toml desktop/osworld-requirements.txt /src/
RUN python3 -c 'import tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; e = p["optional-dependencies"]; \
print("\n".join(p["dependencies"] + e["agent"] + e["fleet"] + e["osworld"]))' > /tmp/requirements.txt \
 && /opt/cubicle/bin/pip install --quiet -r /tmp/requirements.txt \
 && /opt/cubicle/bin/pip install --quiet --no-deps -r /src/osworld-requirements.txt
COPY README.md /src/
COPY service /src/service
COPY desktop /src/desktop
# Not editable: the wheel carries its own copy of desktop/ (cubicle/_desktop), so /src can go.
RUN /opt/cubicle/bin/pip install --quiet --no-deps /src && rm -rf /src

# -- target "desktop": Xvfb, openbox, tint2, x11vnc, the apps and the server ------------------
FROM ${BASE_IMAGE} AS desktop
ARG WITH_OFFICE=1
ARG WIDTH=1280
ARG HEIGHT=800
COPY desktop/packages.txt desktop/image/firefox-policies.json desktop/image/firefox-prefs.js \
     desktop/image/libreoffice-quiet-start.xcd /tmp/image/
# The same package list as scripts/setup installs. Two users: `cubicle` (uid 1000), the
# desktop's, owns /var/lib/cubicle (the session's logs) and its home /var/lib/cubicle/home
# (HOME of every program on the desktop); `cubicle-server` (uid 1001) owns
# /var/lib/cubicle-server (the server's token file and logs), closed to everyone else.
# Xvfb run by anyone but root cannot create /tmp/.X11-unix itself. There is no sudo.
RUN set -eu; cd /tmp/image \
 && sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' packages.txt > wanted \
 && if [ "$WITH_OFFICE" = 0 ]; then sed -i '/^libreoffice/d' wanted; fi \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 $(cat wanted) \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && install -D -m 644 firefox-policies.json /usr/lib/firefox-esr/distribution/policies.json \
 && install -D -m 644 firefox-prefs.js /etc/firefox-esr/cubicle.js \
 && if [ -d /usr/lib/libreoffice/share/registry ]; then \
        install -m 644 libreoffice-quiet-start.xcd /usr/lib/libreoffice/share/registry/; fi \
 && cd / && rm -rf /tmp/image \
 && install -d -m 1777 /tmp/.X11-unix \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /var/lib/cubicle/home --shell /bin/bash cubicle \
 && useradd --uid 1001 --user-group --no-create-home --home-dir /var/lib/cubicle-server --shell /usr/sbin/nologin cubicle-server \
 && install -d -o cubicle -g cubicle /var/lib/cubicle /var/lib/cubicle/home \
 && install -d -m 700 -o cubicle-server -g cubicle-server /var/lib/cubicle-server
COPY --from=venv /opt/cubicle /opt/cubicle
COPY desktop/image/entrypoint /usr/local/bin/cubicle-desktop
ENV PATH=/opt/cubicle/bin:$PATH LANG=C.UTF-8 WIDTH=${WIDTH} HEIGHT=${HEIGHT}
USER cubicle
WORKDIR /var/lib/cubicle/home
EXPOSE 8000
# urllib fails on anything but a 2xx: /health answers 503 until X, the window manager and
# VNC are all up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CUBICLE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/cubicle-desktop"]

# -- target "agent": the worker service, no X -----------------------------------------------
FROM ${BASE_IMAGE} AS agent
# The console's live view is noVNC, and a human's keys are read with its keysym table: only
# the files of Debian's novnc package, without its dependencies (nodejs, numpy, websockify),
# which serve nothing here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \
 && cd /tmp && apt-get download novnc && dpkg-deb -x novnc_*.deb /tmp/novnc \
 && mv /tmp/novnc/usr/share/novnc /usr/share/novnc && rm -rf /tmp/novnc /tmp/novnc_*.deb && cd / \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /var/lib/cubicle --shell /usr/sbin/nologin cubicle \
 && install -d -o cubicle -g cubicle /var/lib/cubicle /var/lib/cubicle/runs
COPY --from=venv /opt/cubicle /opt/cubicle
ENV PATH=/opt/cubicle/bin:$PATH LANG=C.UTF-8 \
    CUBICLE_RUNS_DIR=/var/lib/cubicle/runs CUBICLE_DESKTOP_URL=http://desktop:8000
USER cubicle
WORKDIR /var/lib/cubicle
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=4)"]
CMD ["cubicle", "agent", "serve", "--host", "0.0.0.0", "--port", "8001"]
