"""Roles and what each may see: a caseworker their districts, an analyst everything, an admin
the service; scopes widen a caseworker's view to a task (youth)."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("caseworker", "analyst", "admin")


SCOPES = ("youth",)


@dataclass(frozen=True)
class User:
    user: str
    role: str
    districts: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    token_id: str | None = None

    def may_read(self, district: str | None) -> bool:
        """Whether this user may see a person of this district at all."""
        if self.role == "analyst":
            return True
        return self.role == "caseworker" and district is not None and district in self.districts

    def has_scope(self, scope: str | None) -> bool:
        """Whether this user may see a task that needs `scope` (analysts see every task)."""
        return scope is None or self.role == "analyst" or scope in self.scopes
