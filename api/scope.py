"""What a user may see, applied in every query on the server: a row outside the scope is never read,
so asking for it by id gives 404 exactly like a row that does not exist."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from anxin.db import Institution
from api.models import ContractorInstitution, Role, User


@dataclass(frozen=True, slots=True)
class Scope:
    role: Role
    institutions: frozenset[str] | None  # None: every institution, and rows of no institution (admin)
    districts: frozenset[str] | None = None  # the commission's districts; None: not limited by district

    @property
    def everything(self) -> bool:
        return self.institutions is None

    @property
    def can_act(self) -> bool:
        """The commission reviews; it does not acknowledge, dispatch or change anything."""
        return self.role is not Role.COMMISSION

    def where(self, column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None]) -> ColumnElement[bool]:
        """A WHERE clause limiting ``column`` (an institution id) to the scope."""
        if self.institutions is None:
            return true()
        if not self.institutions:
            return false()
        return column.in_(sorted(self.institutions))

    def allows(self, institution_id: str | None) -> bool:
        return self.institutions is None or (institution_id is not None and institution_id in self.institutions)


def scope_of(s: Session, user: User) -> Scope:
    role = Role(user.role)
    if role is Role.ADMIN:
        return Scope(role, None)
    if role is Role.INSTITUTION:
        return Scope(role, frozenset([user.institution_id] if user.institution_id else []))
    if role is Role.CONTRACTOR:
        ids = s.scalars(select(ContractorInstitution.institution_id)
                        .where(ContractorInstitution.contractor_id == user.contractor_id))
        return Scope(role, frozenset(ids))
    districts = frozenset(user.districts or [])
    found = s.scalars(select(Institution.id).where(Institution.district.in_(sorted(districts)))) if districts else None
    return Scope(role, frozenset(found or ()), districts)
