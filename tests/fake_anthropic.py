"""The scripted Messages API server, under the name the tests use."""

from cubicle.agent.scripted_api import Error, ScriptedAPI as FakeAnthropic, last_image, message, text, tool_results, tool_use

__all__ = ["Error", "FakeAnthropic", "last_image", "message", "text", "tool_results", "tool_use"]
