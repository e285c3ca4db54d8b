"""What a path parameter may hold: one grammar per parameter, checked before anything trusts it.

A path value is authorized as part of one resource (``delete_member`` on
image A) and then sent on. Any hop between the gateway and the backend that
decodes and normalizes paths (nginx with ``proxy_pass http://glance/;``)
reads ``..%2F..%2FB`` as two steps up and a DELETE of image B. So a value
must be something that every such hop reads as the one segment the gateway
authorized: never a dot segment, nothing that decodes to ``/`` or ``\\``,
no ``%`` left after one decoding (a second hop would decode it again), no
``?`` or ``#`` (a hop that decodes them ends the path there), no control
character, and bounded. Values are matched decoded, as aiohttp hands them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from gateway.subject_ids import SUBJECT_ID

# Glance ids are UUIDs in canonical form; other spellings uuid.UUID accepts
# (braces, urn:, no hyphens) would name the same image twice in our caches.
# Use fullmatch: "$" would also match before a final newline ("<uuid>%0a").
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Free text as Glance stores it (a tag, a metadata definition's name): any
# character but the ones a hop may read as path structure or cut the path
# at ("/", "\\", "?", "#", and ";" where path parameters are stripped), "%"
# and controls (C0, DEL, C1); not starting with "." so that no value is a
# dot segment (".", "..", or "..;" which Tomcat-style servers read as "..").
_TEXT = re.compile(r"(?!\.)[^\x00-\x1f\x7f-\x9f/\\%?#;]+")
# A store id is an identifier in Glance's configuration (a key of
# ``enabled_backends``, the name of the store's own section).
_IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Unicode categories never part of a name: controls, invisible formatting
# (bidirectional overrides, zero-width characters), surrogates (bytes that
# were not UTF-8), private use, unassigned, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class ParamGrammar:
    """One path parameter of a route and what its decoded value may hold."""

    # The parameter as the route's path template names it.
    name: str
    # What a whole value must match (fullmatch).
    pattern: re.Pattern[str]
    # The longest value, in characters (Glance's own column or schema bound).
    max_len: int
    # What the value is, for the fault: "a UUID", "an image tag".
    what: str
    # What the fault adds about the form, for a client to correct its call.
    form: str
    # The canonical spelling is lower case (UUIDs): one image, one cache key.
    lower: bool = False
    # Characters beyond ASCII are allowed; such a value is also checked in
    # NFKC form, so that a hop that folds Unicode (FULLWIDTH SOLIDUS to "/",
    # two FULLWIDTH FULL STOPs to "..") reads nothing the grammar refuses.
    unicode: bool = False

    def holds(self, value: str) -> bool:
        """Whether ``value`` (decoded) is one this parameter may hold."""
        if len(value) > self.max_len or self.pattern.fullmatch(value) is None:
            return False
        return not self.unicode or value.isascii() or self._plain_unicode(value)

    def _plain_unicode(self, value: str) -> bool:
        if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value):
            return False
        return self.pattern.fullmatch(unicodedata.normalize("NFKC", value)) is not None

    def fault_text(self) -> tuple[str, str]:
        """The fault's message and details; never the value, which may be anything."""
        return f"Invalid {self.name}: must be {self.what}.", self.form


def uuid_param(name: str) -> ParamGrammar:
    """An id Glance makes: a UUID, canonical (used in lower case)."""
    return ParamGrammar(
        name, UUID_PATTERN, 36, "a UUID", "Expected 8-4-4-4-12 hexadecimal digits.", lower=True
    )


def project_id_param(name: str) -> ParamGrammar:
    """A project id (an image member): the character set tokens' project ids are held to."""
    return ParamGrammar(
        name,
        SUBJECT_ID,
        255,
        "a project id",
        "Expected 1-255 of A-Z a-z 0-9 and ._~@:+=- (starting with a letter, digit or _).",
    )


def text_param(name: str, what: str, max_len: int) -> ParamGrammar:
    """Free text as Glance takes it (a tag, a name), bounded by Glance's own limit."""
    return ParamGrammar(
        name,
        _TEXT,
        max_len,
        what,
        f"Expected 1-{max_len} characters, not starting with '.', without '/', '\\', '%', "
        "'?', '#', ';' or control characters.",
        unicode=True,
    )


def identifier_param(name: str, what: str, max_len: int) -> ParamGrammar:
    return ParamGrammar(
        name,
        _IDENTIFIER,
        max_len,
        what,
        f"Expected 1-{max_len} of A-Z a-z 0-9 and _.- (starting with a letter, digit or _).",
    )
