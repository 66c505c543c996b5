"""The browser toolset's rules on their own (no desktop): which URLs URLRules lets through,
which desktop paths DesktopFilePolicy lets file_upload send, and how key names translate."""

from __future__ import annotations

import pytest
from anthropic.tools import ToolError
from anthropic.tools.browser import BetaURLContext

from cubicle.anthropic import DesktopFilePolicy, URLRules
from cubicle.anthropic.browser_keys import (
    chord_keys,
    playwright_keys,
    playwright_modifiers,
)
from cubicle.anthropic.browser_policy import navigable_url

CONTEXT = BetaURLContext(member="navigate", tool_use_id="toolu_1")


@pytest.mark.parametrize(("url", "denied"), [
    ("https://example.com/", True),
    ("https://EXAMPLE.com/page", True),
    ("https://www.example.com/", False),  # a host pattern names that host only
    ("https://shop.bank.test/", True),  # *.bank.test
    ("https://bank.test/", False),
    ("http://127.0.0.1:8000/x", True),  # host and port
    ("http://127.0.0.1:8001/x", False),
    ("https://docs.test/private/area", True),  # a URL prefix
    ("https://docs.test/public", False),
    ("about:blank", False),
])
def test_url_rules_deny_hosts_patterns_ports_and_prefixes(url, denied):
    rules = URLRules(deny=["example.com", "*.bank.test", "127.0.0.1:8000", "https://docs.test/private/"])
    assert rules.denies(url) is denied


def test_an_allow_list_refuses_everything_else_but_hostless_pages():
    rules = URLRules(allow=["*.example.com", "example.com"], deny=["https://example.com/admin"])
    assert not rules.denies("https://example.com/")
    assert not rules.denies("https://a.b.example.com/")
    assert rules.denies("https://example.org/")
    assert rules.denies("https://example.com/admin/users")  # deny wins
    assert rules.denies("file:///etc/passwd")
    assert not rules.denies("data:text/html,hi") and not rules.denies("about:blank")


def test_url_rules_as_the_sdk_url_policy_refuse_with_a_tool_error():
    rules = URLRules(deny=["example.com"])
    assert rules(CONTEXT, "example.org") is None
    with pytest.raises(ToolError, match="not allowed here"):
        rules(CONTEXT, "example.com/page")  # as the model wrote it: no scheme
    with pytest.raises(TypeError):
        URLRules(deny="example.com")  # type: ignore[arg-type]


def test_navigable_url_adds_a_scheme():
    assert navigable_url("example.com/x") == "https://example.com/x"
    assert navigable_url("localhost:8000") == "http://localhost:8000"
    assert navigable_url("127.0.0.1/x") == "http://127.0.0.1/x"
    assert navigable_url("  http://a.test ") == "http://a.test"
    assert navigable_url("data:text/plain,x") == "data:text/plain,x"


def test_the_desktop_file_policy_checks_paths_as_text():
    policy = DesktopFilePolicy()
    with pytest.raises(ToolError, match="not known"):
        policy.resolve_upload_paths(CONTEXT, ["/home/user/a.txt"])  # no home yet: nothing passes
    policy.bind_desktop("/home/user", "/home/user/.config/cubicle-chromium")
    assert policy.resolve_upload_paths(CONTEXT, ["/home/user/a.txt", "/home/user//b/./c.pdf"]) == [
        "/home/user/a.txt", "/home/user/b/c.pdf"]
    for path, reason in [("/etc/passwd", "outside"), ("/home/user/../root/x", "'..'"), ("a.txt", "absolute"),
                         ("/home/username/x", "outside"), ("/home/user/.config/cubicle-chromium/Default/Cookies",
                                                           "profile"), ("", "empty")]:
        with pytest.raises(ToolError, match=reason):
            policy.resolve_upload_paths(CONTEXT, [path])
    with pytest.raises(ToolError, match="not document ids"):
        policy.resolve_upload_documents(CONTEXT, ["file_1"])
    assert policy.is_path_visible("/home/user/Downloads/x.csv") is False  # download paths hidden by default


def test_given_roots_stay_and_download_paths_can_be_shown():
    policy = DesktopFilePolicy(["/srv/uploads"], expose_download_paths=True)
    policy.bind_desktop("/home/user", "/home/user/.config/cubicle-chromium")
    assert policy.roots == ("/srv/uploads",)
    assert policy.resolve_upload_paths(CONTEXT, ["/srv/uploads/x"]) == ["/srv/uploads/x"]
    with pytest.raises(ToolError):
        policy.resolve_upload_paths(CONTEXT, ["/home/user/x"])
    assert policy.is_path_visible("/srv/uploads/report.csv") is True
    assert policy.is_path_visible("/home/user/Downloads/report.csv") is False
    with pytest.raises(ValueError):
        DesktopFilePolicy(["relative/folder"])


def test_key_names_translate_to_playwright():
    assert playwright_keys("ctrl+a BackSpace Return shift+Tab Page_Down KP_Enter space cmd+shift+p ctrl++") == [
        "Control+a", "Backspace", "Enter", "Shift+Tab", "PageDown", "Enter", "Space", "Meta+Shift+p", "Control++"]
    assert chord_keys("ctrl+shift+Left") == ["Control", "Shift", "ArrowLeft"]
    assert playwright_modifiers("ctrl+alt") == ["Control", "Alt"] and playwright_modifiers(None) == []
    for bad, reason in [("Frobnicate", "Unknown key"), ("ctrl+", "empty part"), ("a+b", "not a modifier"), ("", "No key")]:
        with pytest.raises(ToolError, match=reason):
            playwright_keys(bad)
