"""Who may do what: roles, tokens, and the audit trail of what they did."""
