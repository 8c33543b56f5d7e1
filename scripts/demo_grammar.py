"""A seeded probabilistic grammar of English sentences with gold UPOS tags.

Used to train and analyse the bundled demo MoE model (``core/demo/model``): every sentence comes with its
gold Universal POS tags, so the demo corpus needs no external treebank.

The grammar covers all 17 UD UPOS tags, subject-verb agreement, tense/aspect/modality, negation,
yes/no and wh-questions (AUX inversion), relative clauses ("that"/"which"/"who"), subordinate clauses
(because/if/when/although/while/before/after), coordination, numbers (digits and words), currency and
percent signs (SYM), e-mail addresses, URLs and foreign words (X), interjections and punctuation.

It deliberately reuses word forms whose POS depends on context ("run", "light", "back", "that",
"book", "will", "can", "like", "to", "round", "fast", "well", "before", "after", "no", ...), so a model
has to use context -- not only the word form -- to tell them apart.

Tagging follows UD English EWT conventions where they matter: possessive determiners ("my", "her")
are PRON, relative "that"/"which"/"who" are PRON, infinitival "to" and "not"/"n't"/possessive "'s" are PART,
existential "there" is PRON, "please" is INTJ, modal verbs and auxiliary be/have/do are AUX.

Public API::

    generate(n, seed) -> list[list[tuple[form, upos, space_after]]]
    to_conllu(sentences, *, start_id=1, prefix="demo") -> str
    sentence_text(sentence) -> str

Only the standard library is used; output is fully determined by ``(n, seed)``.
"""

from __future__ import annotations

import random
from typing import Iterable

__all__ = ["generate", "to_conllu", "sentence_text", "UPOS_TAGS", "AMBIGUOUS_FORMS"]

Token = tuple[str, str, bool]  # (form, upos, space_after)

UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)

#: Word forms (lowercased) that the grammar emits with more than one UPOS, by design.
AMBIGUOUS_FORMS: dict[str, tuple[str, ...]] = {
    "run": ("NOUN", "VERB"),
    "light": ("NOUN", "ADJ", "VERB"),
    "back": ("ADV", "NOUN", "ADJ", "VERB"),
    "that": ("SCONJ", "PRON", "DET"),
    "book": ("NOUN", "VERB"),
    "will": ("AUX", "NOUN"),
    "can": ("AUX", "NOUN"),
    "like": ("VERB", "ADP"),
    "to": ("PART", "ADP"),
    "round": ("ADJ", "ADP", "ADV", "NOUN"),
    "fast": ("ADJ", "ADV"),
    "well": ("ADV", "INTJ", "NOUN", "ADJ"),
    "before": ("ADP", "SCONJ"),
    "after": ("ADP", "SCONJ"),
    "no": ("DET", "INTJ"),
    "watch": ("NOUN", "VERB"),
    "play": ("NOUN", "VERB"),
    "walk": ("NOUN", "VERB"),
    "work": ("NOUN", "VERB"),
    "this": ("DET", "PRON"),
    "there": ("ADV", "PRON"),
}

# --------------------------------------------------------------------------------------------- lexicon

# nouns: (singular, plural, kind) ; kind: "thing", "person", "place", "abstract", "time"
_NOUNS: list[tuple[str, str, str]] = [
    ("dog", "dogs", "thing"), ("cat", "cats", "thing"), ("house", "houses", "place"), ("car", "cars", "thing"),
    ("book", "books", "thing"), ("letter", "letters", "thing"), ("window", "windows", "thing"),
    ("door", "doors", "thing"), ("table", "tables", "thing"), ("bag", "bags", "thing"),
    ("phone", "phones", "thing"), ("computer", "computers", "thing"), ("key", "keys", "thing"),
    ("light", "lights", "thing"), ("can", "cans", "thing"), ("watch", "watches", "thing"),
    ("box", "boxes", "thing"), ("bottle", "bottles", "thing"), ("ticket", "tickets", "thing"),
    ("picture", "pictures", "thing"), ("song", "songs", "thing"), ("movie", "movies", "thing"),
    ("coffee", "coffees", "thing"), ("bread", "breads", "thing"), ("apple", "apples", "thing"),
    ("report", "reports", "thing"), ("email", "emails", "thing"), ("message", "messages", "thing"),
    ("ball", "balls", "thing"), ("candle", "candles", "thing"), ("chair", "chairs", "thing"),
    ("teacher", "teachers", "person"), ("student", "students", "person"), ("doctor", "doctors", "person"),
    ("child", "children", "person"), ("man", "men", "person"), ("woman", "women", "person"),
    ("friend", "friends", "person"), ("driver", "drivers", "person"), ("neighbor", "neighbors", "person"),
    ("manager", "managers", "person"), ("baby", "babies", "person"), ("player", "players", "person"),
    ("city", "cities", "place"), ("garden", "gardens", "place"), ("river", "rivers", "place"),
    ("office", "offices", "place"), ("park", "parks", "place"), ("school", "schools", "place"),
    ("store", "stores", "place"), ("kitchen", "kitchens", "place"), ("hotel", "hotels", "place"),
    ("restaurant", "restaurants", "place"), ("station", "stations", "place"), ("well", "wells", "place"),
    ("idea", "ideas", "abstract"), ("problem", "problems", "abstract"), ("plan", "plans", "abstract"),
    ("question", "questions", "abstract"), ("answer", "answers", "abstract"), ("story", "stories", "abstract"),
    ("run", "runs", "abstract"), ("walk", "walks", "abstract"), ("play", "plays", "abstract"),
    ("work", "works", "abstract"), ("will", "wills", "abstract"), ("back", "backs", "abstract"),
    ("round", "rounds", "abstract"), ("price", "prices", "abstract"), ("game", "games", "abstract"),
    ("meeting", "meetings", "abstract"), ("party", "parties", "abstract"), ("trip", "trips", "abstract"),
    ("day", "days", "time"), ("week", "weeks", "time"), ("morning", "mornings", "time"),
    ("year", "years", "time"), ("hour", "hours", "time"), ("night", "nights", "time"),
    ("minute", "minutes", "time"), ("month", "months", "time"),
]
_NOUN_WEIGHTS: dict[str, float] = {  # make the ambiguous noun readings frequent enough to learn
    "run": 3.0, "light": 3.0, "back": 2.0, "book": 3.0, "will": 1.5, "can": 2.0, "watch": 2.0,
    "play": 2.0, "walk": 2.0, "work": 2.0, "round": 1.5, "well": 1.5,
}

