"""The service's own database (sessions, languages, follow-ups) and its migrations."""
