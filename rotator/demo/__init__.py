"""``rotator demo``: the real daemon rotating against a local OpenBao dev server and the
Intercom emulator, with a consumer that signs and confirms throughout."""

from rotator.demo.scenario import run_demo

__all__ = ["run_demo"]
