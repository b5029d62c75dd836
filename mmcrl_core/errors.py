"""Errors that mean "the user gave us something we cannot use".

The CLI prints these as one clear message and exits 2; the app shows them as st.error. Anything
else is a bug and keeps its traceback.
"""


class UserInputError(ValueError):
    """Bad input from the user: the message names the file / column / row and what to do."""
