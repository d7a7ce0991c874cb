"""The ``proofmarket`` command line (``cli.entry`` is the console script, ``cli.main`` the app)."""

# the commands ``cli.main`` defines itself: ``cli.entry`` runs them without loading every other command first
OWN_COMMANDS = ("demo", "compile", "prove", "models", "export")
lean = False  # set by ``cli.entry`` before it imports ``cli.main`` for one of OWN_COMMANDS
