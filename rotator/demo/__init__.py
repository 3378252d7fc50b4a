"""``rotator demo``: the real daemon rotating against a local OpenBao dev server and the
Intercom emulator, with a consumer that signs and confirms throughout."""

from rotator.demo.scenario import DemoSetupError, run_demo

__all__ = ["DemoSetupError", "run_demo"]
