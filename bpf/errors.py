"""The one exception users see from the kernel side."""


class PreflightError(RuntimeError):
    """Something the user can fix stops the sampler; the message is one line: cause and fix."""
