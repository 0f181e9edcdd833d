"""The error pillar 3 raises for settings, allocations and adapter files a user can fix."""

from autohm.errors import AutohmError


class PeftError(AutohmError, ValueError):
    """A PEFT setting, allocation or adapter file that cannot be used; the message names it."""
