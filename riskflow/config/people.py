"""The people directory: who each person is in each chat app, how to reach them, and what they
may do at which site (`config/people.yaml`).

```yaml
people:
  - id: wang.gong                 # riskflow's id for the person (letters, digits, `_.@-`)
    name: 王工                     # shown on cards and in the console ("认领: 王工 14:03")
    console_user: wang            # optional: the console account that is this person
    roles:                        # per site id: viewer | operator | admin; "*": every site
      plant-a: operator
      "*": viewer
    dingtalk: {userid: manager4220, unionid: Xb3lNi...}
    feishu: {user_id: 5d9bdxxx, union_id: on_94a1..., open_id: ou_7d8a...}
    wecom: {userid: WangGong}
    phone: "+8613800000000"       # E.164
    email: wang@example.com
```

A chat app names the person who pressed a button by its own ids: DingTalk a `userId` (the
organisation's staff id) and sometimes a `unionId`; Feishu an `open_id` (one per app), a
`union_id` (one per developer) and, with the permission, a `user_id` (one per tenant); WeCom
the member's `userid` (docs/design/chat-app-actions.md). `PeopleDirectory.person` finds the
person by any id the directory holds for them; an id never belongs to two people (a
`ValueError` names both). Roles are the console's (`Role`: viewer < operator < admin); a site
without an entry, and no `"*"`, gives the person no role there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from riskflow.config.console import Role

EVERY_SITE = "*"

Vendor = Literal["dingtalk", "feishu", "wecom"]
VENDORS: tuple[Vendor, ...] = ("dingtalk", "feishu", "wecom")
# The ids of a person each vendor may send, strongest first (the one a click carries when the
# app has the permission to see it).
ID_KINDS: dict[Vendor, tuple[str, ...]] = {
    "dingtalk": ("userid", "unionid"),
    "feishu": ("user_id", "union_id", "open_id"),
    "wecom": ("userid",),
}
# WeCom userids are not case-sensitive (its API answers them lower-cased, document/path/90236).
_FOLDED = {"wecom": str.casefold}


def _same(value: str) -> str:
    return value


VendorId = str  # an id as the vendor sends it: non-empty, at most 128 characters
_ID = Field(default=None, min_length=1, max_length=128, pattern=r"^\S+$")


class DingTalkIds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    userid: str | None = _ID
    unionid: str | None = _ID


class FeishuIds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str | None = _ID
    union_id: str | None = _ID
    open_id: str | None = _ID


class WeComIds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    userid: str | None = _ID


class Person(BaseModel):
    """One person: ids in each chat app, contacts, and a role per site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    name: str = Field(min_length=1, max_length=64)
    console_user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    roles: dict[str, Role] = Field(default_factory=dict, description='site id or "*" -> role')
    dingtalk: DingTalkIds | None = None
    feishu: FeishuIds | None = None
    wecom: WeComIds | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    email: str | None = Field(default=None, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

    def ids(self, vendor: Vendor) -> list[tuple[str, VendorId]]:
        """The (kind, id) pairs this person has in `vendor`'s app, strongest kind first."""
        held = getattr(self, vendor)
        if held is None:
            return []
        return [(kind, v) for kind in ID_KINDS[vendor] if (v := getattr(held, kind)) is not None]

    def role_at(self, site_id: str) -> Role | None:
        """The person's role at `site_id`: the site's own entry, else `"*"`'s, else none."""
        return self.roles.get(site_id, self.roles.get(EVERY_SITE))

    def may(self, site_id: str, needed: Role) -> bool:
        """True when the person's role at `site_id` includes `needed`."""
        role = self.role_at(site_id)
        return role is not None and role.allows(needed)


class PeopleDirectory(RootModel[list[Person]]):
    """Every person of `config/people.yaml`; ids unique, each chat-app id one person's."""

    root: list[Person] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PeopleDirectory:
        seen: set[str] = set()
        for person in self.root:
            if person.id in seen:
                raise ValueError(f"person id {person.id!r} is listed twice")
            seen.add(person.id)
        owners: dict[tuple[str, str], str] = {}
        for person in self.root:
            for vendor, value in sorted(set(_keys(person))):
                key = (vendor, _FOLDED.get(vendor, _same)(value))
                if key in owners:
                    raise ValueError(
                        f"{vendor} id {value!r} belongs to both {owners[key]!r} and {person.id!r}"
                    )
                owners[key] = person.id
        return self

    def person(self, vendor: Vendor, ids: dict[str, str | None]) -> Person | None:
        """The person a vendor's callback names: `ids` as the callback gives them (kind ->
        id, e.g. Feishu's operator `{"open_id": ..., "union_id": ..., "user_id": ...}`),
        tried strongest kind first; None when the directory knows none of them."""
        fold = _FOLDED.get(vendor, _same)
        for kind in ID_KINDS[vendor]:
            value = ids.get(kind)
            if not value:
                continue
            for person in self.root:
                if (kind, fold(value)) in [(k, fold(v)) for k, v in person.ids(vendor)]:
                    return person
        return None

    def by_id(self, person_id: str) -> Person | None:
        return next((p for p in self.root if p.id == person_id), None)

    def unknown_sites(self, site_ids: Iterable[str]) -> list[str]:
        """`person: site` for each role given for a site that is not configured."""
        known = {*site_ids, EVERY_SITE}
        return [f"{p.id}: {site}" for p in self.root for site in p.roles if site not in known]


def _keys(person: Person) -> list[tuple[str, str]]:
    """What must be unique across people: each vendor's id, per vendor (an open_id and a
    user_id of the same vendor never collide in practice, but one value is one person)."""
    return [(vendor, value) for vendor in VENDORS for _, value in person.ids(vendor)]
