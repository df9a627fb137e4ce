"""The one exception type that means "the user gave us something we cannot use"."""


class UserError(Exception):
    """A problem with the user's input (a file, a flag, a config value).

    The message is one line that names the problem and, where there is one, the file.
    The CLI prints it as ``dsnot-ref: error: <message>`` and exits with status 2, no traceback.
    Raise it at the edge where the bad input is first seen; never for a bug in our own code.
    """

    def __str__(self) -> str:
        # A file name may hold a newline; the message stays one line.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")
