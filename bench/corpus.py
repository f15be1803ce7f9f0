"""The synthetic, deterministic corpora of the embedding cases; no downloads, only word
lists and a seed.

``prose_block``: English-like prose, for case 3, where the model's speed on real text is the
point. Sentence lengths follow a log-normal of words (median 18, as in news and encyclopaedia
text), cut to 20-400 characters; clauses are joined by commas, conjunctions and subordinate
clauses, with names, numbers, dates, parentheses, quotes, and long or rare words that the
tokenizer splits into several pieces. Every block of the same size has the same word counts
in a shuffled order (the distribution's quantiles), so blocks cost the model alike and a
benchmark can compare one block with the next without the luck of the draw between them.

``short_sentences``: the uniform twelve-word sentences of the first benchmarks, for the cases
that count rows and latencies rather than the model's speed on real text (cases 7 and 8).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist

MEDIAN_WORDS = 18
SIGMA = 0.55  # of log(words): 90% of sentences hold 7 to 44 words
MIN_CHARS = 20
MAX_CHARS = 400

_DETERMINERS = ["the", "a", "this", "that", "every", "one", "some", "no", "another", "its",
                "their", "our", "each", "the same", "a second"]  # fmt: skip
_ADJECTIVES = ["small", "large", "early", "late", "public", "private", "local", "national",
               "old", "new", "quiet", "busy", "careful", "strange", "familiar", "remote",
               "annual", "official", "informal", "detailed", "brief", "expensive", "cheap",
               "northern", "southern", "coastal", "industrial", "medieval", "modern",
               "experimental", "controversial", "reliable", "unexpected", "significant",
               "temporary", "permanent", "narrow", "wooden", "electric", "digital",
               "agricultural", "architectural", "psychological", "unprecedented",
               "well-known", "long-term", "second-hand", "semi-autonomous"]  # fmt: skip
_NOUNS = ["river", "village", "council", "report", "bridge", "station", "library", "museum",
          "company", "government", "committee", "harbour", "railway", "festival", "market",
          "school", "hospital", "engine", "garden", "letter", "painting", "novel", "album",
          "survey", "experiment", "election", "treaty", "province", "mountain", "island",
          "cathedral", "factory", "newspaper", "orchestra", "university", "laboratory",
          "archive", "manuscript", "algorithm", "database", "network", "protocol", "sensor",
          "telescope", "vaccine", "reservoir", "parliament", "monastery", "expedition",
          "cooperative", "infrastructure", "photosynthesis", "biodiversity", "sediment",
          "amendment", "jurisdiction", "dialect", "harvest", "shipment", "budget"]  # fmt: skip
_PEOPLE = ["the mayor", "a farmer", "the authors", "several residents", "the director",
           "a spokesperson", "the engineers", "his brother", "her colleagues", "the court",
           "local historians", "the board", "two researchers", "the team", "critics",
           "the inspector", "a group of students", "the owners", "the minister"]  # fmt: skip
_NAMES = ["Margaret Hale", "Tomasz Nowak", "Aiyana Brooks", "Kenji Watanabe",
          "Lucía Fernández", "Oskar Lindqvist", "Priya Raman", "Samuel Okafor",
          "Élodie Marchand", "Ahmed Haddad", "Chen Wei", "Fiona MacLeod", "Dmitri Volkov",
          "Grace Adeyemi", "Henrik Bauer"]  # fmt: skip
_PLACES = ["Lisbon", "the Rhine valley", "northern Ontario", "Kraków", "the Outer Hebrides",
           "Montevideo", "Hokkaido", "the Atacama Desert", "Tasmania", "Leeds", "Nairobi",
           "the Baltic coast", "Yorkshire", "Manitoba", "Ljubljana", "the Po delta"]  # fmt: skip
_VERBS = ["built", "opened", "closed", "described", "reported", "rejected", "approved",
          "measured", "studied", "published", "restored", "replaced", "extended", "financed",
          "criticised", "praised", "recorded", "translated", "designed", "abandoned",
          "acquired", "documented", "reorganised", "investigated", "commissioned",
          "renovated", "questioned", "announced", "postponed", "simplified"]  # fmt: skip
_PREPOSITIONS = ["in", "near", "after", "before", "during", "without", "with", "across",
                 "behind", "along", "despite", "beyond", "throughout", "under"]  # fmt: skip
_AUXILIARIES = ["had", "has", "have", "was", "is", "would have", "had not", "could not have",
                "has also", "will be"]  # fmt: skip
_PRONOUNS = ["it", "they", "we", "he", "she", "this", "most of them", "none of it"]  # fmt: skip
_OBJECT_PRONOUNS = ["it", "them", "us", "him", "her", "most of them", "all of it"]  # fmt: skip
_FUNCTION_WORDS = {"the", "a", "an", "of", "in", "to", "and", "but", "with", "by", "this",
                   "that", "every", "one", "some", "no", "another", "its", "their", "our",
                   "each", "same", "second", "had", "has", "have", "was", "is", "would",
                   "could", "not", "will", "be", "also", "while", "although", "because", "so",
                   "which", "meant", "until", "whereas", "even", "though", "meanwhile;",
                   "after"} | set(_PREPOSITIONS)  # fmt: skip
_ADVERBS = ["quickly", "slowly", "eventually", "briefly", "formally", "largely", "partly",
            "quietly", "repeatedly", "initially", "reluctantly", "successfully",
            "independently", "subsequently", "unexpectedly"]  # fmt: skip
_OPENERS = ["However,", "In the end,", "At first,", "According to the report,", "Meanwhile,",
            "By contrast,", "For many years,", "As a result,", "Later that year,",
            "In practice,", "Surprisingly,", "Even so,"]  # fmt: skip
_JOINS = [", and", ", but", ", while", ", although", "; meanwhile", " because", ", so",
          ", which meant that", " until", ", after which", " whereas", ", even though"]  # fmt: skip
_UNITS = ["percent", "kilometres", "people", "tonnes", "euros", "metres", "pages", "years",
          "households", "litres per second"]  # fmt: skip


def _noun_phrase(rng: random.Random, *, subject: bool = True) -> str:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(_PRONOUNS if subject else _OBJECT_PRONOUNS)
    if roll < 0.2:
        return rng.choice(_NAMES)
    if roll < 0.3:
        return rng.choice(_PEOPLE)
    adjectives = " ".join(rng.choice(_ADJECTIVES) for _ in range(rng.choice((0, 1, 1, 2))))
    words = [rng.choice(_DETERMINERS), adjectives, rng.choice(_NOUNS)]
    if rng.random() < 0.2:
        words.append(f"of {rng.choice(_PLACES)}")
    return " ".join(word for word in words if word)


def _detail(rng: random.Random) -> str:
    """A prepositional phrase, a number with its unit, a date or a parenthesis."""
    roll = rng.random()
    if roll < 0.45:
        return f"{rng.choice(_PREPOSITIONS)} {_noun_phrase(rng)}"
    if roll < 0.6:
        return f"in {rng.choice(_PLACES)}"
    if roll < 0.75:
        number = rng.choice((f"{rng.randint(2, 99)}", f"{rng.randint(1, 99)}.{rng.randint(1, 9)}",
                             f"{rng.randint(1, 40)},{rng.randint(0, 999):03d}"))  # fmt: skip
        return f"by {number} {rng.choice(_UNITS)}"
    if roll < 0.88:
        return f"in {rng.randint(1650, 2025)}"
    return f"({rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}s aside)"


def _clause(rng: random.Random) -> str:
    subject = _noun_phrase(rng)
    adverb = f"{rng.choice(_ADVERBS)} " if rng.random() < 0.25 else ""
    auxiliary = f"{rng.choice(_AUXILIARIES)} " if rng.random() < 0.4 else ""
    verb = f"{auxiliary}{rng.choice(_VERBS)}"
    obj = _noun_phrase(rng, subject=False)
    if rng.random() < 0.1:
        obj = f'"{obj}"'
    details = " ".join(_detail(rng) for _ in range(rng.choice((0, 1, 1, 2))))
    return " ".join(part for part in (subject, f"{adverb}{verb}", obj, details) if part)


def _sentence(rng: random.Random, words: int) -> str:
    """About ``words`` words of clauses, cut to fit, capitalised, with its full stop."""
    parts = [rng.choice(_OPENERS)] if rng.random() < 0.2 else []
    text = " ".join([*parts, _clause(rng)])
    while len(text.split()) < words:
        text += f"{rng.choice(_JOINS)} {_clause(rng)}"
    cut = text.split()[:words]
    # A sentence cut short ends on a content word, not on "the" or "with".
    while len(" ".join(cut)) + 1 > MAX_CHARS or cut[-1].lower() in _FUNCTION_WORDS:
        cut.pop()
    sentence = " ".join(cut).rstrip(",;")
    if sentence.count("(") > sentence.count(")"):
        sentence += ")"
    if sentence.count('"') % 2:
        sentence += '"'
    while len(sentence) + 1 < MIN_CHARS:
        sentence += f" {_detail(rng)}"
    end = rng.choices((".", "?", "!"), weights=(94, 4, 2))[0]
    return sentence[0].upper() + sentence[1:] + end


def word_counts(count: int) -> list[int]:
    """The word counts of ``count`` sentences: the distribution's quantiles, in order."""
    lengths = NormalDist(0.0, SIGMA)
    return [
        max(3, round(MEDIAN_WORDS * math.exp(lengths.inv_cdf((i + 0.5) / count))))
        for i in range(count)
    ]


