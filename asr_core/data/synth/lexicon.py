"""The synthetic corpus vocabulary: typed English word lists and their inflections.

Nouns carry a semantic kind (``person``, ``food``, ``vehicle`` ...) and verbs say which
kinds may be their subject and object, so that the grammar builds sentences such as
"the old farmer sold three horses" rather than "the soup sold a river". Every word is
lower case over ``a-z`` plus the apostrophe (checked at import); US spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from asr_core.text import out_of_alphabet

# ---------------------------------------------------------------------------- nouns


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str | None  # None: a mass noun ("water"): no plural, no "a"
    kind: str

    @property
    def countable(self) -> bool:
        return self.pl is not None


_IRREGULAR_PLURAL = {
    "child": "children",
    "woman": "women",
    "man": "men",
    "fisherman": "fishermen",
    "policeman": "policemen",
    "mouse": "mice",
    "goose": "geese",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
    "wolf": "wolves",
    "knife": "knives",
    "loaf": "loaves",
    "shelf": "shelves",
    "scarf": "scarves",
    "wife": "wives",
    "leaf": "leaves",
    "tomato": "tomatoes",
    "potato": "potatoes",
    "person": "people",
    "tooth": "teeth",
    "foot": "feet",
    "hero": "heroes",
}


def plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURAL:
        return _IRREGULAR_PLURAL[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


# kind -> countable nouns, and kind -> mass nouns
_COUNT_NOUNS = {
    "person": """teacher doctor nurse farmer baker driver pilot student child woman man girl boy baby
        friend neighbor artist writer singer dancer painter lawyer engineer scientist officer soldier
        sailor fisherman waiter waitress chef manager clerk builder plumber carpenter gardener mechanic
        dentist professor captain king queen prince princess visitor tourist stranger customer player
        coach guest brother sister mother father uncle aunt cousin grandmother grandfather daughter son
        wife husband parent musician photographer reporter judge actor librarian barber policeman
        tailor shepherd hunter poet guide passenger traveler butcher merchant""",
    "animal": """dog cat horse cow sheep pig goat chicken duck goose mouse rabbit bird fish bear wolf
        fox lion tiger elephant monkey deer frog snake owl eagle parrot donkey camel zebra giraffe
        kitten puppy squirrel turtle whale dolphin bee spider butterfly pony hamster""",
    "food": """apple orange banana lemon pear peach cherry grape tomato potato carrot onion egg
        sandwich cake cookie pie sausage pizza muffin pancake strawberry melon cucumber pepper
        loaf biscuit cupcake pumpkin""",
    "vehicle": """car bus truck bicycle bike train boat ship plane taxi van tractor motorcycle scooter
        ferry helicopter""",
    "thing": """key lamp clock watch phone camera radio computer ticket umbrella wallet pencil pen
        brush mirror picture photograph candle blanket pillow towel ladder rope hammer ball toy kite
        balloon bell ring coin broom shovel necklace bracelet present""",
    "container": """box bag basket bottle cup glass bowl bucket jar kettle pot pan suitcase backpack
        drawer envelope parcel package""",
    "fixture": "door window gate fence wall roof",
    "furniture": "chair table desk bed sofa shelf cupboard bench stool",
    "readable": """book letter newspaper magazine story poem note map menu report message diary novel
        recipe list postcard article""",
    "clothing": "coat hat shirt dress skirt jacket scarf sweater boot shoe sock glove belt tie uniform",
    "instrument": "piano guitar violin drum flute trumpet harp",
    "plant": "tree flower rose tulip bush seed leaf",
    "place": """kitchen garden park school library station market shop store office hospital church
        bank museum hotel restaurant beach forest village city town farm factory bridge street road
        river lake mountain hill island airport harbor castle palace theater cinema stadium zoo bakery
        classroom bedroom hallway garage basement yard field valley cave tower cottage playground
        pharmacy supermarket""",
    "event": """party meeting concert wedding festival match race lesson exam interview show movie
        trip journey holiday game picnic ceremony""",
    "abstract": """idea plan problem question answer mistake secret joke dream decision reason rule
        promise chance choice result song lie guess""",
}

_MASS_NOUNS = {
    "food": "bread rice soup cheese butter meat pasta honey jam sugar salt flour chocolate cereal toast",
    "drink": "water milk tea coffee juice lemonade cocoa soda",
    "info": "music news advice information homework money",
}

NOUNS: dict[str, tuple[Noun, ...]] = {}
for _kind, _words in _COUNT_NOUNS.items():
    NOUNS[_kind] = tuple(Noun(w, plural(w), _kind) for w in _words.split())
for _kind, _words in _MASS_NOUNS.items():
    NOUNS[_kind] = NOUNS.get(_kind, ()) + tuple(Noun(w, None, _kind) for w in _words.split())

# groups of kinds used by verbs and adjectives
PORTABLE = ("thing", "container", "readable", "clothing", "food", "plant")
ANIMATE = ("person", "animal")


# ---------------------------------------------------------------------------- verbs


@dataclass(frozen=True)
class Verb:
    base: str
    third: str  # "walks"
    past: str  # "walked"
    participle: str  # "walked"
    ing: str  # "walking"
    subj: tuple[str, ...]  # noun kinds that can be the subject
    obj: tuple[str, ...]  # object kinds; () = intransitive
    prep: str = ""  # preposition before the object: "look at"

    def form(self, name: str) -> str:
        return getattr(self, name)


_IRREGULAR_VERBS = {  # base: (past, participle)
    "eat": ("ate", "eaten"),
    "drink": ("drank", "drunk"),
    "buy": ("bought", "bought"),
    "sell": ("sold", "sold"),
    "bring": ("brought", "brought"),
    "take": ("took", "taken"),
    "find": ("found", "found"),
    "lose": ("lost", "lost"),
    "hold": ("held", "held"),
    "hide": ("hid", "hidden"),
    "keep": ("kept", "kept"),
    "break": ("broke", "broken"),
    "draw": ("drew", "drawn"),
    "leave": ("left", "left"),
    "forget": ("forgot", "forgotten"),
    "throw": ("threw", "thrown"),
    "catch": ("caught", "caught"),
    "choose": ("chose", "chosen"),
    "steal": ("stole", "stolen"),
    "send": ("sent", "sent"),
    "see": ("saw", "seen"),
    "read": ("read", "read"),
    "write": ("wrote", "written"),
    "drive": ("drove", "driven"),
    "ride": ("rode", "ridden"),
    "meet": ("met", "met"),
    "teach": ("taught", "taught"),
    "feed": ("fed", "fed"),
    "wear": ("wore", "worn"),
    "grow": ("grew", "grown"),
    "cut": ("cut", "cut"),
    "understand": ("understood", "understood"),
    "sing": ("sang", "sung"),
    "sleep": ("slept", "slept"),
    "swim": ("swam", "swum"),
    "run": ("ran", "run"),
    "sit": ("sat", "sat"),
    "stand": ("stood", "stood"),
    "go": ("went", "gone"),
    "come": ("came", "come"),
    "fly": ("flew", "flown"),
    "fall": ("fell", "fallen"),
    "make": ("made", "made"),
    "build": ("built", "built"),
    "tell": ("told", "told"),
    "hear": ("heard", "heard"),
    "win": ("won", "won"),
    "lend": ("lent", "lent"),
    "spend": ("spent", "spent"),
    "begin": ("began", "begun"),
    "think": ("thought", "thought"),
    "get": ("got", "gotten"),
    "shake": ("shook", "shaken"),
    "dig": ("dug", "dug"),
    "put": ("put", "put"),
    "hang": ("hung", "hung"),
    "say": ("said", "said"),
    "know": ("knew", "known"),
    "feel": ("felt", "felt"),
    "wake": ("woke", "woken"),
    "forgive": ("forgave", "forgiven"),
    "pay": ("paid", "paid"),
}
_DOUBLE_FINAL = set(
    "stop drop shop plan hug jog chat grab beg rob nod skip clap drag wrap tap trip admit prefer "
    "swim run sit get put cut win dig begin forget chop mop step hop ship".split()
)


def _third(v: str) -> str:
    if v in ("go", "do"):
        return v + "es"
    if v.endswith(("s", "x", "z", "ch", "sh")):
        return v + "es"
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ies"
    return v + "s"


def _past(v: str) -> str:
    if v.endswith("e"):
        return v + "d"
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ied"
    if v in _DOUBLE_FINAL:
        return v + v[-1] + "ed"
    return v + "ed"


def _ing(v: str) -> str:
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye", "oe")) and v != "be":
        return v[:-1] + "ing"
    if v in _DOUBLE_FINAL:
        return v + v[-1] + "ing"
    return v + "ing"


def make_verb(base: str, subj: tuple[str, ...], obj: tuple[str, ...] = (), prep: str = "") -> Verb:
    past, part = _IRREGULAR_VERBS.get(base, (_past(base), _past(base)))
    return Verb(base, _third(base), past, part, _ing(base), subj, obj, prep)


_H = ("person",)
_FOOD = ("food",)
_GOODS = PORTABLE + ("instrument", "vehicle", "furniture")
_SEEABLE = (
    "person",
    "animal",
    "vehicle",
    "thing",
    "container",
    "furniture",
    "fixture",
    "clothing",
    "instrument",
    "plant",
    "place",
)

# (verbs, subject kinds, object kinds, preposition)
_VERB_TABLE: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    ("eat", ANIMATE, _FOOD, ""),
    ("drink", ANIMATE, ("drink",), ""),
    ("cook bake prepare taste share order", _H, _FOOD, ""),
    ("buy sell want need like love borrow choose deliver", _H, _GOODS, ""),
    (
        "find lose carry bring take hold drop hide keep move check steal return forget remember "
        "collect count send receive wrap",
        _H,
        PORTABLE,
        "",
    ),
    ("clean fix break paint polish repair", _H, ("thing", "container", "instrument", "furniture"), ""),
    ("open close", _H, ("container", "fixture", "readable"), ""),
    ("paint fix repair clean", _H, ("fixture",), ""),
    ("fill empty pack shake", _H, ("container",), ""),
    ("throw catch push pull lift touch", _H, ("thing", "container"), ""),
    ("move build", _H, ("furniture",), ""),
    ("see watch notice photograph follow describe draw", _H, _SEEABLE, ""),
    ("read print sign translate finish", _H, ("readable",), ""),
    ("write send post", _H, ("readable",), ""),
    ("drive park wash repair sell buy", _H, ("vehicle",), ""),
    ("ride", _H, ("animal", "vehicle"), ""),
    ("visit leave enter explore clean paint", _H, ("place",), ""),
    ("meet call help thank invite teach ask visit follow join greet hug wake forgive pay", _H, ("person",), ""),
    ("feed chase catch train wash brush", _H, ("animal",), ""),
    ("chase follow", ("animal",), ANIMATE, ""),
    ("wear iron fold wash", _H, ("clothing",), ""),
    ("play tune", _H, ("instrument",), ""),
    ("plant water pick grow cut", _H, ("plant",), ""),
    (
        "discuss explain understand describe remember forget share solve answer change accept ignore suggest",
        _H,
        ("abstract",),
        "",
    ),
    ("attend enjoy miss organize plan cancel watch", _H, ("event",), ""),
    ("need want like love share ignore accept forget remember find lose", _H, ("info",), ""),
    ("look", ANIMATE, _SEEABLE, "at"),
    ("listen", _H, ("person",), "to"),
    ("wait", ANIMATE, ("person", "vehicle"), "for"),
    ("talk", _H, ("person",), "to"),
    ("think talk dream worry", _H, ("abstract", "event", "place", "person"), "about"),
    ("laugh", _H, ("person", "animal", "abstract"), "at"),
    ("ask search look", _H, PORTABLE, "for"),
    ("search look", _H, ("animal", "person"), "for"),
]
# intransitive verbs (take an optional place phrase)
_INTRANSITIVE = {
    "sleep laugh smile wait work sing dance swim run walk jump cry shout rest play sit stand "
    "arrive stay talk listen cook read write eat study relax hide fall hurry whistle": _H,
    "sleep eat run walk jump swim rest play sit hide wait": ("animal",),
}
# verbs of motion that take a destination ("went to the station")
MOTION_VERBS: tuple[Verb, ...] = tuple(
    make_verb(v, _H) for v in "go walk run drive fly travel hurry return come ride sail".split()
)


def _build_verbs() -> tuple[Verb, ...]:
    verbs: dict[tuple, Verb] = {}
    for words, subj, obj, prep in _VERB_TABLE:
        for w in words.split():
            verbs[(w, subj, obj, prep)] = make_verb(w, subj, obj, prep)
    for words, subj in _INTRANSITIVE.items():
        for w in words.split():
            verbs[(w, subj, (), "")] = make_verb(w, subj)
    return tuple(verbs.values())


VERBS: tuple[Verb, ...] = _build_verbs()
TRANSITIVE = tuple(v for v in VERBS if v.obj)
INTRANSITIVE = tuple(v for v in VERBS if not v.obj)
# verbs that take "to" + infinitive ("she wants to visit the museum") and reporting verbs
# that take a "that" clause ("the doctor said that ...")
TO_VERBS: tuple[Verb, ...] = tuple(
    make_verb(v, _H) for v in "want need try decide hope plan forget promise like refuse agree learn".split()
)
SAY_VERBS: tuple[Verb, ...] = tuple(
    make_verb(v, _H) for v in "say think know believe hear feel explain remember notice suspect guess claim".split()
)


# ---------------------------------------------------------------------------- adjectives

# adjective group -> words; noun kind -> groups it accepts before the noun ("attributive")
# and after "is/seems" ("predicative"). ADJ_ORDER is English adjective order, so two
# adjectives come out as "the big old wooden box".
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "opinion": tuple(
        """nice lovely beautiful strange wonderful terrible perfect ordinary famous
        expensive cheap precious fancy simple pretty ugly excellent awful special""".split()
    ),
    "size": tuple("big small large tiny huge little tall short long heavy light narrow wide".split()),
    "age": tuple("old new young ancient modern".split()),
    "color": tuple("red blue green yellow white black brown gray pink purple golden silver dark bright".split()),
    "material": tuple("wooden plastic metal leather paper cotton woolen glass stone".split()),
    "condition": tuple("clean dirty broken wet dry shiny dusty".split()),
    "fullness": tuple("empty full".split()),
    "temperature": tuple("warm cold hot cool".split()),
    "bustle": tuple("quiet noisy busy crowded peaceful".split()),
    "food": tuple("fresh ripe sweet sour spicy delicious salty bitter crunchy tasty".split()),
    "mood": tuple(
        """hungry tired happy sad angry friendly clever brave shy kind polite lazy nervous
        proud calm curious patient rich poor honest gentle lonely cheerful sleepy worried
        excited bored careful grumpy""".split()
    ),
    "animal": tuple("wild tame fluffy noisy sleepy hungry playful".split()),
    "abstract": tuple(
        """important difficult easy simple interesting boring serious funny strange
        clever silly brilliant secret useful terrible""".split()
    ),
}
# per-kind narrowing of a group ("a tall teacher", not "a wide teacher"; "a young dog", "an ancient castle")
ADJ_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("person", "size"): ("tall", "short", "little", "big"),
    ("person", "age"): ("old", "young"),
    ("animal", "size"): ("big", "small", "tiny", "huge", "little", "large"),
    ("animal", "age"): ("old", "young"),
    ("food", "size"): ("big", "small", "large", "little", "huge"),
    ("plant", "age"): ("old", "young"),
    ("place", "size"): ("big", "small", "large", "tiny", "huge", "little", "narrow", "wide"),
}
for (_kind, _group), _words in ADJ_OVERRIDES.items():
    assert set(_words) <= set(ADJECTIVES[_group]), (_kind, _group)
for _kind in (
    "vehicle",
    "thing",
    "container",
    "furniture",
    "fixture",
    "readable",
    "clothing",
    "instrument",
    "place",
    "event",
    "abstract",
):
    ADJ_OVERRIDES.setdefault((_kind, "age"), ("old", "new", "ancient", "modern"))


def adjectives_for(kind: str, group: str) -> tuple[str, ...]:
    return ADJ_OVERRIDES.get((kind, group), ADJECTIVES[group])


ADJ_ORDER = (
    "opinion",
    "size",
    "mood",
    "animal",
    "food",
    "condition",
    "fullness",
    "temperature",
    "bustle",
    "abstract",
    "age",
    "color",
    "material",
)
KIND_ADJ_GROUPS: dict[str, tuple[str, ...]] = {
    "person": ("opinion", "size", "age", "mood"),
    "animal": ("size", "age", "color", "animal"),
    "food": ("size", "food", "color", "temperature"),
    "drink": ("food", "temperature"),
    "vehicle": ("opinion", "size", "age", "color", "condition", "bustle"),
    "thing": ("opinion", "size", "age", "color", "material", "condition"),
    "container": ("size", "age", "color", "material", "condition", "fullness"),
    "furniture": ("opinion", "size", "age", "color", "material", "condition"),
    "fixture": ("size", "age", "color", "material", "condition"),
    "readable": ("opinion", "size", "age", "abstract"),
    "clothing": ("opinion", "size", "age", "color", "material", "condition"),
    "instrument": ("opinion", "size", "age", "color", "material"),
    "plant": ("opinion", "size", "age", "color"),
    "place": ("opinion", "size", "age", "bustle", "condition"),
    "event": ("opinion", "size", "abstract"),
    "abstract": ("opinion", "abstract"),
    "info": ("opinion", "abstract"),
}
PREDICATIVE_GROUPS: dict[str, tuple[str, ...]] = {
    "person": ("mood",),
    "animal": ("animal", "mood"),
    "food": ("food", "temperature"),
    "drink": ("food", "temperature"),
    "vehicle": ("condition", "bustle", "opinion"),
    "thing": ("condition", "opinion"),
    "container": ("condition", "fullness"),
    "furniture": ("condition", "opinion"),
    "fixture": ("condition",),
    "readable": ("abstract",),
    "clothing": ("condition", "opinion"),
    "instrument": ("opinion",),
    "plant": ("opinion", "size"),
    "place": ("bustle", "temperature", "opinion"),
    "event": ("abstract", "opinion"),
    "abstract": ("abstract",),
    "info": ("abstract", "opinion"),
}
COMPARATIVES = {
    "big": "bigger",
    "small": "smaller",
    "old": "older",
    "young": "younger",
    "tall": "taller",
    "short": "shorter",
    "long": "longer",
    "fast": "faster",
    "slow": "slower",
    "cheap": "cheaper",
    "warm": "warmer",
    "cold": "colder",
    "happy": "happier",
    "busy": "busier",
    "quiet": "quieter",
    "clean": "cleaner",
    "heavy": "heavier",
    "easy": "easier",
    "strong": "stronger",
    "large": "larger",
    "new": "newer",
    "sweet": "sweeter",
    "fresh": "fresher",
    "noisy": "noisier",
    "wide": "wider",
}
# comparatives that make sense per kind
KIND_COMPARATIVES: dict[str, tuple[str, ...]] = {
    "person": ("old", "young", "tall", "short", "happy", "busy", "quiet", "strong"),
    "animal": ("big", "small", "old", "young", "fast", "slow", "heavy", "strong", "quiet", "noisy"),
    "vehicle": ("big", "small", "old", "new", "fast", "slow", "cheap", "clean", "heavy", "quiet"),
    "place": ("big", "small", "old", "quiet", "busy", "clean", "warm", "cold", "noisy", "large"),
    "thing": ("big", "small", "old", "new", "cheap", "heavy", "clean", "large"),
    "food": ("big", "small", "sweet", "fresh", "cheap"),
    "readable": ("long", "short", "old", "new", "easy"),
}

ADVERBS_MANNER = tuple(
    """quickly slowly carefully quietly loudly happily sadly politely patiently
    gently suddenly easily nervously proudly secretly angrily calmly eagerly badly well early late
    together again alone""".split()
)
ADVERBS_FREQUENCY = tuple("always usually often sometimes never rarely seldom".split())
ADVERBS_SENTENCE = tuple(
    """suddenly finally luckily unfortunately actually honestly apparently
    surprisingly meanwhile later afterwards""".split()
)
DEGREE = tuple("very quite really rather extremely too so".split())


# ---------------------------------------------------------------------------- names, places, time

FIRST_NAMES = tuple(
    """james john robert michael william david richard thomas charles daniel matthew
    anthony mark paul steven andrew joshua kevin brian george edward peter henry jack oliver harry
    samuel benjamin lucas noah liam ethan simon martin frank arthur mary patricia jennifer linda
    elizabeth barbara susan jessica sarah karen nancy lisa margaret sandra emily donna michelle carol
    amanda laura rachel emma olivia sophia charlotte amelia grace lucy hannah alice helen anna rose
    ruth clara julia maria kate ellen victoria sophie jane""".split()
)
SURNAMES = tuple(
    """smith jones brown taylor wilson johnson davies evans roberts walker wright
    robinson thompson white hughes edwards green hall wood harris martin jackson clarke lewis
    baker cooper turner parker morgan miller""".split()
)
TITLES = tuple("mister doctor professor miss captain".split())
CITIES = tuple(
    """london paris rome berlin madrid tokyo boston chicago dublin sydney toronto vienna
    prague lisbon cairo athens oslo amsterdam edinburgh glasgow manchester seattle denver houston
    atlanta montreal venice florence""".split()
)
COUNTRIES = tuple(
    """france spain italy germany canada mexico brazil japan china india egypt ireland
    scotland wales england australia norway sweden poland greece portugal peru chile kenya""".split()
)

DAYS = tuple("monday tuesday wednesday thursday friday saturday sunday".split())
MONTHS = tuple("january february march april may june july august september october november december".split())
SEASONS = tuple("spring summer autumn winter".split())

TIMES_OF_DAY = tuple("morning afternoon evening night".split())
UNITS = tuple("dollar pound minute hour day week month year mile".split())
OPENERS = ("well", "oh", "yes", "no", "okay", "perhaps", "maybe", "of course", "in fact", "by the way")
TIME_WORDS = tuple(
    """yesterday today tomorrow tonight last next ago already just yet still soon now
    later noon midnight weekend times twice once born home back time""".split()
)
# words used by fixed templates: "my favorite coat", "costs ten dollars and five cents", "a lot of",
# "what time does the concert begin", "the dog seems hungry"
TEMPLATE_WORDS = tuple(
    """favorite cost costs lot more cent cents begin start end leave arrive leaves
    arrives left arrived seem seems seemed look looks looked feel feels felt""".split()
)

PRONOUNS = {  # subject: (object, possessive, person/number for agreement)
    "i": ("me", "my", "1s"),
    "you": ("you", "your", "2"),
    "he": ("him", "his", "3s"),
    "she": ("her", "her", "3s"),
    "we": ("us", "our", "1p"),
    "they": ("them", "their", "3p"),
}
POSSESSIVES = ("my", "your", "his", "her", "our", "their")

_ONES = """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen""".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_words(n: int) -> str:
    """Cardinal 0..999999 in words: 342 -> 'three hundred and forty two'."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def ordinal_words(n: int) -> str:
    """Ordinal 1..99 in words: 23 -> 'twenty third'."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINALS:
        words[-1] = _ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_words(y: int) -> str:
    """Years as spoken: 1987 -> 'nineteen eighty seven', 2005 -> 'two thousand and five'."""
    if 2000 <= y < 2010:
        return number_words(y)
    hi, lo = divmod(y, 100)
    if lo == 0:
        return number_words(hi) + " hundred"
    return number_words(hi) + " " + (("oh " + _ONES[lo]) if lo < 10 else number_words(lo))


# ---------------------------------------------------------------------------- function words

FUNCTION_WORDS = tuple(
    """the a an this that these those some many few several every no any each
    another all both other one and but or so because although while when before after if until
    unless since than then there here to of in on at by for with from about into onto over under
    near behind beside between across along around inside outside through past without during
    towards next front opposite is am are was were be been being has have had do does did will would
    can could should must might may shall not it its it's i'm you're he's she's we're they're
    i've you've we've they've i'll you'll he'll she'll we'll they'll i'd let's don't doesn't didn't
    won't isn't aren't wasn't weren't hasn't haven't can't couldn't shouldn't wouldn't what where
    why who whose which how much please o'clock half quarter""".split()
)


