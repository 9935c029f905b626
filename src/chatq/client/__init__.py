"""The command-line client: chatq ask, submit, get, wait, cancel, ls and batch run (DESIGN §7.5)."""