# verbs: base, 3sg, past, past participle, -ing, frame
# frames: "intr" (no object), "tr" (NP object), "clause" (that-clause / bare clause), "inf" (to + VP),
#         "motion" (to/into PP or "back"), "like" (NP object, liking)
_VERBS: list[tuple[str, str, str, str, str, str]] = [
    ("run", "runs", "ran", "run", "running", "motion"),
    ("walk", "walks", "walked", "walked", "walking", "motion"),
    ("go", "goes", "went", "gone", "going", "motion"),
    ("come", "comes", "came", "come", "coming", "motion"),
    ("drive", "drives", "drove", "driven", "driving", "motion"),
    ("move", "moves", "moved", "moved", "moving", "motion"),
    ("sleep", "sleeps", "slept", "slept", "sleeping", "intr"),
    ("laugh", "laughs", "laughed", "laughed", "laughing", "intr"),
    ("arrive", "arrives", "arrived", "arrived", "arriving", "intr"),
    ("wait", "waits", "waited", "waited", "waiting", "intr"),
    ("smile", "smiles", "smiled", "smiled", "smiling", "intr"),
    ("work", "works", "worked", "worked", "working", "intr"),
    ("play", "plays", "played", "played", "playing", "intr"),
    ("sing", "sings", "sang", "sung", "singing", "intr"),
    ("see", "sees", "saw", "seen", "seeing", "tr"),
    ("read", "reads", "read", "read", "reading", "tr"),
    ("write", "writes", "wrote", "written", "writing", "tr"),
    ("find", "finds", "found", "found", "finding", "tr"),
    ("build", "builds", "built", "built", "building", "tr"),
    ("open", "opens", "opened", "opened", "opening", "tr"),
    ("book", "books", "booked", "booked", "booking", "tr"),
    ("light", "lights", "lit", "lit", "lighting", "tr"),
    ("back", "backs", "backed", "backed", "backing", "tr"),
    ("watch", "watches", "watched", "watched", "watching", "tr"),
    ("help", "helps", "helped", "helped", "helping", "tr"),
    ("visit", "visits", "visited", "visited", "visiting", "tr"),
    ("buy", "buys", "bought", "bought", "buying", "tr"),
    ("sell", "sells", "sold", "sold", "selling", "tr"),
    ("fix", "fixes", "fixed", "fixed", "fixing", "tr"),
    ("send", "sends", "sent", "sent", "sending", "tr"),
    ("take", "takes", "took", "taken", "taking", "tr"),
    ("make", "makes", "made", "made", "making", "tr"),
    ("call", "calls", "called", "called", "calling", "tr"),
    ("play", "plays", "played", "played", "playing", "tr"),
    ("like", "likes", "liked", "liked", "liking", "like"),
    ("love", "loves", "loved", "loved", "loving", "like"),
    ("need", "needs", "needed", "needed", "needing", "like"),
    ("think", "thinks", "thought", "thought", "thinking", "clause"),
    ("say", "says", "said", "said", "saying", "clause"),
    ("know", "knows", "knew", "known", "knowing", "clause"),
    ("believe", "believes", "believed", "believed", "believing", "clause"),
    ("hope", "hopes", "hoped", "hoped", "hoping", "clause"),
    ("want", "wants", "wanted", "wanted", "wanting", "inf"),
    ("try", "tries", "tried", "tried", "trying", "inf"),
    ("plan", "plans", "planned", "planned", "planning", "inf"),
    ("decide", "decides", "decided", "decided", "deciding", "inf"),
]
_VERB_WEIGHTS: dict[str, float] = {"run": 3.0, "book": 3.0, "light": 2.5, "back": 1.5, "like": 3.0, "watch": 1.5}

