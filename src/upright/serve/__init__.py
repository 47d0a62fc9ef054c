"""``upright serve``: the HTTP API and its page (an optional extra: pip install -e ".[serve]")."""
