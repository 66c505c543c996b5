"""OSWorld's in-desktop protocol: the HTTP routes that OSWorld's own client (`desktop-env`'s
PythonController and SetupController) calls on port 5000 of the machine it evaluates, served
by `cubicle osworld` on a cubicle desktop, so that OSWorld's DesktopEnv runs its tasks here
unchanged.

Off by default: `cubicle desktop --osworld` (or CUBICLE_OSWORLD=1, the image's setting) starts
it under supervisord beside the runner, as the desktop user, with the desktop's DISPLAY: what
OSWorld's /execute runs (`python -c "import pyautogui; ..."`) must act on the screen as the
person at the desktop would.

No credentials, by OSWorld's design: its client sends none, and /execute runs any code it is
given as the desktop user. So the port is never published: on a host it listens on 127.0.0.1,
in the image inside the desktop's private network namespace, which only the fleet's host (or
the cluster) reaches. The server holds no secret either: it does not know the desktop's API
token and needs none; it captures the screen and reads windows over its own X connection, and
reads the accessibility tree from the desktop user's own bus.

    app.py                 the routes, OSWorld's paths, methods, bodies and answers
    commands.py            /execute, /setup/launch, /run_python, /run_bash_script
    windows.py             wmctrl's window matching, and open_file's wait for a title
    accessibility_xml.py   cubicle's accessibility tree as OSWorld's XML (its namespaces)
    terminal.py            the terminal whose text GET /terminal answers (xterm on tmux)
    recording.py           /start_recording and /end_recording (ffmpeg, x11grab)
"""
