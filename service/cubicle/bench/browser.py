"""The browser toolset's `read_page` on a page of 1,000 elements: what a model waits for.

Each round reloads the page (a fresh document: every element gets its ref anew, the costly
case) and times one `read_page` call through the SDK's own pipeline, the browser_state
report included, as a tool runner would make it. Run it on a desktop with:

    python -m cubicle.bench.browser [--url http://127.0.0.1:8000] [--rounds 9] [--elements 1000]

(the token from $CUBICLE_TOKEN; without --url a desktop is started and stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from typing import Any

from .desktops import Desktop, free_ports, with_desktop
from .report import summary_ms


def element_page(elements: int) -> str:
    """A data: URL of a page with `elements` elements in a form-like mix: headings, text,
    links, buttons, inputs and selects, nested in sections (no network needed)."""
    parts = ["<title>read_page bench</title><main>"]
    kinds = [
        lambda n: f"<h3>Section heading {n}</h3>",
        lambda n: f"<p>Paragraph {n} with some ordinary text in it.</p>",
        lambda n: f'<a href="#item{n}">Link number {n}</a>',
        lambda n: f"<button>Button {n}</button>",
        lambda n: f'<label>Field {n} <input name="field{n}" value="value {n}"></label>',
        lambda n: f'<select name="choice{n}"><option>One</option><option>Two</option></select>',
    ]
    count = 1  # <main>
    n = 0
    while count < elements:
        if n % 20 == 0:
            parts.append("</section><section>" if n else "<section>")
            count += 1
        piece = kinds[n % len(kinds)](n)
        parts.append(piece)
        count += piece.count("<") - piece.count("</")  # opening tags: elements
        n += 1
    parts.append("</section></main>")
    return "data:text/html;charset=utf-8," + urllib.parse.quote("".join(parts))


def measure_read_page(url: str, token: str | None, elements: int = 1000, rounds: int = 9) -> dict[str, Any]:
    """Seconds per read_page on a fresh `elements`-element page, `rounds` times, on the desktop at `url`."""
    from anthropic.tools.browser import BetaToolsetCallContext

    from cubicle.anthropic import CubicleBrowser

    page = element_page(elements)
    context = BetaToolsetCallContext(tool_use=None)
    samples: list[float] = []
    with CubicleBrowser(url, token) as browser:
        browser.call(context, "navigate", {"url": page})
        browser.call(context, "read_page", {"filter": "all"})  # warm: the page agent compiled once
        for _ in range(rounds):
            browser.call(context, "navigate", {"url": "reload"})
            started = time.perf_counter()
            content = browser.call(context, "read_page", {"filter": "all"})
            samples.append(time.perf_counter() - started)
        listed = next(block["text"] for block in content if block["type"] == "text")
    return {"elements": elements, "rounds": rounds, "refs_listed": listed.count("[ref_"),
            "characters": len(listed), "read_page": summary_ms(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cubicle.bench.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running desktop's URL (default: start one)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--elements", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.url is None:
        os.environ.setdefault("CDP_PORT", str(free_ports(1)[0]))  # the started desktop's Chromium: a free port

    def body(desktop: Desktop) -> int:
        result = measure_read_page(desktop.url, desktop.token, args.elements, args.rounds)
        timing = result["read_page"]
        print(f"read_page on {result['elements']} elements ({result['refs_listed']} refs, {result['characters']:,} "
              f"characters): median {timing['median_ms']:.1f} ms, {timing['min_ms']:.1f}-{timing['max_ms']:.1f} ms "
              f"over {result['rounds']} rounds")
        print(json.dumps(result), file=sys.stderr)
        return 0

    return with_desktop(args.url, body)


if __name__ == "__main__":
    sys.exit(main())
