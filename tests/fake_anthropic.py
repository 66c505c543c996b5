"""The scripted Messages API server, under the name the tests use."""

from cubicle.agent.scripted_api import Error, last_image, message, text, tool_results, tool_use
from cubicle.agent.scripted_api import ScriptedAPI as FakeAnthropic

__all__ = ["Error", "FakeAnthropic", "last_image", "message", "text", "tool_results", "tool_use"]
