"""Dashboard pages, one small router per page group."""
