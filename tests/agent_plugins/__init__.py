"""A plug-in package as a third party would write it: agents defined outside think2seg,
loaded by import path (``tests.agent_plugins.boxes:PluginBoxAgent``) or through a
``think2seg.agents`` entry point that the tests register."""

__version__ = "0.7.1"
