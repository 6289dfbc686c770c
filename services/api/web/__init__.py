"""The web application: page shells (Jinja2) and static assets; the pages read /api/v1 themselves."""