_ADJS: list[str] = [
    "big", "small", "red", "old", "new", "happy", "light", "fast", "back", "round", "good", "bad",
    "quiet", "bright", "early", "late", "tired", "long", "short", "green", "cold", "warm", "busy",
    "cheap", "strange", "beautiful", "important", "difficult", "empty", "young",
]
_ADJ_WEIGHTS: dict[str, float] = {"light": 3.0, "fast": 3.0, "back": 2.0, "round": 2.5}
_PRED_ADJS: list[str] = [
    "happy", "tired", "busy", "late", "early", "cold", "warm", "good", "ready", "quiet", "well",
    "difficult", "important", "strange", "beautiful", "cheap", "empty", "light", "fast",
]
_DEGREE_ADVS = ["very", "really", "quite", "too", "so", "extremely"]
_MANNER_ADVS = ["quickly", "slowly", "carefully", "quietly", "well", "fast", "badly", "easily", "happily"]
_TIME_ADVS = ["today", "yesterday", "tomorrow", "soon", "now", "later", "again", "here", "there"]
_FREQ_ADVS = ["often", "never", "always", "sometimes", "usually", "also", "just", "still"]
_SENT_ADVS = ["However", "Then", "Now", "Finally", "Unfortunately", "Actually", "Still"]

_PLACE_PREPS = ["in", "on", "at", "near", "behind", "under", "into", "from", "round", "across", "by"]
_OTHER_PREPS = ["with", "for", "about", "without", "after", "before", "during", "like", "of"]
_TIME_PREPS = ["after", "before", "during", "on", "in", "at"]

_PROPN_PEOPLE = ["Alice", "Bob", "Maria", "John", "Sarah", "David", "Chen", "Fatima", "Carlos", "Emma", "Tom"]
_PROPN_PLACES = ["London", "Paris", "Tokyo", "Berlin", "Chicago", "Seattle", "Boston"]
_PROPN_MULTI = [("New", "York"), ("San", "Francisco"), ("Hong", "Kong"), ("Los", "Angeles")]
_PROPN_ORGS = ["Google", "Microsoft", "Amazon", "Toyota", "Apple", "Netflix", "Boeing"]
_PROPN_DAYS = ["Monday", "Tuesday", "Friday", "Sunday", "January", "March", "July"]

_NUM_WORDS = ["two", "three", "four", "five", "six", "ten", "twelve", "twenty", "fifty", "hundred"]
_NUM_DIGITS = ["2", "3", "4", "5", "7", "10", "12", "15", "20", "30", "45", "100", "250", "2024", "1999"]

_INTJS = ["Oh", "Wow", "Hey", "Yes", "Well", "Hello", "Ouch", "Um", "No", "Okay", "Ah", "Please"]
_FOREIGN_X = [["bonjour"], ["ciao"], ["et", "cetera"], ["de", "facto"], ["ad", "hoc"], ["vice", "versa"],
              ["gracias"], ["danke"]]
_EMAILS = ["alice@example.com", "info@acme.org", "bob.smith@mail.net", "help@shop.co.uk", "maria@uni.edu"]
_URLS = ["www.example.com", "http://acme.org", "www.city-news.net", "https://shop.example.org/help"]

# pronouns: form -> (person, number) for subjects ; objects separately
_SUBJ_PRONS = [("I", 1, "sg"), ("you", 2, "pl"), ("he", 3, "sg"), ("she", 3, "sg"), ("it", 3, "sg"),
               ("we", 1, "pl"), ("they", 3, "pl")]
_OBJ_PRONS = ["me", "you", "him", "her", "it", "us", "them"]
_POSS_PRONS = ["my", "your", "his", "her", "its", "our", "their"]
_INDEF_PRONS = ["something", "everyone", "nobody", "someone", "everything", "nothing"]

_MODALS = ["will", "can", "should", "must", "might", "would", "could", "may"]

_SUBORD_CAUSE = ["because", "if", "when", "although", "while", "before", "after", "since", "unless"]


def _weighted(rng: random.Random, items: list, weights: dict[str, float], key=lambda x: x):
    w = [weights.get(key(it), 1.0) for it in items]
    return rng.choices(items, weights=w, k=1)[0]


