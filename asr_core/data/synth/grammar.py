"""A small English grammar over the lexicon: statements, questions, commands, numbers, times.

``make_sentence(rng)`` draws one sentence from a weighted set of templates. Phrases are
typed (a noun phrase knows its person and number, a verb group agrees with its subject,
a verb only takes objects of the kinds it allows), so the output reads like plain
English: "did the old farmer sell his horses last week", "we're waiting for the bus near
the station". Output is already normalised: lower case, words over ``a-z`` and
apostrophe, single spaces. All randomness comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from asr_core.data.synth import lexicon as lx

_VOWEL_SOUND_EXCEPTIONS = {"uniform", "useful", "university", "unique", "usual", "unit", "user", "one", "once"}
_SILENT_H = {"hour", "honest", "honor", "heir"}

# subject person/number -> present and past of "be"
_BE = {"1s": ("am", "was"), "2": ("are", "were"), "3s": ("is", "was"), "1p": ("are", "were"), "3p": ("are", "were")}
_NEG = {
    "am": "am not",
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "do": "don't",
    "does": "doesn't",
    "did": "didn't",
    "will": "won't",
    "has": "hasn't",
    "have": "haven't",
    "can": "can't",
    "could": "couldn't",
    "should": "shouldn't",
    "would": "wouldn't",
    "might": "might not",
    "must": "must not",
}
_CONTRACT = {
    ("i", "am"): "i'm",
    ("you", "are"): "you're",
    ("he", "is"): "he's",
    ("she", "is"): "she's",
    ("we", "are"): "we're",
    ("they", "are"): "they're",
    ("i", "have"): "i've",
    ("you", "have"): "you've",
    ("we", "have"): "we've",
    ("they", "have"): "they've",
}
_MODALS = ("can", "could", "should", "would", "might", "must")
_TENSES = {
    "present": 22,
    "past": 30,
    "future": 10,
    "going_to": 5,
    "progressive": 10,
    "past_progressive": 5,
    "perfect": 8,
    "modal": 10,
}
_TIME_FAMILY = {
    "past": "past",
    "past_progressive": "past",
    "future": "future",
    "going_to": "future",
    "progressive": "future",
    "present": "habit",
}  # perfect and modal take no time phrase
_PLACE_PREPS = ("in", "at", "near", "behind", "outside", "inside", "next to", "in front of", "opposite", "beside")
_TIME_PHRASES = {
    "past": (
        "yesterday",
        "last {period}",
        "last {day}",
        "{count} {units} ago",
        "a few {units} ago",
        "this {part}",
        "in {year}",
        "on {day}",
        "on the {ordinal} of {month}",
        "at {clock}",
        "in {month}",
    ),
    "future": (
        "tomorrow",
        "tonight",
        "next {period}",
        "next {day}",
        "soon",
        "later",
        "on {day} {part}",
        "at {clock}",
        "in {count} {units}",
        "on the {ordinal} of {month}",
        "this weekend",
    ),
    "habit": (
        "every {cycle}",
        "every {part}",
        "on {days}",
        "in the {part}",
        "at night",
        "in {season}",
        "twice a {cycle}",
        "{few} times a {cycle}",
        "at {clock}",
        "at noon",
        "at midnight",
    ),
}
_SLOT = re.compile(r"\{(\w+)\}")
_SLOTS = {  # slot -> filler, called with the builder
    "period": lambda b: b.pick(("week", "month", "year", "summer", "winter", "weekend")),
    "cycle": lambda b: b.pick(("day", "week", "month")),
    "day": lambda b: b.pick(lx.DAYS),
    "days": lambda b: lx.plural(b.pick(lx.DAYS)),
    "part": lambda b: b.pick(("morning", "afternoon", "evening")),
    "units": lambda b: b.pick(("minutes", "hours", "days", "weeks")),
    "count": lambda b: b.number(2, 12),
    "few": lambda b: b.number(3, 5),
    "year": lambda b: lx.year_words(b.r.randint(1950, 2019)),
    "ordinal": lambda b: lx.ordinal_words(b.r.randint(1, 31)),
    "month": lambda b: b.pick(lx.MONTHS),
    "season": lambda b: b.pick(lx.SEASONS),
    "clock": lambda b: b.clock_time(),
}
_HUMAN_VERBS = tuple(v for v in lx.VERBS if "person" in v.subj)
_WH_OBJECT_VERBS = tuple(v for v in lx.TRANSITIVE if not v.prep and "person" in v.subj)
_COUNTING_VERBS = tuple(v for v in lx.TRANSITIVE if not v.prep and {"food", "thing"} & set(v.obj))


@dataclass
class Phrase:
    words: list[str]
    person: str = "3s"  # 1s 2 3s 1p 3p
    pronoun: str = ""  # set when the phrase is a subject pronoun


def fix_articles(words: list[str]) -> list[str]:
    """'a' -> 'an' before a vowel sound ('an old car', 'a useful idea', 'an hour')."""
    out = list(words)
    for i, nxt in enumerate(out[1:]):
        if out[i] == "a" and ((nxt[0] in "aeiou" and nxt not in _VOWEL_SOUND_EXCEPTIONS) or nxt in _SILENT_H):
            out[i] = "an"
    return out


class _Builder:
    def __init__(self, rng: random.Random):
        self.r = rng

    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def weighted(self, options: dict):
        return self.r.choices(list(options), weights=list(options.values()))[0]

    def number(self, lo: int, hi: int) -> str:
        return lx.number_words(self.r.randint(lo, hi))

    # ------------------------------------------------------------------ noun phrases
    def adjectives(self, kind: str, n: int) -> list[str]:
        groups = self.r.sample(lx.KIND_ADJ_GROUPS[kind], min(n, len(lx.KIND_ADJ_GROUPS[kind])))
        return [self.pick(lx.adjectives_for(kind, g)) for g in sorted(groups, key=lx.ADJ_ORDER.index)]

    def noun_phrase(self, kind: str, number: str | None = None, det_style: str = "any") -> Phrase:
        """A noun phrase of ``kind``; ``det_style`` is "any", "the" (definite) or "indef"."""
        noun = self.pick(lx.NOUNS[kind])
        if not noun.countable:
            number = "mass"
        elif number is None:
            number = "pl" if self.p(0.35) else "sg"
        adjs = self.adjectives(kind, self.weighted({0: 55, 1: 35, 2: 10}))
        if det_style == "the":
            det = ("the",)
        elif det_style == "indef":
            det = {
                "sg": ("a",),
                "pl": self.pick((("some",), ("two",), ("three",), ("many",), ("a", "few"), ("no",))),
                "mass": self.pick((("some",), ("no",), ("a", "lot", "of"))),
            }[number]
        elif number == "sg":
            det = self.weighted(
                {
                    ("the",): 40,
                    ("a",): 28,
                    ("this",): 5,
                    ("that",): 4,
                    ("poss",): 12,
                    ("name",): 5,
                    ("another",): 3,
                    ("every",): 1,
                }
            )
        elif number == "pl":
            det = self.weighted(
                {
                    ("the",): 38,
                    ("some",): 12,
                    ("poss",): 12,
                    ("num",): 12,
                    ("these",): 4,
                    ("those",): 4,
                    ("many",): 4,
                    ("a", "few"): 4,
                    ("several",): 3,
                    ("name",): 3,
                    (): 4,
                }
            )
        else:
            det = self.weighted(
                {
                    ("the",): 40,
                    ("some",): 20,
                    ("poss",): 10,
                    ("name",): 4,
                    ("a", "lot", "of"): 6,
                    ("this",): 4,
                    ("more",): 4,
                    (): 12,
                }
            )
        if det == ("poss",):
            det = (self.pick(lx.POSSESSIVES),)
            if self.p(0.12):
                adjs = ["favorite"] + adjs[1:]
        elif det == ("name",):
            det = (self.pick(lx.FIRST_NAMES) + "'s",)
        elif det == ("num",):
            det = tuple(self.number(2, 12 if self.p(0.8) else 999).split())
        elif det == ("every",) and kind not in ("person", "animal", "place"):
            det = ("the",)
        head = noun.pl if number == "pl" else noun.sg
        return Phrase([*det, *adjs, head], "3p" if number == "pl" else "3s")

    def person_subject(self, allow_pronoun: bool = True) -> Phrase:
        choice = self.weighted({"pronoun": 28 if allow_pronoun else 0, "name": 22, "title": 6, "np": 44})
        if choice == "pronoun":
            pro = self.pick(tuple(lx.PRONOUNS))
            return Phrase([pro], lx.PRONOUNS[pro][2], pro)
        if choice == "name":
            if self.p(0.12):
                return Phrase([self.pick(lx.FIRST_NAMES), "and", self.pick(lx.FIRST_NAMES)], "3p")
            return Phrase([self.pick(lx.FIRST_NAMES)])
        if choice == "title":
            return Phrase([self.pick(lx.TITLES), self.pick(lx.SURNAMES)])
        return self.noun_phrase("person")

    def subject(self, kinds: tuple[str, ...]) -> Phrase:
        kind = self.pick(kinds)
        return self.person_subject() if kind == "person" else self.noun_phrase(kind)

    def object(self, kinds: tuple[str, ...]) -> list[str]:
        kind = self.pick(kinds)
        if kind == "person":
            choice = self.weighted({"pronoun": 20, "name": 25, "np": 55})
            if choice == "pronoun":
                return [self.pick(("me", "you", "him", "her", "us", "them"))]
            if choice == "name":
                return [self.pick(lx.FIRST_NAMES)]
        if kind == "place" and self.p(0.2):
            return [self.pick(lx.CITIES + lx.COUNTRIES)]
        return self.noun_phrase(kind).words

    def place(self) -> list[str]:
        if self.p(0.15):
            return ["in", self.pick(lx.CITIES + lx.COUNTRIES)]
        np = self.noun_phrase("place", number="sg", det_style="the" if self.p(0.8) else "any")
        return self.pick(_PLACE_PREPS).split() + np.words

    def destination(self) -> list[str]:
        if self.p(0.1):
            return ["home"]
        if self.p(0.25):
            return ["to", self.pick(lx.CITIES + lx.COUNTRIES)]
        return ["to"] + self.noun_phrase("place", number="sg", det_style="the").words

    # ------------------------------------------------------------------ times
    def clock_time(self) -> str:
        hour = self.number(1, 12)
        style = self.weighted({"oclock": 3, "half": 2, "quarter": 2, "minutes": 3})
        if style == "oclock":
            return f"{hour} o'clock"
        if style == "half":
            return f"half past {hour}"
        if style == "quarter":
            return f"a quarter {self.pick(('past', 'to'))} {hour}"
        return f"{hour} {lx.number_words(self.pick((10, 15, 20, 25, 30, 40, 45, 50)))}"

    def time_expr(self, family: str) -> list[str]:
        """A time phrase for a tense family ("past", "future", "habit"): 'on the third of may'."""
        return _SLOT.sub(lambda m: _SLOTS[m.group(1)](self), self.pick(_TIME_PHRASES[family])).split()

    # ------------------------------------------------------------------ verb groups
    def verb_group(
        self, verb: lx.Verb, subj: Phrase, tense: str, neg: bool = False, question: bool = False
    ) -> tuple[list[str], list[str]]:
        """(aux, rest): a statement is subj + aux + rest, a question aux[0] + subj + aux[1:] + rest."""
        if question and neg and tense in ("modal", "progressive", "past_progressive", "going_to"):
            neg = False  # no "might you not", "am i not"
        third = subj.person == "3s"
        if tense in ("present", "past"):
            if not (neg or question):
                return [], [verb.past if tense == "past" else (verb.third if third else verb.base)]
            aux = "did" if tense == "past" else ("does" if third else "do")
            tail = [verb.base]
        elif tense == "future":
            aux, tail = "will", [verb.base]
        elif tense == "going_to":
            aux, tail = _BE[subj.person][0], ["going", "to", verb.base]
        elif tense in ("progressive", "past_progressive"):
            aux, tail = _BE[subj.person][tense == "past_progressive"], [verb.ing]
        elif tense == "perfect":
            aux, tail = ("has" if third else "have"), [verb.participle]
            if not (neg or question) and self.p(0.25):
                tail = [self.pick(("already", "just")), verb.participle]
        elif tense == "modal":
            aux, tail = self.pick(_MODALS), [verb.base]
        else:
            raise ValueError(f"unknown tense {tense!r}")
        words = (_NEG[aux] if neg else aux).split()  # "am not", "might not" keep "not" after the subject
        return words[:1], words[1:] + tail

    def statement(self, subj: Phrase, aux: list[str], rest: list[str]) -> list[str]:
        if subj.pronoun and aux and self.p(0.5):
            if (subj.pronoun, aux[0]) in _CONTRACT:
                return [_CONTRACT[subj.pronoun, aux[0]], *aux[1:], *rest]
            if aux[0] == "will":
                return [subj.pronoun + "'ll", *aux[1:], *rest]
        return subj.words + aux + rest

    @staticmethod
    def question(aux: list[str], subj: Phrase, rest: list[str]) -> list[str]:
        return aux[:1] + subj.words + aux[1:] + rest

    def verb_tail(self, verb: lx.Verb) -> list[str]:
        return ([verb.prep] if verb.prep else []) + (self.object(verb.obj) if verb.obj else [])

    def adjuncts(self, tense: str, verb: lx.Verb) -> list[str]:
        out: list[str] = []
        if self.p(0.18):
            out.append(self.pick(lx.ADVERBS_MANNER))
        if self.p(0.2 if verb.obj else 0.3):
            out += self.place()
        if tense in _TIME_FAMILY and self.p(0.35):
            out += self.time_expr(_TIME_FAMILY[tense])
        return out

    # ------------------------------------------------------------------ clauses
    def clause(self, tense: str | None = None, neg: bool | None = None) -> list[str]:
        tense = tense or self.weighted(_TENSES)
        neg = self.p(0.15) if neg is None else neg
        kind = self.weighted({"transitive": 60, "intransitive": 20, "motion": 12, "copula": 8})
        if kind == "copula":
            return self.copula(tense if tense in ("present", "past") else "present", neg)
        if kind == "motion":  # "she drove to the station by bus"
            verb = self.pick(lx.MOTION_VERBS)
            subj = self.person_subject()
            aux, rest = self.verb_group(verb, subj, tense, neg)
            tail = self.destination()
            if verb.base in ("go", "travel", "come", "return") and self.p(0.25):
                tail += ["by", self.pick(("bus", "train", "car", "bike", "plane", "taxi", "boat"))]
            if tense in _TIME_FAMILY and self.p(0.4):
                tail += self.time_expr(_TIME_FAMILY[tense])
            return self.statement(subj, aux, rest) + tail
        verb = self.pick(lx.TRANSITIVE if kind == "transitive" else lx.INTRANSITIVE)
        subj = self.subject(verb.subj)
        aux, rest = self.verb_group(verb, subj, tense, neg)
        if not aux and self.p(0.15):
            rest = [self.pick(lx.ADVERBS_FREQUENCY)] + rest  # "she often reads"
        return self.statement(subj, aux, rest) + self.verb_tail(verb) + self.adjuncts(tense, verb)

    def copula(self, tense: str, neg: bool = False) -> list[str]:
        kind = self.pick(tuple(lx.PREDICATIVE_GROUPS))
        subj = self.subject((kind,))
        be = _BE[subj.person][tense == "past"]
        aux = (_NEG[be] if neg else be).split()
        if kind in lx.KIND_COMPARATIVES and self.p(0.25):  # "the red car is faster than the bus"
            adj = lx.COMPARATIVES[self.pick(lx.KIND_COMPARATIVES[kind])]
            other = self.noun_phrase(kind, number="pl" if subj.person == "3p" else "sg", det_style="the")
            return self.statement(subj, aux[:1], aux[1:] + [adj, "than"] + other.words)
        if kind in ("person", "animal") and self.p(0.3):  # "the dog seems hungry"
            base = self.pick(("seem", "look", "feel"))
            if neg:
                do = "did" if tense == "past" else ("does" if subj.person == "3s" else "do")
                return subj.words + [_NEG[do], base] + self.predicate(kind)
            if tense == "past":
                verb = {"seem": "seemed", "look": "looked", "feel": "felt"}[base]
            else:
                verb = base + "s" if subj.person == "3s" else base
            return subj.words + [verb] + self.predicate(kind)
        return self.statement(subj, aux[:1], aux[1:] + self.predicate(kind))

    def predicate(self, kind: str) -> list[str]:
        words = [self.pick(lx.adjectives_for(kind, self.pick(lx.PREDICATIVE_GROUPS[kind])))]
        if self.p(0.35):
            words.insert(0, self.pick(lx.DEGREE))
        if self.p(0.15):
            words += self.pick(("today", "again", "now", "at night", "in the morning")).split()
        return words

    # ------------------------------------------------------------------ sentence templates
    def s_statement(self) -> list[str]:
        words = self.clause()
        return ([self.pick(lx.ADVERBS_SENTENCE)] + words) if self.p(0.08) else words

    def s_compound(self) -> list[str]:
        conj = self.pick(("and", "but", "so", "because", "although", "while", "when", "before", "after", "until"))
        if conj in ("when", "before", "after") and self.p(0.5):  # "when the bus arrived we went home"
            tense = self.pick(("past", "present"))
            return [conj] + self.clause(tense) + self.clause(tense)
        return self.clause() + [conj] + self.clause()

    def s_conditional(self) -> list[str]:
        return ["if", *self.clause("present", neg=self.p(0.2)), *self.clause(self.pick(("future", "modal")))]

    def s_yes_no(self) -> list[str]:
        tense = self.weighted({"present": 4, "past": 4, "future": 2, "progressive": 2, "perfect": 2, "modal": 2})
        verb = self.pick(lx.VERBS)
        subj = self.subject(verb.subj)
        aux, rest = self.verb_group(verb, subj, tense, neg=self.p(0.1), question=True)
        return self.question(aux, subj, rest) + self.verb_tail(verb) + self.adjuncts(tense, verb)

    def s_wh(self) -> list[str]:
        form = self.weighted({"adverbial": 40, "object": 25, "subject": 15, "how_many": 10, "what_time": 5, "whose": 5})
        if form == "subject":  # "who broke the window"
            verb = self.pick(_WH_OBJECT_VERBS)
            aux, rest = self.verb_group(verb, Phrase(["who"]), self.pick(("past", "perfect", "future", "present")))
            return ["who", *aux, *rest, *self.verb_tail(verb)]
        if form == "what_time":  # "what time does the train leave"
            kind = self.pick(("vehicle", "event"))
            subj = self.noun_phrase(kind, number="sg", det_style="the")
            verb = self.pick(("leave", "arrive") if kind == "vehicle" else ("start", "finish", "begin", "end"))
            return ["what", "time", self.pick(("does", "did", "will")), *subj.words, verb]
        if form == "whose":
            noun = self.pick(lx.NOUNS[self.pick(("thing", "container", "clothing", "vehicle", "animal"))])
            if self.p(0.5):
                return ["whose", noun.sg, self.pick(("is", "was")), self.pick(("this", "that"))]
            return ["whose", noun.sg, "is", *self.place()]
        tense = self.weighted({"present": 3, "past": 5, "future": 2, "progressive": 2, "perfect": 1, "modal": 2})
        if form == "adverbial":  # "why did the dog hide under the table"
            verb = self.pick(lx.VERBS)
            subj = self.subject(verb.subj)
            aux, rest = self.verb_group(verb, subj, tense, neg=self.p(0.1), question=True)
            wh = self.pick(("where", "when", "why", "how"))
            return [wh, *self.question(aux, subj, rest), *self.verb_tail(verb)]
        verb = self.pick(_WH_OBJECT_VERBS)  # object questions: "which book did you read"
        subj = self.person_subject()
        aux, rest = self.verb_group(verb, subj, tense, question=True)
        obj_kind = self.pick(verb.obj)
        if form == "how_many":
            noun = self.pick(lx.NOUNS[obj_kind])
            wh = ["how", "many", noun.pl] if noun.countable else ["how", "much", noun.sg]
        elif obj_kind == "person":
            wh = ["who"]
        else:
            wh = ["what"] if self.p(0.5) else ["which", self.pick(lx.NOUNS[obj_kind]).sg]
        tail = self.adjuncts(tense, verb) if self.p(0.5) else []
        return wh + self.question(aux, subj, rest) + tail

    def s_imperative(self) -> list[str]:
        verb = self.pick(_HUMAN_VERBS)
        head = self.weighted({("please",): 3, ("don't",): 2, ("let's",): 2, (): 3})
        words = [*head, verb.base, *self.verb_tail(verb)]
        if self.p(0.4):
            words += self.place() if self.p(0.5) else self.time_expr("future")
        elif self.p(0.2):
            words.append(self.pick(lx.ADVERBS_MANNER))
        return words

    def s_infinitive(self) -> list[str]:  # "mary wants to visit the museum"
        subj = self.person_subject()
        tense = self.pick(("present", "past", "past", "perfect"))
        aux, rest = self.verb_group(self.pick(lx.TO_VERBS), subj, tense, neg=self.p(0.15))
        verb = self.pick(_HUMAN_VERBS + lx.MOTION_VERBS)
        tail = self.destination() if verb in lx.MOTION_VERBS else self.verb_tail(verb)
        if self.p(0.3):
            tail += self.place() if verb.obj else self.time_expr("future")
        return self.statement(subj, aux, rest) + ["to", verb.base] + tail

    def s_reported(self) -> list[str]:  # "the doctor said that the children were playing"
        subj = self.person_subject()
        tense = self.pick(("present", "past", "past"))
        aux, rest = self.verb_group(self.pick(lx.SAY_VERBS), subj, tense, neg=tense == "present" and self.p(0.15))
        inner = ("past", "future", "present", "perfect") if tense == "present" else ("past", "past_progressive")
        return self.statement(subj, aux, rest) + (["that"] if self.p(0.6) else []) + self.clause(self.pick(inner))

    def s_existential(self) -> list[str]:  # "there was a little jar next to the sink"
        kind = self.pick(("animal", "thing", "container", "furniture", "vehicle", "person", "food", "plant"))
        np = self.noun_phrase(kind, det_style="indef")
        return ["there", _BE[np.person][self.r.randrange(2)], *np.words, *self.place()]

    def s_numbers(self) -> list[str]:
        form = self.weighted({"buy": 3, "cost": 2, "took": 2, "born": 1, "age": 2, "date": 2, "leaves": 2, "count": 2})
        if form == "buy":  # "mary bought twelve apples last week"
            verb = self.pick(_COUNTING_VERBS)
            noun = self.pick([n for k in verb.obj for n in lx.NOUNS[k] if n.countable])
            subj = self.person_subject()
            aux, rest = self.verb_group(verb, subj, "past")
            when = self.time_expr("past") if self.p(0.4) else []
            return self.statement(subj, aux, rest) + self.number(2, 60).split() + [noun.pl] + when
        if form == "cost":  # "the red coat costs forty dollars and fifty cents"
            kind = self.pick(("thing", "clothing", "vehicle", "instrument", "readable"))
            units = self.pick(("dollars", "pounds"))
            words = self.noun_phrase(kind, number="sg", det_style="the").words
            words += [self.pick(("costs", "cost")), *self.number(2, 999).split(), units]
            if units == "dollars" and self.p(0.3):
                words += ["and", *self.number(5, 95).split(), "cents"]
            return words
        if form == "took":  # "the journey took three hours"
            words = self.noun_phrase("event", number="sg", det_style="the").words
            return words + ["took", *self.number(2, 12).split(), self.pick(("hours", "minutes", "days"))]
        if form == "born":
            year = lx.year_words(self.r.randint(1930, 2015))
            return [self.pick(lx.FIRST_NAMES), "was", "born", "in", self.pick(lx.CITIES), "in", *year.split()]
        if form == "age":
            kind = self.pick(("person", "animal", "vehicle", "place"))
            words = self.noun_phrase(kind, number="sg", det_style="the").words
            return words + [self.pick(("is", "was")), *self.number(2, 90).split(), "years", "old"]
        if form == "date":  # "the wedding will be on the third of may"
            words = self.noun_phrase("event", number="sg", det_style="the" if self.p(0.7) else "any").words
            day = lx.ordinal_words(self.r.randint(1, 31)).split()
            be = self.pick((["is"], ["was"], ["will", "be"]))
            return words + be + ["on", "the", *day, "of", self.pick(lx.MONTHS)]
        if form == "leaves":  # "the train to london leaves at half past six"
            words = self.noun_phrase("vehicle", number="sg", det_style="the").words
            if self.p(0.5):
                words += ["to", self.pick(lx.CITIES)]
            return words + [self.pick(("leaves", "arrives", "left", "arrived")), "at", *self.clock_time().split()]
        noun = self.pick(
            [n for k in ("animal", "thing", "person", "vehicle", "plant") for n in lx.NOUNS[k] if n.countable]
        )
        return ["there", self.pick(("are", "were")), *self.number(2, 99).split(), noun.pl, *self.place()]

    def sentence(self) -> list[str]:
        template = self.weighted(
            {
                self.s_statement: 34,
                self.s_compound: 8,
                self.s_conditional: 3,
                self.s_yes_no: 9,
                self.s_wh: 12,
                self.s_imperative: 6,
                self.s_infinitive: 8,
                self.s_reported: 6,
                self.s_existential: 5,
                self.s_numbers: 9,
            }
        )
        words = template()
        if self.p(0.04):
            words = self.pick(lx.OPENERS).split() + words
        return fix_articles(words)


def make_sentence(rng: random.Random, min_words: int = 4, max_words: int = 18, max_tries: int = 1000) -> str:
    """One normalised sentence of ``min_words``..``max_words`` words drawn with ``rng``."""
    builder = _Builder(rng)
    for _ in range(max_tries):
        words = " ".join(builder.sentence()).split()
        if min_words <= len(words) <= max_words:
            return " ".join(words)
    raise RuntimeError(f"no sentence of {min_words}-{max_words} words after {max_tries} tries")
