"""Memory facts from the common ways people state them, with no model.

Each rule is a regular expression over one sentence that names a subject, a predicate of the
vocabulary (`graph_schema.facts`) and an object: "I moved to Berlin", "Kim works at Acme",
"my role is tech lead", "the status of the migration is blocked", "Priya is the owner of the
billing service", "Postgres is now on version 16.2". The first person ("I", "my") becomes a
mention with the key `SELF_KEY`, which the extraction stage turns into the item's speaker.

Names (people, places, organisations) must be capitalised, and values (roles, statuses) stop at
the first preposition, conjunction or punctuation: a rule would rather miss a fact than invent one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from aesoperator.graph_schema.facts import PREDICATES, SELF_KEY
from aesoperator.graph_schema.knowledge import Mention, MentionRelation
from aesoperator.ingest.extract.keys import name_key
from aesoperator.ingest.extract.sentences import sentence_spans

FACT_RULE = "rules:fact"
FACT_CONFIDENCE = 0.9

# A capitalised name of up to five words ("New York City", "Acme Corp", "Rio de Janeiro").
_NOT_NAMES = (
    r"I|We|They|He|She|It|You|This|That|These|Those|There|Here|The|A|An|My|Our|Your|His|Her|Their|Its|"
    r"Everyone|Everybody|Someone|Somebody|Nobody|Who|What|Which|Where|When|Why|How|If|And|But|So"
)
_NAME = rf"(?!(?:{_NOT_NAMES})\b)[A-Z][\w'’.&-]*(?:[ \t]+(?:(?:de|da|del|van|von|of|upon|on|la|le)[ \t]+)?[A-Z0-9][\w'’.&-]*){{0,4}}"
# What a thing is called: a capitalised name, or "the/our/my" and one to three words.
_THING = rf"(?:(?i:the|our|my|their|his|her)[ \t]+[\w./+-]+(?:[ \t]+[\w./+-]+){{0,2}}|{_NAME})"
_STOP_WORDS = (
    r"and|but|or|because|since|so|as|after|before|until|for|in|on|at|with|by|from|to|of|now|"
    r"today|yesterday|again|too|last|next|this|that|which|who|when|while|though|although"
)
# A value (a role, a status): an optional article and one to four words, none of them a stop word.
_VALUE = rf"(?:(?i:a|an|the)[ \t]+)?(?!(?i:{_STOP_WORDS})\b)[\w-]+(?:[ \t]+(?!(?i:{_STOP_WORDS})\b)[\w-]+){{0,3}}"
_ROLE = rf"(?i:a|an|the)[ \t]+(?:(?i:new)[ \t]+)?(?!(?i:{_STOP_WORDS})\b)[\w-]+(?:[ \t]+(?!(?i:{_STOP_WORDS})\b)[\w-]+){{0,3}}"
_STATUS = (
    rf"(?:(?i:on[ \t]+hold|in[ \t]+progress|in[ \t]+review|under[ \t]+review|on[ \t]+track|at[ \t]+risk)\b|{_VALUE})"
)
_VERSION = r"v?\d+(?:\.\d+){0,3}(?:[-+][\w.]+)?"
_SELF = r"(?P<self>\bI)(?:'m|'ve|’m|’ve)?"
_PERSON = rf"(?:{_SELF}|(?P<subj>{_NAME}))"
_POSSESSOR = rf"(?:(?P<self>\b(?i:my))|(?P<subj>{_NAME})(?:'s|’s))"
_ADVERBS = (
    r"(?:[ \t]+(?i:just|recently|finally|now|currently|still|also|actually|officially|have|has|had|am|is|'ve|'s))*"
)
_BE = r"(?:[ \t]+(?i:am|is|are|was)|(?:'m|’m|'s|’s))"
_NOW = r"(?:[ \t]+(?i:now|currently|still|officially))?"
_BECOMES = r"(?i:is|was|has been changed to|was changed to|changed to|is now|moved to|was set to|is set to|became)"

_ARTICLE = re.compile(r"(?i:the|a|an)[ \t]+")
# Words that start sentences and are capitalised without being part of a name.
_LEADING = frozenset(
    [
        "yesterday",
        "today",
        "tomorrow",
        "then",
        "so",
        "and",
        "but",
        "also",
        "now",
        "last",
        "this",
        "next",
        "well",
        "oh",
        "anyway",
        "meanwhile",
        "finally",
        "recently",
        "update",
        "fyi",
        "btw",
        "note",
        "since",
        "after",
        "before",
        "when",
    ]
)


@dataclass(frozen=True, slots=True)
class FactMatch:
    """A fact a rule found: its subject and object mentions and the sentence that states it."""

    subject: Mention
    predicate: str
    object: Mention
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Rule:
    predicate: str
    pattern: re.Pattern[str]
    subject_type: str  # type of a named subject
    also: str | None = None  # a second predicate the same sentence states (role "at" an org)
    reverse: bool = False  # the object group names the subject ("Kim owns X" -> X OWNED_BY Kim)


def _rule(predicate: str, pattern: str, subject_type: str = "Person", **options: object) -> _Rule:
    return _Rule(predicate, re.compile(pattern), subject_type, **options)  # type: ignore[arg-type]


RULES: tuple[_Rule, ...] = (
    # where someone lives
    _rule(
        "LIVES_IN",
        rf"{_PERSON}{_ADVERBS}(?:[ \t]+(?i:living|live|lives|reside|resides|residing|based)|{_BE}{_NOW}[ \t]+(?i:living|based))"
        rf"[ \t]+(?i:in)[ \t]+(?:the[ \t]+)?(?P<obj>{_NAME})",
    ),
    _rule(
        "LIVES_IN",
        rf"{_PERSON}{_ADVERBS}[ \t]+(?i:moved|relocated)(?:[ \t]+(?i:back|over|out))?[ \t]+(?i:to)[ \t]+(?:the[ \t]+)?(?P<obj>{_NAME})",
    ),
    _rule(
        "LIVES_IN", rf"{_POSSESSOR}[ \t]+(?i:home|house|apartment|flat)[ \t]+(?i:is)[ \t]+(?i:in)[ \t]+(?P<obj>{_NAME})"
    ),
    # where someone works, and the role a sentence gives with it
    _rule(
        "WORKS_AT",
        rf"{_PERSON}{_ADVERBS}(?:[ \t]+(?i:work|works|working)|{_BE}{_NOW}[ \t]+(?i:working|employed))[ \t]+(?i:at|for|by)[ \t]+(?:the[ \t]+)?(?P<obj>{_NAME})"
        rf"(?:[ \t]+(?i:as)[ \t]+(?P<obj2>{_VALUE}))?",
        also="HAS_ROLE",
    ),
    _rule(
        "WORKS_AT",
        rf"{_PERSON}{_ADVERBS}[ \t]+(?i:joined|started[ \t]+(?:working[ \t]+)?at|started[ \t]+a[ \t]+(?:new[ \t]+)?job[ \t]+at|got[ \t]+a[ \t]+(?:new[ \t]+)?job[ \t]+at|was[ \t]+hired[ \t]+by|got[ \t]+hired[ \t]+(?:at|by)|switched[ \t]+to)[ \t]+(?:the[ \t]+)?(?P<obj>{_NAME})"
        rf"(?:[ \t]+(?i:as)[ \t]+(?P<obj2>{_VALUE}))?",
        also="HAS_ROLE",
    ),
    _rule(
        "HAS_ROLE",
        rf"{_PERSON}{_BE}{_NOW}[ \t]+(?P<obj>{_ROLE})[ \t]+(?i:at)[ \t]+(?:the[ \t]+)?(?P<obj2>{_NAME})",
        also="WORKS_AT",
    ),
    _rule(
        "HAS_ROLE",
        rf"{_PERSON}{_BE}{_NOW}[ \t]+(?i:the)[ \t]+(?:(?i:new)[ \t]+)?(?P<obj>[A-Z]{{2,5}})[ \t]+(?i:of|at)[ \t]+(?:the[ \t]+)?(?P<obj2>{_NAME})",
        also="WORKS_AT",
    ),
    # someone's role
    _rule(
        "HAS_ROLE",
        rf"{_POSSESSOR}[ \t]+(?i:new[ \t]+)?(?i:role|job[ \t]+title|title|position)[ \t]+{_BECOMES}[ \t]+(?P<obj>{_VALUE})",
    ),
    _rule(
        "HAS_ROLE",
        rf"{_PERSON}{_ADVERBS}[ \t]+(?i:was|got|been)[ \t]+(?i:promoted)[ \t]+(?i:to)[ \t]+(?P<obj>{_VALUE})",
    ),
    _rule(
        "HAS_ROLE",
        rf"{_PERSON}{_ADVERBS}(?:[ \t]+(?i:became|become)|{_BE}[ \t]+(?i:now))[ \t]+(?P<obj>{_ROLE})",
    ),
    _rule(
        "HAS_ROLE",
        rf"{_PERSON}{_ADVERBS}[ \t]+(?i:work|works|working)[ \t]+(?i:as)[ \t]+(?P<obj>{_VALUE})",
    ),
    # the status of something
    _rule(
        "HAS_STATUS",
        rf"(?i:the[ \t]+)?(?i:status)[ \t]+(?i:of)[ \t]+(?P<subj>{_THING})[ \t]+{_BECOMES}[ \t]+(?P<obj>{_STATUS})",
        "Concept",
    ),
    _rule(
        "HAS_STATUS",
        rf"(?:(?P<self>\b(?i:my))|(?P<subj>{_THING})(?:'s|’s))[ \t]+(?i:status)[ \t]+{_BECOMES}[ \t]+(?P<obj>{_STATUS})",
        "Concept",
    ),
    _rule("HAS_STATUS", rf"(?P<subj>{_NAME})[ \t]+(?i:status):[ \t]+(?P<obj>{_STATUS})", "Concept"),
    # who owns something
    _rule(
        "OWNED_BY",
        rf"{_PERSON}{_BE}{_NOW}[ \t]+(?i:the)[ \t]+(?:(?i:new)[ \t]+)?(?i:owner)[ \t]+(?i:of)[ \t]+(?P<obj>{_THING})",
        reverse=True,
    ),
    _rule("OWNED_BY", rf"{_PERSON}{_ADVERBS}[ \t]+(?i:owns|own)[ \t]+(?P<obj>{_THING})", reverse=True),
    _rule(
        "OWNED_BY",
        rf"(?P<subj>{_THING})[ \t]+(?i:is|was)[ \t]+(?:(?i:now)[ \t]+)?(?i:owned)[ \t]+(?i:by)[ \t]+(?P<obj>{_NAME})",
        "Concept",
    ),
    _rule(
        "OWNED_BY",
        rf"(?:(?i:the)[ \t]+)?(?i:owner)[ \t]+(?i:of)[ \t]+(?P<subj>{_THING})[ \t]+{_BECOMES}[ \t]+(?P<obj>{_NAME})",
        "Concept",
    ),
    _rule(
        "OWNED_BY",
        rf"(?P<subj>{_THING})(?:'s|’s)[ \t]+(?:(?i:new)[ \t]+)?(?i:owner)[ \t]+{_BECOMES}[ \t]+(?P<obj>{_NAME})",
        "Concept",
    ),
    _rule(
        "OWNED_BY",
        rf"(?i:ownership)[ \t]+(?i:of)[ \t]+(?P<subj>{_THING})[ \t]+(?i:moved|passed|went|was[ \t]+transferred|was[ \t]+handed[ \t]+over)[ \t]+(?i:to)[ \t]+(?P<obj>{_NAME})",
        "Concept",
    ),
    # the version of something
    _rule(
        "HAS_VERSION",
        rf"(?P<subj>{_THING})[ \t]+(?i:is|was|runs|is[ \t]+running)[ \t]+(?:(?i:now)[ \t]+)?(?:(?i:on|at)[ \t]+)?(?i:version)[ \t]+(?P<obj>{_VERSION})\b",
        "Concept",
    ),
    _rule(
        "HAS_VERSION",
        rf"(?:(?i:the)[ \t]+)?(?i:version)[ \t]+(?i:of)[ \t]+(?P<subj>{_THING})[ \t]+{_BECOMES}[ \t]+(?P<obj>{_VERSION})\b",
        "Concept",
    ),
    _rule(
        "HAS_VERSION",
        rf"(?P<subj>{_THING})(?:'s|’s)?[ \t]+(?i:version)[ \t]+{_BECOMES}[ \t]+(?P<obj>{_VERSION})\b",
        "Concept",
    ),
    _rule(
        "HAS_VERSION",
        rf"(?i:upgraded|updated|bumped|moved|migrated)[ \t]+(?P<subj>{_THING})[ \t]+(?i:to)[ \t]+(?:(?i:version)[ \t]+)?(?P<obj>{_VERSION})\b",
        "Concept",
    ),
)


def _trim_leading(text: str, start: int) -> tuple[str, int]:
    """A name without the capitalised sentence starters before it ("Yesterday Kim" -> "Kim")."""
    words = text.split()
    while len(words) > 1 and words[0].lower().strip(",") in _LEADING:
        cut = text.index(words[1], len(words[0]))
        start += cut
        text = text[cut:]
        words = words[1:]
    return text, start


def _span_mention(match: re.Match[str], group: str, offset: int, type_: str) -> Mention | None:
    if match.group(group) is None:
        return None
    text = match.group(group).rstrip(".,;:!?'’")
    start = offset + match.start(group)
    if type_ != "Identifier":
        text, start = _trim_leading(text, start)
        article = _ARTICLE.match(text)
        if article is not None and article.end() < len(text):
            text, start = text[article.end() :], start + article.end()
    if not text or text.lower() in _LEADING:
        return None
    return Mention(start, start + len(text), text, type_, name_key(text), FACT_RULE, FACT_CONFIDENCE)


def _subject(match: re.Match[str], offset: int, type_: str) -> Mention | None:
    groups = match.groupdict()
    if groups.get("self") is not None:
        start = offset + match.start("self")
        return Mention(start, start + len(match.group("self")), match.group("self"), "Person", SELF_KEY, FACT_RULE, 1.0)
    return _span_mention(match, "subj", offset, type_)


def _findings(rule: _Rule, match: re.Match[str], offset: int, sentence: tuple[int, int]) -> Iterator[FactMatch]:
    predicate = PREDICATES[rule.predicate]
    if rule.reverse:  # "Kim owns the billing service": the thing is the subject, the person the object
        person = _subject(match, offset, "Person")
        thing = _span_mention(match, "obj", offset, "Concept")
        if person is not None and thing is not None:
            yield FactMatch(thing, rule.predicate, person, *sentence)
        return
    subject = _subject(match, offset, rule.subject_type)
    value = _span_mention(match, "obj", offset, predicate.object_type)
    if subject is None or value is None:
        return
    yield FactMatch(subject, rule.predicate, value, *sentence)
    if rule.also is not None:
        second = _span_mention(match, "obj2", offset, PREDICATES[rule.also].object_type)
        if second is not None:
            yield FactMatch(subject, rule.also, second, *sentence)


def fact_matches(text: str) -> list[FactMatch]:
    """Every fact the rules find in `text`, one per (subject span, predicate) per sentence."""
    found: list[FactMatch] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        taken: set[tuple[int, str]] = set()
        for rule in RULES:
            for match in rule.pattern.finditer(sentence):
                for fact in _findings(rule, match, start, (start, end)):
                    key = (fact.subject.start, fact.predicate)
                    if key in taken:
                        continue
                    taken.add(key)
                    found.append(fact)
    return found


def _kept_index(wanted: Mention, mentions: Sequence[Mention]) -> int | None:
    """The kept mention standing for `wanted`: the same span, else the one overlapping it most."""
    best, best_overlap = None, 0
    for i, m in enumerate(mentions):
        overlap = min(m.end, wanted.end) - max(m.start, wanted.start)
        if (m.start, m.end) == (wanted.start, wanted.end):
            return i
        if overlap > best_overlap:
            best, best_overlap = i, overlap
    return best


def fact_relations(facts: Sequence[FactMatch], mentions: Sequence[Mention]) -> list[MentionRelation]:
    """The facts as relations between the kept mentions (after overlaps were settled)."""
    out: list[MentionRelation] = []
    for fact in facts:
        src, dst = _kept_index(fact.subject, mentions), _kept_index(fact.object, mentions)
        if src is None or dst is None or src == dst:
            continue
        out.append(MentionRelation(src, dst, fact.predicate, fact.start, fact.end, FACT_RULE, FACT_CONFIDENCE))
    return out


__all__ = ["FACT_RULE", "RULES", "FactMatch", "fact_matches", "fact_relations"]