class _Gen:
    """One sentence builder; holds the RNG and the token list under construction."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.toks: list[list] = []  # [form, upos, space_after]

    # -- helpers ------------------------------------------------------------------------------
    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def emit(self, form: str, upos: str) -> None:
        self.toks.append([form, upos, True])

    def punct(self, form: str) -> None:
        """Punctuation attaches to the previous token (no space before it)."""
        if self.toks:
            self.toks[-1][2] = False
        self.toks.append([form, "PUNCT", True])

    def glue(self) -> None:
        """No space after the last token (e.g. "$" before a number, "does" before "n't")."""
        if self.toks:
            self.toks[-1][2] = False

    # -- noun phrases ---------------------------------------------------------------------------
    def number(self) -> None:
        r = self.rng.random()
        if r < 0.5:
            self.emit(self.rng.choice(_NUM_DIGITS), "NUM")
        else:
            self.emit(self.rng.choice(_NUM_WORDS), "NUM")

    def det_for(self, number: str, first_letter: str) -> tuple[str, str]:
        rng = self.rng
        if number == "sg":
            d = rng.choices(["the", "a", "this", "that", "every", "each", "no", "one", "POSS"],
                            weights=[40, 25, 6, 6, 3, 2, 2, 1, 12])[0]
        else:
            d = rng.choices(["the", "these", "those", "some", "many", "all", "no", "NUM", "POSS", ""],
                            weights=[30, 6, 5, 8, 4, 3, 2, 8, 12, 12])[0]
        if d == "a" and first_letter in "aeiou":
            d = "an"
        if d == "POSS":
            return rng.choice(_POSS_PRONS), "PRON"
        if d == "one":
            return "one", "NUM"
        return d, "DET"

    def np(self, *, role: str = "obj", kind: str | None = None, allow_rel: bool = True,
           depth: int = 0) -> tuple[int, str]:
        """Emit a noun phrase; return (person, number) for agreement."""
        rng = self.rng
        r = rng.random()
        if role in ("subj", "subj_q") and r < 0.30:
            form, person, number = rng.choice(_SUBJ_PRONS)
            self.emit(form, "PRON")
            return person, number
        if role == "obj" and r < 0.12:
            self.emit(rng.choice(_OBJ_PRONS), "PRON")
            return 3, "sg"
        if r < 0.36:
            self.propn()
            return 3, "sg"
        if r < 0.39:
            self.emit(rng.choice(_INDEF_PRONS), "PRON")
            return 3, "sg"
        if r < 0.41 and role == "obj":
            # "that" / "this" as a pronoun: "I like that."
            self.emit(rng.choice(["that", "this", "those"]), "PRON")
            return 3, "sg"
        pool = [n for n in _NOUNS if kind is None or n[2] == kind]
        sg, pl, nkind = _weighted(rng, pool, _NOUN_WEIGHTS, key=lambda n: n[0])
        number = "pl" if rng.random() < 0.3 else "sg"
        noun = pl if number == "pl" else sg
        # determiner + adjectives
        pre: list[tuple[str, str]] = []
        if self.p(0.35):
            if self.p(0.15):
                pre.append((rng.choice(_DEGREE_ADVS[:3]), "ADV"))
            pre.append((_weighted(rng, _ADJS, _ADJ_WEIGHTS), "ADJ"))
            if self.p(0.12):
                pre.append((_weighted(rng, _ADJS, _ADJ_WEIGHTS), "ADJ"))
        first = (pre[0][0] if pre else noun)[0].lower()
        if number == "sg" and self.p(0.05) and role != "subj_q":
            # possessive proper noun: "Alice 's book"
            self.propn(single=True)
            self.emit("'s", "PART")
            self.toks[-2][2] = False
            det = None
        else:
            det = self.det_for(number, first)
        if det is not None:
            if det[0] == "NUM":
                self.number()
            elif det[0]:
                form = det[0]
                if not self.toks:
                    form = form.capitalize()
                self.emit(form, det[1])
        for f, t in pre:
            self.emit(f, t)
        # noun-noun compound occasionally ("the morning run", "a coffee can")
        if self.p(0.06):
            mod = rng.choice(["morning", "coffee", "city", "night", "school", "office", "garden", "back"])
            self.emit(mod, "NOUN")
        self.emit(noun, "NOUN")
        if depth < 1 and allow_rel:
            r2 = rng.random()
            if r2 < 0.10:
                self.pp(depth=depth + 1)
            elif r2 < 0.18:
                self.relative(nkind, number)
        return 3, number

    def propn(self, single: bool = False) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            self.emit(rng.choice(_PROPN_PEOPLE), "PROPN")
            if not single and self.p(0.1):
                self.emit(rng.choice(["Smith", "Garcia", "Lee", "Brown"]), "PROPN")
        elif r < 0.65 and not single:
            a, b = rng.choice(_PROPN_MULTI) if self.p(0.3) else (rng.choice(_PROPN_PLACES), None)
            self.emit(a, "PROPN")
            if b:
                self.emit(b, "PROPN")
        elif r < 0.85:
            self.emit(rng.choice(_PROPN_ORGS), "PROPN")
        else:
            self.emit(rng.choice(_PROPN_PEOPLE), "PROPN")

    def relative(self, nkind: str, number: str) -> None:
        rng = self.rng
        rel = "who" if nkind == "person" and self.p(0.5) else rng.choice(["that", "that", "which"])
        if self.p(0.5):
            # subject relative: "the dog that runs fast"
            self.emit(rel, "PRON")
            self.vp(3, number, simple=True)
        else:
            # object relative: "the book that she read"
            self.emit(rel, "PRON")
            self.np(role="subj", allow_rel=False, depth=1)
            v = _weighted(rng, [v for v in _VERBS if v[5] in ("tr", "like")], _VERB_WEIGHTS, key=lambda v: v[0])
            self.emit(v[2], "VERB")

    def pp(self, depth: int = 0, kind: str = "any") -> None:
        rng = self.rng
        r = rng.random()
        if kind == "time" or (kind == "any" and r < 0.2):
            prep = rng.choice(_TIME_PREPS)
            self.emit(prep, "ADP")
            if prep in ("on",) and self.p(0.7):
                self.emit(rng.choice(_PROPN_DAYS[:4]), "PROPN")
            elif prep == "in" and self.p(0.5):
                when = rng.choice(_PROPN_DAYS[4:] + ["2024", "1999"])
                self.emit(when, "NUM" if when.isdigit() else "PROPN")
            else:
                self.emit(rng.choice(["the", "the", "a", "that", "every"]), "DET")
                self.emit(rng.choice(["morning", "meeting", "party", "game", "night", "week", "day", "run",
                                      "walk", "trip", "round"]), "NOUN")
            return
        if kind == "place" or (kind == "any" and r < 0.6):
            self.emit(rng.choice(_PLACE_PREPS), "ADP")
            self.np(role="obj", kind="place" if self.p(0.7) else None, allow_rel=depth < 1, depth=depth + 1)
            return
        self.emit(rng.choice(_OTHER_PREPS), "ADP")
        self.np(role="obj", allow_rel=depth < 1, depth=depth + 1)

    # -- verb phrases ---------------------------------------------------------------------------
    def _agree_be(self, person: int, number: str, past: bool) -> str:
        if past:
            return "was" if (number == "sg" and person != 2) else "were"
        if person == 1 and number == "sg":
            return "am"
        return "is" if (number == "sg" and person == 3) else "are"

    def _agree_have(self, person: int, number: str) -> str:
        return "has" if (number == "sg" and person == 3) else "have"

    def _agree_do(self, person: int, number: str, past: bool) -> str:
        if past:
            return "did"
        return "does" if (number == "sg" and person == 3) else "do"

    def verb_complement(self, v: tuple) -> None:
        rng = self.rng
        frame = v[5]
        if frame in ("tr", "like"):
            if v[0] == "light" and self.p(0.6):
                d = rng.choice(["the", "a", "her", "my"])
                self.emit(d, "PRON" if d in ("her", "my") else "DET")
                self.emit(rng.choice(["candle", "fire", "lamp", "candles"]), "NOUN")
            elif v[0] == "book" and self.p(0.6):
                self.emit(rng.choice(["a", "the"]), "DET")
                self.emit(rng.choice(["table", "room", "ticket", "flight", "hotel", "trip"]), "NOUN")
                if self.p(0.4):
                    self.emit("for", "ADP")
                    self.number() if self.p(0.5) else self.propn(single=True)
            else:
                self.np(role="obj")
        elif frame == "clause":
            if self.p(0.6):
                self.emit("that", "SCONJ")
            self.clause(depth=1)
            return
        elif frame == "inf":
            self.emit("to", "PART")
            self.vp_base(rng.choice([x for x in _VERBS if x[5] != "inf"]))
            return
        elif frame == "motion":
            r = rng.random()
            if r < 0.3:
                self.emit("back", "ADV")
            elif r < 0.6:
                self.emit("to", "ADP")
                if self.p(0.4):
                    self.propn()
                else:
                    self.np(role="obj", kind="place", allow_rel=False)
            elif r < 0.7:
                self.emit("round", "ADV")
            elif r < 0.85:
                self.emit(rng.choice(["home", "fast", "quickly", "slowly", "away", "outside"]), "ADV")
        else:  # intr
            if self.p(0.25):
                self.emit(rng.choice(_MANNER_ADVS), "ADV")
        # optional trailing modifiers
        r = rng.random()
        if r < 0.25:
            self.pp()
        elif r < 0.33:
            self.emit(rng.choice(_TIME_ADVS), "ADV")
        elif r < 0.38:
            self.emit(rng.choice(["well", "fast", "back", "again"]), "ADV")

    def vp_base(self, v: tuple) -> None:
        self.emit(v[0], "VERB")
        self.verb_complement(v)

    def pick_verb(self) -> tuple:
        return _weighted(self.rng, _VERBS, _VERB_WEIGHTS, key=lambda v: v[0])

    def vp(self, person: int, number: str, *, simple: bool = False) -> None:
        """Finite verb phrase agreeing with (person, number)."""
        rng = self.rng
        third_sg = number == "sg" and person == 3
        r = rng.random()
        if simple:
            r = r * 0.55
        if r < 0.10 and not simple:
            # copula + adjective / NP / PP: "the light is green", "she was well"
            past = self.p(0.4)
            self.emit(self._agree_be(person, number, past), "AUX")
            if self.p(0.15):
                self.emit("not", "PART")
            r2 = rng.random()
            if r2 < 0.6:
                if self.p(0.3):
                    self.emit(rng.choice(_DEGREE_ADVS), "ADV")
                self.emit(rng.choice(_PRED_ADJS), "ADJ")
            elif r2 < 0.8:
                self.pp(kind="place")
            else:
                self.emit(rng.choice(["a", "the"]) if number == "sg" else "the", "DET")
                n = rng.choice([x for x in _NOUNS if x[2] == "person"])
                noun = n[0] if number == "sg" else n[1]
                self.emit(noun, "NOUN")
            return
        v = self.pick_verb()
        if r < 0.28:
            # present simple
            if self.p(0.12):
                self.emit(rng.choice(_FREQ_ADVS), "ADV")
            self.emit(v[1] if third_sg else v[0], "VERB")
        elif r < 0.48:
            # past simple
            self.emit(v[2], "VERB")
        elif r < 0.55 or simple:
            # modal + base
            m = rng.choices(_MODALS, weights=[5, 5, 2, 1, 1, 1, 1, 1])[0]
            self.emit(m, "AUX")
            if self.p(0.12):
                self.emit("not", "PART")
            self.emit(v[0], "VERB")
        elif r < 0.70:
            # progressive
            self.emit(self._agree_be(person, number, self.p(0.3)), "AUX")
            if self.p(0.08):
                self.emit("not", "PART")
            self.emit(v[4], "VERB")
        elif r < 0.82:
            # perfect
            self.emit(self._agree_have(person, number) if self.p(0.7) else "had", "AUX")
            if self.p(0.15):
                self.emit(rng.choice(["already", "never", "just"]), "ADV")
            self.emit(v[3], "VERB")
        else:
            # negation with do-support, sometimes contracted
            aux = self._agree_do(person, number, self.p(0.4))
            if self.p(0.5):
                self.emit(aux, "AUX")
                self.glue()
                self.emit("n't", "PART")
            else:
                self.emit(aux, "AUX")
                self.emit("not", "PART")
            self.emit(v[0], "VERB")
        self.verb_complement(v)

    # -- clauses --------------------------------------------------------------------------------
    def clause(self, depth: int = 0) -> None:
        rng = self.rng
        if self.p(0.06):
            # existential "there is/are"
            self.emit("There" if not self.toks else "there", "PRON")
            number = "pl" if self.p(0.35) else "sg"
            self.emit(self._agree_be(3, number, self.p(0.3)), "AUX")
            if number == "sg":
                self.emit("a" if self.p(0.6) else "no", "DET")
                n = _weighted(rng, _NOUNS, _NOUN_WEIGHTS, key=lambda x: x[0])
                if self.toks[-1][0] == "a" and n[0][0] in "aeiou":
                    self.toks[-1][0] = "an"
                self.emit(n[0], "NOUN")
            else:
                self.number() if self.p(0.5) else self.emit("some", "DET")
                n = _weighted(rng, _NOUNS, _NOUN_WEIGHTS, key=lambda x: x[0])
                self.emit(n[1], "NOUN")
            self.pp(kind="place")
            return
        person, number = self.np(role="subj", depth=depth)
        self.vp(person, number)

    def subordinate(self) -> None:
        sc = self.rng.choice(_SUBORD_CAUSE)
        self.emit(sc.capitalize() if not self.toks else sc, "SCONJ")
        self.clause(depth=1)

    def declarative(self) -> None:
        rng = self.rng
        end = "."
        if self.p(0.06):
            self.emit(rng.choice(_SENT_ADVS), "ADV")
            self.punct(",")
        front_sub = self.p(0.12)
        if front_sub:
            self.subordinate()
            self.punct(",")
        self.clause()
        r = rng.random()
        if r < 0.14 and not front_sub:
            self.emit(rng.choice(_SUBORD_CAUSE), "SCONJ")
            self.clause(depth=1)
        elif r < 0.26:
            if self.p(0.5):
                self.punct(",")
            self.emit(rng.choices(["and", "but", "or", "so"], weights=[5, 4, 1, 1])[0], "CCONJ")
            self.clause(depth=1)
        elif r < 0.31:
            # coordinated verb phrase: "... and then ..."
            self.emit("and", "CCONJ")
            self.emit("then", "ADV")
            self.vp_base(self.pick_verb())
        if self.p(0.05):
            end = "!"
        self.extras()
        self.punct(end)

    def extras(self) -> None:
        """Rare material: money, percentages, e-mail, URLs, foreign words, parentheticals."""
        rng = self.rng
        r = rng.random()
        if r < 0.03:
            self.emit("for", "ADP")
            self.emit(rng.choice(["$", "€", "£"]), "SYM")
            self.glue()
            self.emit(rng.choice(_NUM_DIGITS[:12]), "NUM")
        elif r < 0.05:
            self.emit("by", "ADP")
            self.emit(rng.choice(_NUM_DIGITS[:10]), "NUM")
            self.glue()
            self.emit("%", "SYM")
        elif r < 0.065:
            self.emit(rng.choice(["via", "at"]), "ADP")
            self.emit(rng.choice(_EMAILS), "X")
        elif r < 0.075:
            self.emit("on", "ADP")
            self.emit(rng.choice(_URLS), "X")
        elif r < 0.085:
            self.punct(",")
            for w in rng.choice(_FOREIGN_X):
                self.emit(w, "X")
        elif r < 0.095:
            self.emit("(", "PUNCT")
            self.glue()
            self.number()
            self.emit(rng.choice(["+", "x", "="]), "SYM")
            self.number()
            self.punct(")")

    def yes_no_question(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            m = rng.choice(["Will", "Can", "Should", "Could", "Would", "Might"])
            self.emit(m, "AUX")
            self.np(role="subj_q", allow_rel=False)
            v = self.pick_verb()
            self.vp_base(v)
        elif kind < 0.7:
            person, number = self._subject_lookahead()
            aux = self._agree_do(person, number, self.p(0.3))
            self.emit(aux.capitalize(), "AUX")
            if self.p(0.12):
                self.glue()
                self.emit("n't", "PART")
            self._emit_subject(person, number)
            self.vp_base(self.pick_verb())
        else:
            person, number = self._subject_lookahead()
            self.emit(self._agree_be(person, number, self.p(0.3)).capitalize(), "AUX")
            self._emit_subject(person, number)
            if self.p(0.5):
                self.emit(rng.choice(_PRED_ADJS), "ADJ")
            else:
                v = self.pick_verb()
                self.emit(v[4], "VERB")
                self.verb_complement(v)
        self.punct("?")

    def _subject_lookahead(self) -> tuple[int, str]:
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            form, person, number = rng.choice(_SUBJ_PRONS)
            self._pending = ("pron", form)
            return person, number
        if r < 0.65:
            self._pending = ("propn", None)
            return 3, "sg"
        number = "pl" if self.p(0.3) else "sg"
        self._pending = ("np", number)
        return 3, number

    def _emit_subject(self, person: int, number: str) -> None:
        kind, val = self._pending
        if kind == "pron":
            self.emit(val, "PRON")
        elif kind == "propn":
            self.propn()
        else:
            sg, pl, _k = _weighted(self.rng, _NOUNS, _NOUN_WEIGHTS, key=lambda n: n[0])
            det = self.rng.choice(["the", "your", "these", "our"]) if number == "pl" else \
                self.rng.choice(["the", "the", "your", "that", "this", "her"])
            upos = "PRON" if det in ("your", "our", "her") else "DET"
            self.emit(det, upos)
            if self.p(0.3):
                self.emit(_weighted(self.rng, _ADJS, _ADJ_WEIGHTS), "ADJ")
            self.emit(pl if number == "pl" else sg, "NOUN")

    def wh_question(self) -> None:
        rng = self.rng
        wh = rng.choice(["What", "Where", "When", "Why", "How", "Who", "Which"])
        if wh == "Who" and self.p(0.5):
            self.emit("Who", "PRON")
            self.vp(3, "sg", simple=False)
            self.punct("?")
            return
        if wh == "Which":
            self.emit("Which", "DET")
            n = _weighted(rng, _NOUNS, _NOUN_WEIGHTS, key=lambda x: x[0])
            self.emit(n[0], "NOUN")
        elif wh in ("What", "Who"):
            self.emit(wh, "PRON")
        else:
            self.emit(wh, "ADV")
        person, number = self._subject_lookahead()
        r = rng.random()
        if r < 0.5:
            self.emit(self._agree_do(person, number, self.p(0.4)), "AUX")
            self._emit_subject(person, number)
            v = self.pick_verb()
            self.emit(v[0], "VERB")
            if wh not in ("What", "Who", "Which") and v[5] in ("tr", "like"):
                self.np(role="obj", allow_rel=False)
        elif r < 0.8:
            self.emit(rng.choice(["will", "can", "should", "would"]), "AUX")
            self._emit_subject(person, number)
            v = self.pick_verb()
            self.emit(v[0], "VERB")
            if wh not in ("What", "Who", "Which") and v[5] in ("tr", "like"):
                self.np(role="obj", allow_rel=False)
        else:
            self.emit(self._agree_be(person, number, self.p(0.3)), "AUX")
            self._emit_subject(person, number)
            v = self.pick_verb()
            self.emit(v[4], "VERB")
        self.punct("?")

    def imperative(self) -> None:
        rng = self.rng
        if self.p(0.3):
            self.emit("Please", "INTJ")
        if self.p(0.15):
            self.emit("Do" if not self.toks else "do", "AUX")
            self.glue()
            self.emit("n't", "PART")
        v = _weighted(rng, [x for x in _VERBS if x[5] in ("tr", "motion", "like")],
                      {"book": 6.0, "light": 4.0, "back": 2.0, "watch": 2.0, "run": 2.0})
        form = v[0]
        self.emit(form.capitalize() if not self.toks else form, "VERB")
        self.verb_complement(v)
        self.extras()
        self.punct("!" if self.p(0.2) else ".")

    def interjection(self) -> None:
        rng = self.rng
        ij = rng.choices(_INTJS, weights=[3 if w in ("No", "Well", "Oh", "Yes") else 1 for w in _INTJS])[0]
        self.emit(ij, "INTJ")
        if self.p(0.3):
            self.punct("!")
            return
        self.punct(",")
        r = rng.random()
        if r < 0.3 and ij == "Well":
            self.emit("that", "PRON")
            self.emit(rng.choice(["is", "was"]), "AUX")
            if self.p(0.4):
                self.emit(rng.choice(_DEGREE_ADVS), "ADV")
            self.emit(rng.choice(_PRED_ADJS), "ADJ")
            self.punct("." if self.p(0.5) else "!")
            return
        self.declarative()

    def like_sentence(self) -> None:
        """'X looks like Y' (ADP) vs 'X likes Y' (VERB) contrasts, and 'that' as DET/PRON/SCONJ."""
        rng = self.rng
        r = rng.random()
        person, number = self.np(role="subj", allow_rel=False)
        third = number == "sg" and person == 3
        if r < 0.4:
            v = rng.choice([("looks", "look", "looked"), ("sounds", "sound", "sounded"),
                            ("feels", "feel", "felt")])
            self.emit(v[0] if third else v[1] if self.p(0.6) else v[2], "VERB")
            self.emit("like", "ADP")
            self.np(role="obj", allow_rel=False)
        elif r < 0.7:
            self.emit("said" if self.p(0.5) else ("knows" if third else "know"), "VERB")
            self.emit("that", "SCONJ")
            self.emit("that", "DET")
            n = _weighted(rng, _NOUNS, _NOUN_WEIGHTS, key=lambda x: x[0])
            self.emit(n[0], "NOUN")
            self.emit(self._agree_be(3, "sg", self.p(0.5)), "AUX")
            self.emit(rng.choice(_PRED_ADJS), "ADJ")
        else:
            self.emit(rng.choice(["runs", "works", "drives", "plays"]) if third else
                      rng.choice(["run", "work", "drive", "play"]), "VERB")
            self.emit(rng.choice(["well", "fast", "fast", "well", "round", "back"]), "ADV")
            if self.p(0.5):
                self.emit(rng.choice(["before", "after"]), "ADP")
                self.emit("the", "DET")
                self.emit(rng.choice(["game", "meeting", "run", "walk", "round", "party"]), "NOUN")
        self.punct(".")

    def sentence(self) -> list[Token]:
        rng = self.rng
        r = rng.random()
        if r < 0.58:
            self.declarative()
        elif r < 0.68:
            self.yes_no_question()
        elif r < 0.76:
            self.wh_question()
        elif r < 0.84:
            self.imperative()
        elif r < 0.88:
            self.interjection()
        else:
            self.like_sentence()
        # capitalise the first word unless it is a symbol / lowercase-only token
        first = self.toks[0]
        if first[1] not in ("X", "SYM") and first[0][:1].islower():
            first[0] = first[0][:1].upper() + first[0][1:]
        self.toks[-1][2] = False
        return [(f, u, bool(s)) for f, u, s in self.toks]


def generate(n: int, seed: int) -> list[list[Token]]:
    """Generate ``n`` sentences, each a list of ``(form, upos, space_after)``; deterministic in ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(f"moe-tui-demo-grammar:{int(seed)}")
    out: list[list[Token]] = []
    while len(out) < n:
        g = _Gen(rng)
        sent = g.sentence()
        if 3 <= len(sent) <= 60:
            out.append(sent)
    return out


