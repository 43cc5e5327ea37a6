"""The web console: server-rendered pages (Jinja2) with small scripts, every asset served from here."""