def vocabulary() -> frozenset[str]:
    """Every word the lexicon defines, in all its inflected forms (``a-z`` and apostrophe)."""
    words: set[str] = set()
    for nouns in NOUNS.values():
        for n in nouns:
            words.add(n.sg)
            if n.pl:
                words.add(n.pl)
    for v in VERBS + MOTION_VERBS:
        words.update((v.base, v.third, v.past, v.participle, v.ing))
        if v.prep:
            words.add(v.prep)
    for v in TO_VERBS + SAY_VERBS:
        words.update((v.base, v.third, v.past, v.participle, v.ing))
    for group in ADJECTIVES.values():
        words.update(group)
    words.update(COMPARATIVES)
    words.update(COMPARATIVES.values())
    for seq in (
        ADVERBS_MANNER,
        ADVERBS_FREQUENCY,
        ADVERBS_SENTENCE,
        DEGREE,
        FIRST_NAMES,
        SURNAMES,
        TITLES,
        CITIES,
        COUNTRIES,
        DAYS,
        MONTHS,
        SEASONS,
        POSSESSIVES,
        TIMES_OF_DAY,
        TIME_WORDS,
        TEMPLATE_WORDS,
    ):
        words.update(seq)
    words.update(plural(d) for d in DAYS)
    words.update(UNITS)
    words.update(plural(u) for u in UNITS)
    for opener in OPENERS:
        words.update(opener.split())
    words.update(n + "'s" for n in FIRST_NAMES)
    for subj, (obj, poss, _) in PRONOUNS.items():
        words.update((subj, obj, poss))
    for n in list(range(0, 100)) + [100, 1000]:
        words.update(number_words(n).split())
    for n in range(1, 32):
        words.update(ordinal_words(n).split())
    words.update(FUNCTION_WORDS)
    return frozenset(words)


def _check() -> None:
    bad = sorted(w for w in vocabulary() if out_of_alphabet(w) or " " in w or not w)
    if bad:
        raise AssertionError(f"lexicon words outside the alphabet: {bad[:20]}")
    nouns = [n.sg for group in NOUNS.values() for n in group]
    repeated = sorted({n for n in nouns if nouns.count(n) > 1})
    if repeated:
        raise AssertionError(f"nouns listed twice: {repeated}")


_check()
