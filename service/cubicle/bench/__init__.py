"""The benches behind `cubicle bench`: figures measured on a real desktop, never in the library.

Each bench starts a desktop of its own (`cubicle desktop` on a free display) or uses the one
at `--url`, measures, prints a table and writes its figures as JSON under `bench/results/`.

- `latency`: cubicle's HTTP API beside the reference demo's way (scrot, convert, one
  xdotool process per action, a fixed 2 s wait), round for round on the same display, and
  the idle desktop's memory (`cubicle bench`).
- `agent`: what the agent worker itself costs per step over a scripted 100-step run, and
  how its requests grow (`cubicle bench --agent`).
- `load`: many concurrent clients beside one, and with `--faults` the desktop's parts
  killed under that load and their recovery timed (`cubicle bench --load [--faults]`).

What they share sits in modules of its own: `desktops` (the desktop under test, started or
attached, always stopped), `processes` (its processes as /proc shows them), `baseline` (the
reference demo's commands) and `report` (milliseconds, percentiles, tables, the machine
block, JSON). Nothing outside this package imports it but the command line, and only when
a bench is asked for: the benches pull in the agent and the SDK, which the library needs
nowhere else.
"""