def prose_block(count: int, seed: int) -> list[str]:
    """``count`` sentences of ``word_counts(count)`` words in an order and with words drawn
    from ``seed``: the same seed gives the same sentences in every process."""
    rng = random.Random(seed)
    lengths = word_counts(count)
    rng.shuffle(lengths)
    return [_sentence(rng, words) for words in lengths]


_SUBJECTS = ["the engineer", "a small team", "our new service", "the old database", "a curious cat",
             "the weather model", "every student", "the city council", "my neighbour",
             "the research group", "a busy restaurant", "the delivery robot", "the night shift",
             "an open-source project", "the museum guide", "a tired runner"]  # fmt: skip
_SHORT_VERBS = ["quietly rebuilt", "carefully measured", "suddenly rejected", "happily shared",
                "slowly translated", "proudly announced", "barely finished", "often ignored",
                "eagerly tested", "patiently explained", "accidentally deleted",
                "finally approved"]  # fmt: skip
_OBJECTS = ["the quarterly report", "a dozen fresh ideas", "the broken login page",
            "three long letters", "the river map", "a surprising result", "the winter schedule",
            "an unusual request", "the last train ticket", "a pile of old photos",
            "the noisy sensor data", "the family recipe"]  # fmt: skip
_TAILS = ["before the morning meeting", "after a long and rainy weekend",
          "with help from two friends", "in the crowded station", "without asking anyone first",
          "during the power cut last night", "for the third time this year",
          "under a bright blue sky", "while the coffee was still hot",
          "because the deadline moved again"]  # fmt: skip


def short_sentences(count: int, seed: int = 2026) -> list[str]:
    """Deterministic, varied English sentences of about twelve words."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_SHORT_VERBS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_TAILS)}."
        for _ in range(count)
    ]
