"""Access to an environment over HTTP and the command line: API keys (list, revoke), the environment's
access settings (customer tokens, allowed browser origins) and the CORS middleware that applies them."""
