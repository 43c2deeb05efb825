"""Deterministic extraction rules that need no model.

E-mail addresses, @handles, URLs, issue and pull-request references, dates, acronym definitions
("magnetic resonance imaging (MRI)") and the uses of an acronym defined in the same text, and
code identifiers named in prose. Every rule is a regular expression plus a check, so the result
is the same on every machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from aesoperator.graph_schema.knowledge import CODE, Mention
from aesoperator.ingest.extract.keys import email_key, initials, login_key, name_key, normalize_name, url_key

RULES = "rules"

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][\w.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
URL = re.compile(r"\bhttps?://[^\s<>()\[\]{}\"'`]+")
HANDLE = re.compile(r"(?<![\w@/.:+-])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?)(?![\w@.-]*\.[A-Za-z])\b")
ISSUE = re.compile(r"(?<![\w/&#])(?:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+))?#(\d{1,7})\b")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_MONTH_RE = r"(Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})\s+{_MONTH_RE}\.?,?\s+(\d{{4}})\b")
MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH_RE}\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b")
ACRONYM_DEF = re.compile(r"\(([A-Z][A-Za-z0-9&-]{0,2}[A-Z0-9][A-Za-z0-9]{0,6}?)(s?)\)")
ACRONYM_USE = re.compile(r"\b[A-Z][A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*\b")
ACRONYM_ANY = re.compile(r"\b[A-Z][A-Z0-9-]{0,6}[A-Z0-9](?=s?\b)")
_NOT_ACRONYMS = frozenset(
    [
        "OK",
        "TODO",
        "FIXME",
        "NOTE",
        "FAQ",
        "AM",
        "PM",
        "II",
        "III",
        "IV",
        "VI",
        "VII",
        "VIII",
        "IX",
        "XI",
        "XII",
        "USD",
        "EUR",
        "ID",
        "IDS",
        "YES",
        "NO",
        "NA",
        "THE",
        "AND",
        "FOR",
        "NOT",
        "SELECT",
        "FROM",
        "WHERE",
        "DELETE",
        "INSERT",
        "UPDATE",
        "SET",
        "MATCH",
        "DROP",
        "TABLE",
        "CREATE",
        "RETURN",
        "OR",
        "NULL",
        "INTO",
        "VALUES",
        "JOIN",
        "ORDER",
        "GROUP",
        "BY",
        "LIMIT",
        "DETACH",
        "MERGE",
        "WITH",
        "ALTER",
        "GRANT",
        "INDEX",
        "UNION",
        "AS",
        "ON",
        "IN",
        "IS",
        "LIKE",
    ]
)
_CAPS_NEIGHBOUR = re.compile(r"[A-Z]{2,}")
BACKTICK = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*(?:\(\))?)`")
CODE_WORD = re.compile(r"\b(?:[a-z][a-z0-9]*_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]+|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b")
_WORD = re.compile(r"[A-Za-z][\w'-]*")
_STOP = frozenset(["of", "the", "and", "for", "in", "on", "to", "with", "a", "an", "by", "at", "from", "or", "as"])


@dataclass(frozen=True, slots=True)
class AcronymDefinition:
    short: Mention
    long: Mention
    start: int  # the evidence: from the expansion's first word to the closing parenthesis
    end: int


def _month(name: str) -> int:
    prefix = name[:3].lower()
    return next(i for i, m in enumerate(_MONTHS, start=1) if m.startswith(prefix))


def _date(y: int, m: int, d: int) -> str | None:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


def _mention(start: int, end: int, text: str, type_: str, key: str, confidence: float, rule: str) -> Mention:
    return Mention(start, end, text, type_, key, f"{RULES}:{rule}", confidence)


def _is_decorator(text: str, start: int, end: int) -> bool:
    """Whether `@name` at text[start:end] opens its line and is followed by "(" or nothing: a
    decorator in code (`@property`, `@dataclass(frozen=True)`), not a person's handle, which prose
    follows with words ("@alice please review")."""
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip():
        return False
    line_end = text.find("\n", end)
    rest = text[end : len(text) if line_end < 0 else line_end]
    return rest.startswith("(") or not rest.strip()


def contact_mentions(text: str) -> list[Mention]:
    """E-mail addresses, URLs, @handles and issue references: they make sense in code too."""
    out: list[Mention] = []
    taken: list[tuple[int, int]] = []
    for m in EMAIL.finditer(text):
        out.append(_mention(m.start(), m.end(), m.group(), "Person", email_key(m.group()), 0.7, "email"))
        taken.append(m.span())
    for m in URL.finditer(text):
        url = m.group().rstrip(".,;:!?")
        out.append(_mention(m.start(), m.start() + len(url), url, "Url", url_key(url), 1.0, "url"))
        taken.append((m.start(), m.start() + len(url)))

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for m in HANDLE.finditer(text):
        if free(*m.span()) and not _is_decorator(text, *m.span()):
            out.append(_mention(m.start(), m.end(), m.group(), "Person", login_key(m.group(1)), 0.6, "handle"))
    for m in ISSUE.finditer(text):
        if free(*m.span()):
            repo = (m.group(1) or "").lower()
            out.append(_mention(m.start(), m.end(), m.group(), "IssueRef", f"issue:{repo}#{m.group(2)}", 0.8, "issue"))
    return out


def date_mentions(text: str) -> list[Mention]:
    out: list[Mention] = []
    for m in ISO_DATE.finditer(text):
        iso = _date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if iso:
            out.append(_mention(m.start(), m.end(), m.group(), "DateTime", f"date:{iso}", 1.0, "date"))
    for m in DAY_MONTH_YEAR.finditer(text):
        iso = _date(int(m.group(3)), _month(m.group(2)), int(m.group(1)))
        if iso:
            out.append(_mention(m.start(), m.end(), m.group(), "DateTime", f"date:{iso}", 1.0, "date"))
    for m in MONTH_DAY_YEAR.finditer(text):
        iso = _date(int(m.group(3)), _month(m.group(1)), int(m.group(2)))
        if iso:
            out.append(_mention(m.start(), m.end(), m.group(), "DateTime", f"date:{iso}", 1.0, "date"))
    return out


def _expansion(text: str, open_paren: int, short: str) -> tuple[int, int] | None:
    """The words just before '(' whose initials spell `short` (the Schwartz–Hearst idea, strict
    form): the span of the expansion, or None."""
    want = re.sub(r"[^a-z0-9]", "", short.lower())
    window_start = max(0, open_paren - 12 * (len(want) + 2))
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, window_start, open_paren)]
    if not words or text[words[-1][1] : open_paren].strip():
        return None
    for n in range(len(want), min(len(words), len(want) + 4) + 1):
        chosen = words[-n:]
        phrase = text[chosen[0][0] : chosen[-1][1]]
        content = " ".join(w for w in phrase.split() if w.lower() not in _STOP)
        if initials(content) == want or initials(phrase) == want:
            if phrase.split()[0].lower() in _STOP:
                continue
            return chosen[0][0], chosen[-1][1]
    return None


def acronym_definitions(text: str) -> list[AcronymDefinition]:
    out: list[AcronymDefinition] = []
    for m in ACRONYM_DEF.finditer(text):
        short = m.group(1)
        span = _expansion(text, m.start(), short)
        if span is None:
            continue
        long_text = text[span[0] : span[1]]
        long_m = _mention(span[0], span[1], long_text, "Concept", name_key(long_text), 0.9, "acronym")
        short_m = Mention(
            m.start(1),
            m.end(1),
            short,
            "Concept",
            name_key(short),
            f"{RULES}:acronym",
            0.9,
            aliases=(normalize_name(long_text),),
        )
        out.append(AcronymDefinition(short_m, long_m, span[0], m.end()))
    return out


def acronym_uses(text: str, defined: dict[str, str]) -> list[Mention]:
    """Later uses of acronyms this text defines (`defined`: acronym -> normalised expansion)."""
    out: list[Mention] = []
    for m in ACRONYM_USE.finditer(text):
        word = m.group()
        if word in defined:
            out.append(
                Mention(
                    m.start(),
                    m.end(),
                    word,
                    "Concept",
                    name_key(word),
                    f"{RULES}:acronym",
                    0.8,
                    aliases=(defined[word],),
                )
            )
    return out


def standalone_acronyms(text: str, taken: set[tuple[int, int]]) -> list[Mention]:
    """Upper-case words of 2 to 8 characters with at least two letters (DNA, NATO, HIV-1): the
    acronyms a text uses without defining; low confidence, resolution joins them to expansions."""
    out: list[Mention] = []
    for m in ACRONYM_ANY.finditer(text):
        word = m.group()
        letters = sum(c.isalpha() for c in word)
        if letters < 2 or word in _NOT_ACRONYMS or m.span() in taken:
            continue
        before = text[max(0, m.start() - 12) : m.start()].split()
        after = text[m.end() : m.end() + 12].split()
        if (before and _CAPS_NEIGHBOUR.fullmatch(before[-1])) or (after and _CAPS_NEIGHBOUR.fullmatch(after[0])):
            continue  # a run of capitals is shouting or a statement, not an acronym
        out.append(Mention(m.start(), m.end(), word, "Concept", name_key(word), f"{RULES}:acronym", 0.5))
    return out


def identifier_mentions(text: str) -> list[Mention]:
    """Code identifiers named in prose: `backticked` names, snake_case and CamelCase words."""
    out: list[Mention] = []
    seen: set[tuple[int, int]] = set()
    for m in BACKTICK.finditer(text):
        name = m.group(1).removesuffix("()")
        if len(name) >= 3:
            out.append(_mention(m.start(1), m.start(1) + len(name), name, "Identifier", f"ident:{name}", 0.9, "code"))
            seen.add((m.start(1), m.start(1) + len(name)))
    for m in CODE_WORD.finditer(text):
        if m.span() not in seen and not any(a <= m.start() < b for a, b in seen):
            out.append(_mention(m.start(), m.end(), m.group(), "Identifier", f"ident:{m.group()}", 0.6, "code"))
    return out


def rule_mentions(text: str, kind: str) -> tuple[list[Mention], list[AcronymDefinition]]:
    """Every rule's mentions in `text` (code gets contacts and dates only)."""
    mentions = contact_mentions(text) + date_mentions(text)
    if kind == CODE:
        return mentions, []
    definitions = acronym_definitions(text)
    defined = {d.short.text: d.short.aliases[0] for d in definitions}
    def_spans = {(d.short.start, d.short.end) for d in definitions}
    mentions += [d.short for d in definitions] + [d.long for d in definitions]
    uses = [u for u in acronym_uses(text, defined) if (u.start, u.end) not in def_spans]
    mentions += uses
    mentions += standalone_acronyms(text, def_spans | {(u.start, u.end) for u in uses})
    mentions += identifier_mentions(text)
    return mentions, definitions
