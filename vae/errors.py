"""The one exception type that reaches the user as a single line, not a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad params, missing data, no network).

    The message must name the problem and the fix; ``vae.cli.run_stage`` prints
    it as one line and exits non-zero.
    """