def sentence_text(sentence: Iterable[Token]) -> str:
    """The sentence's surface text: forms joined by one space where ``space_after`` is true."""
    parts: list[str] = []
    toks = list(sentence)
    for i, (form, _upos, space_after) in enumerate(toks):
        parts.append(form)
        if space_after and i < len(toks) - 1:
            parts.append(" ")
    return "".join(parts)


def to_conllu(sentences: Iterable[list[Token]], *, start_id: int = 1, prefix: str = "demo") -> str:
    """Render sentences as CoNLL-U (10 columns, ``# sent_id``/``# text`` comments, ``SpaceAfter=No``).

    LEMMA is the lowercased form, XPOS ``_``, a flat tree (word 1 is ``root``, every other word attaches
    to it as ``dep``), DEPS ``_``.
    """
    lines: list[str] = []
    for k, sent in enumerate(sentences):
        sent = list(sent)
        lines.append(f"# sent_id = {prefix}-{start_id + k:06d}")
        lines.append(f"# text = {sentence_text(sent)}")
        for i, (form, upos, space_after) in enumerate(sent, start=1):
            head, deprel = ("0", "root") if i == 1 else ("1", "dep")
            misc = "_" if (space_after or i == len(sent)) else "SpaceAfter=No"
            lines.append("\t".join([str(i), form, form.lower(), upos, "_", "_", head, deprel, "_", misc]))
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")
