"""The policy rule language: a small subset of oslo.policy's, parsed, never evaluated as code.

    rule    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | "(" rule ")" | check
    check   := "role:" NAME            the caller holds the role (case-insensitive)
             | "project_id:%(owner)s"  the caller's project owns the image
             | "rule:" NAME            another rule of the same policy
             | "@" | "!"               always, never

So Glance's own default for deleting an image is written as Glance writes it,
``role:admin or (role:member and project_id:%(owner)s)``.

Evaluation is three-valued: before the image's owner is known an ownership
check is *unknown*, so a rule that holds or fails on roles alone (a global
admin, an observer) is decided without asking the backend who owns the image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

# True, False, or None while the image's owner is not known yet.
Truth = bool | None

# A check may hold a %(name)s substitution, whose parentheses are not grouping.
_TOKEN = re.compile(r"\s*(\(|\)|(?:%\(\w+\)s|[^\s()])+)")
OWNER_CHECK = "project_id:%(owner)s"
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]+$")


class PolicyError(ValueError):
    """A rule that does not parse or refers to a rule that does not exist."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        # The rule whose text is at fault, once known.
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Subject:
    """What a rule is checked against: the caller and, once known, the image's owner."""

    roles: frozenset[str]
    project_id: str
    owner_known: bool = False
    owner: str | None = None


class Expr(Protocol):
    def evaluate(self, subject: Subject) -> Truth: ...

    def needs_owner(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Constant:
    value: bool

    def evaluate(self, subject: Subject) -> Truth:
        return self.value

    def needs_owner(self) -> bool:
        return False

    def __str__(self) -> str:
        return "@" if self.value else "!"


@dataclass(frozen=True, slots=True)
class Role:
    name: str

    def evaluate(self, subject: Subject) -> Truth:
        return self.name in subject.roles

    def needs_owner(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"role:{self.name}"


@dataclass(frozen=True, slots=True)
class OwnsImage:
    def evaluate(self, subject: Subject) -> Truth:
        if not subject.owner_known:
            return None
        return subject.owner is not None and subject.owner == subject.project_id

    def needs_owner(self) -> bool:
        return True

    def __str__(self) -> str:
        return OWNER_CHECK


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr

    def evaluate(self, subject: Subject) -> Truth:
        value = self.operand.evaluate(subject)
        return None if value is None else not value

    def needs_owner(self) -> bool:
        return self.operand.needs_owner()

    def __str__(self) -> str:
        return f"not {self.operand}"


@dataclass(frozen=True, slots=True)
class Combination:
    """``a or b or ...`` / ``a and b and ...``, three-valued (Kleene)."""

    word: Literal["or", "and"]
    operands: tuple[Expr, ...]

    def evaluate(self, subject: Subject) -> Truth:
        # One true operand decides an "or", one false operand an "and".
        decisive = self.word == "or"
        values = [o.evaluate(subject) for o in self.operands]
        if decisive in values:
            return decisive
        return None if None in values else not decisive

    def needs_owner(self) -> bool:
        return any(o.needs_owner() for o in self.operands)

    def __str__(self) -> str:
        return "(" + f" {self.word} ".join(str(o) for o in self.operands) + ")"


class _Parser:
    def __init__(self, text: str, resolve: _Resolver) -> None:
        self.tokens = self._tokenize(text)
        self.position = 0
        self.resolve = resolve

    @staticmethod
    def _tokenize(text: str) -> list[str]:
        tokens: list[str] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            assert match is not None  # every non-space character starts a token
            tokens.append(match.group(1))
            position = match.end()
        return tokens

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise PolicyError("the rule ends too early")
        self.position += 1
        return token

    def parse(self) -> Expr:
        if not self.tokens:
            raise PolicyError("the rule is empty")
        expr = self._or()
        if self._peek() is not None:
            raise PolicyError(f"unexpected {self._peek()!r} after a complete rule")
        return expr

    def _or(self) -> Expr:
        return self._combination("or", self._and)

    def _and(self) -> Expr:
        return self._combination("and", self._not)

    def _combination(self, word: Literal["or", "and"], operand: Callable[[], Expr]) -> Expr:
        operands = [operand()]
        while self._peek() == word:
            self._take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Combination(word, tuple(operands))

    def _not(self) -> Expr:
        token = self._take()
        if token == "not":
            return Not(self._not())
        if token == "(":
            expr = self._or()
            if self._take() != ")":
                raise PolicyError("a '(' is not closed")
            return expr
        return self._check(token)

    def _check(self, token: str) -> Expr:
        if token in ("@", "!"):
            return Constant(token == "@")
        if token == OWNER_CHECK:
            return OwnsImage()
        kind, _, name = token.partition(":")
        if kind == "role" and _NAME.match(name):
            return Role(name.lower())
        if kind == "rule" and _NAME.match(name):
            return self.resolve(name)
        raise PolicyError(
            f"unknown check {token!r}; use role:NAME, rule:NAME, {OWNER_CHECK}, @ or !"
        )


class _Resolver(Protocol):
    def __call__(self, name: str) -> Expr: ...


def compile_rules(rules: Mapping[str, str]) -> dict[str, Expr]:
    """Parse every rule, resolving ``rule:NAME`` references; errors name the rule."""
    compiled: dict[str, Expr] = {}
    in_progress: list[str] = []

    def resolve(name: str) -> Expr:
        if name in compiled:
            return compiled[name]
        if name not in rules:
            raise PolicyError(f"refers to rule:{name}, which is not defined")
        if name in in_progress:
            cycle = " -> ".join([*in_progress[in_progress.index(name) :], name])
            raise PolicyError(f"rules refer to each other in a cycle: {cycle}")
        in_progress.append(name)
        try:
            compiled[name] = _Parser(rules[name], resolve).parse()
        except PolicyError as exc:
            if exc.rule is None:
                raise PolicyError(f"rule {name!r}: {exc}", rule=name) from None
            raise
        finally:
            in_progress.pop()
        return compiled[name]

    for name in rules:
        resolve(name)
    return compiled
