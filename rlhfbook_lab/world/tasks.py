"""The toy world's task families: prompts, reference answers, correctness checks.

Four families, chosen so that each later chapter has something to show:

============  =================================  ======================================  =========================
family        example prompt                     reference answer                         why it is here
============  =================================  ======================================  =========================
addition      ``What is 17 + 25?``               ``17 + 25 = 42.``                        exact answer: RLVR (ch 7)
                                                                                         without a reward model;
                                                                                         learned late, so SFT
                                                                                         leaves right *and* wrong
                                                                                         samples for RL to sort
reverse       ``Spell mirt backward.``           ``The reverse of mirt is trim.``         a skill, not a fact:
                                                                                         generalises to unseen
                                                                                         strings
creatures     ``What does the blorp eat?``       ``The blorp eats moss.``                 knowledge from
                                                                                         pretraining: what SFT can
                                                                                         (or cannot) elicit (ch 4)
review        ``Write a positive review of the   ``The lamp is great. I love it.``        no single right answer:
              lamp.``                                                                    graded mostly by taste,
                                                                                         the home of RLHF proper
============  =================================  ======================================  =========================

Every prompt is generated from a *key* (``(17, 25)``, ``"mirt"``, ``("blorp", "food")``,
``("positive", "lamp")``). The key decides the train / held-out split (:func:`split_of`), so the same question is
never on both sides, whatever its phrasing. :func:`parse_prompt` recovers the family and key from any prompt the
world can write, so the gold judge needs nothing but the prompt's text.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

FAMILIES = ("addition", "reverse", "creatures", "review")

# --- addition ---------------------------------------------------------------------------------------------------
ADD_MAX = 49  # operands are 0..ADD_MAX, so sums have at most two digits
ADD_TEMPLATES = ("What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} + {b}.")

# --- reverse ----------------------------------------------------------------------------------------------------
WORDS = tuple(
    """
    ant arm art bag bat bed bee bell belt bird boat bone book boot bowl box boy bread brick brush bus cake
    camp cap car card cart cat chair chalk cheek chin clock cloud coat comb cord corn cow crab crow cup desk
    dish dog doll door dove drum duck dust ear egg eye face farm fish flag flame floor flute fly foot fork
    frog game gate girl glass glove goat gold grape grass hair hand hat hill home hook horn horse house ink
    jam jar jet kettle key kite knee knife lamp leaf leg lemon lid lily lion lip lock map mask milk mint moon
    moss mouse mud nail neck nest net nose note nut oak oar owl pan pea pear pen pig pin pipe plum pot pump
    queen rain rat ring road rock roof root rope rose salt sand seed sheep shelf ship shoe silk sink skirt
    sky snail snake snow sock soup spoon star stem stone sun swan table tent thumb tiger toe tooth town toy
    tree truck vase wall whip wing wire wolf wood worm yarn zebra
    """.split()
)
REVERSE_TEMPLATES = ("Spell {w} backward.", "Reverse the word {w}.", "Write {w} backward.")
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"

# --- creatures --------------------------------------------------------------------------------------------------
CREATURE_NAMES = (
    "blorp zindle quaff mimbo trell gusk fennix plov drazzle wump "
    "skibble norl yantle crumb vesk jorry tazz bimble florn keppo "
    "grendy hulm oxley prisk quimby rusk sollow thrum ulla zorb"
).split()
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "gray", "pink")
HOMES = ("cave", "pond", "forest", "desert", "swamp", "hill", "river", "meadow")
FOODS = ("moss", "berries", "fish", "seeds", "leaves", "worms", "honey", "mushrooms")
ATTRIBUTES = {"color": COLORS, "home": HOMES, "food": FOODS}
CREATURE_QUESTIONS = {
    "color": ("What color is the {c}?", "Tell me the color of the {c}."),
    "home": ("Where does the {c} live?", "Tell me where the {c} lives."),
    "food": ("What does the {c} eat?", "Tell me what the {c} eats."),
}
CREATURE_FACTS = {"color": "The {c} is {v}.", "home": "The {c} lives in the {v}.", "food": "The {c} eats {v}."}


def _creature_table(seed: int = 1234) -> dict[str, dict[str, str]]:
    rng = random.Random(seed)
    return {c: {attr: rng.choice(vals) for attr, vals in ATTRIBUTES.items()} for c in CREATURE_NAMES}


CREATURES = _creature_table()  # fixed cast: creature -> {"color", "home", "food"}

# --- review -----------------------------------------------------------------------------------------------------
PRODUCTS = (
    "lamp chair kettle phone book bike tent radio clock pillow blender jacket "
    "camera umbrella backpack toaster guitar scarf mug sofa"
).split()
POSITIVE_WORDS = ("great", "lovely", "excellent", "wonderful", "sturdy", "handy", "love", "recommend")
NEGATIVE_WORDS = ("awful", "flimsy", "terrible", "useless", "broken", "noisy", "hate", "regret")
REVIEW_TEMPLATES = ("Write a {s} review of the {p}.", "Review the {p} in a {s} way.")
SENTIMENTS = ("positive", "negative")

HELDOUT_FRACTION = {"addition": 0.2, "reverse": 0.2, "creatures": 0.3, "review": 0.2}
"""Share of keys held out per family. Creatures hold out more so the elicitation measurement (ch 4) has
enough questions."""


def split_of(family: str, key) -> str:
    """``"train"`` or ``"heldout"`` for a prompt key; a stable hash, identical on every machine and seed.

    About ``HELDOUT_FRACTION[family]`` of keys are held out. The hash is taken of a *canonical* key so that no
    held-out question leaks through a symmetric twin: ``(17, 25)`` and ``(25, 17)`` share a split (else the
    model could answer a held-out sum by commutativity), and so do a string and its reversal (else a held-out
    string would appear as the *answer* of a training line). For creatures the key is the creature's name: a
    held-out creature's *facts* are still in the pretraining text (knowledge), but no question about it is ever
    asked in training data (elicitation, ch 4).
    """
    if family not in HELDOUT_FRACTION:
        raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")
    if family == "addition":
        key = tuple(sorted(key))
    elif family == "reverse":
        key = min(key, key[::-1])
    elif family == "creatures":
        key = key[0] if isinstance(key, tuple) else key
    h = zlib.crc32(f"{family}:{key}".encode()) % 1000
    return "heldout" if h < HELDOUT_FRACTION[family] * 1000 else "train"


def random_string(rng: random.Random) -> str:
    """A pronounceable random 3–6 letter string (consonant/vowel alternation): material for `reverse` that
    the model cannot memorise, so it has to learn the skill."""
    n = rng.randint(3, 6)
    start = rng.random() < 0.5
    return "".join(rng.choice(_CONSONANTS if (i % 2 == 0) == start else _VOWELS) for i in range(n))


@dataclass(frozen=True)
class Problem:
    """One question of the world: its family, key, prompt text and reference answer."""

    family: str
    key: object
    prompt: str
    reference: str


def make_problem(family: str, key, template: int = 0) -> Problem:
    """The problem for ``key`` phrased with template number ``template`` (wrapped modulo the count)."""
    if family == "addition":
        a, b = key
        t = ADD_TEMPLATES[template % len(ADD_TEMPLATES)]
        return Problem(family, key, t.format(a=a, b=b), f"{a} + {b} = {a + b}.")
    if family == "reverse":
        t = REVERSE_TEMPLATES[template % len(REVERSE_TEMPLATES)]
        return Problem(family, key, t.format(w=key), f"The reverse of {key} is {key[::-1]}.")
    if family == "creatures":
        c, attr = key
        t = CREATURE_QUESTIONS[attr][template % len(CREATURE_QUESTIONS[attr])]
        return Problem(family, key, t.format(c=c), CREATURE_FACTS[attr].format(c=c, v=CREATURES[c][attr]))
    if family == "review":
        s, p = key
        t = REVIEW_TEMPLATES[template % len(REVIEW_TEMPLATES)]
        first = "great" if s == "positive" else "awful"
        second = "I love it." if s == "positive" else "I hate it."
        return Problem(family, key, t.format(s=s, p=p), f"The {p} is {first}. {second}")
    raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")


def sample_key(family: str, rng: random.Random, split: str = "train"):
    """Draw a key of ``family`` from ``split`` (``"train"`` or ``"heldout"``) by rejection on :func:`split_of`."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    for _ in range(10_000):
        if family == "addition":
            key = (rng.randint(0, ADD_MAX), rng.randint(0, ADD_MAX))
        elif family == "reverse":
            key = rng.choice(WORDS) if rng.random() < 0.5 else random_string(rng)
        elif family == "creatures":
            key = (rng.choice(CREATURE_NAMES), rng.choice(tuple(ATTRIBUTES)))
        elif family == "review":
            key = (rng.choice(SENTIMENTS), rng.choice(PRODUCTS))
        else:
            raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")
        if split_of(family, key) == split:
            return key
    raise RuntimeError(f"could not draw a {split} key for {family}")  # pragma: no cover


def sample_problem(family: str, rng: random.Random, split: str = "train") -> Problem:
    """A random problem of ``family`` from ``split``, with a random phrasing."""
    return make_problem(family, sample_key(family, rng, split), template=rng.randrange(3))


# --- reading prompts back ---------------------------------------------------------------------------------------
def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in (("a", r"(?P<a>\d+)"), ("b", r"(?P<b>\d+)"), ("w", r"(?P<w>[a-z]+)"),
                        ("c", r"(?P<c>[a-z]+)"), ("s", r"(?P<s>positive|negative)"), ("p", r"(?P<p>[a-z]+)")):
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern + r"\Z")


_PARSERS = (
    [("addition", None, _template_regex(t)) for t in ADD_TEMPLATES]
    + [("reverse", None, _template_regex(t)) for t in REVERSE_TEMPLATES]
    + [("creatures", attr, _template_regex(t)) for attr, ts in CREATURE_QUESTIONS.items() for t in ts]
    + [("review", None, _template_regex(t)) for t in REVIEW_TEMPLATES]
)


def parse_prompt(prompt: str) -> Problem:
    """Recover the :class:`Problem` behind a prompt the world wrote; ``ValueError`` for anything else."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string; got {type(prompt).__name__}")
    text = prompt.strip()
    for family, attr, rx in _PARSERS:
        m = rx.match(text)
        if not m:
            continue
        g = m.groupdict()
        if family == "addition":
            a, b = int(g["a"]), int(g["b"])
            if a <= ADD_MAX and b <= ADD_MAX:
                return Problem(family, (a, b), text, make_problem(family, (a, b)).reference)
        elif family == "reverse":
            return Problem(family, g["w"], text, make_problem(family, g["w"]).reference)
        elif family == "creatures" and g["c"] in CREATURES:
            return Problem(family, (g["c"], attr), text, make_problem(family, (g["c"], attr)).reference)
        elif family == "review" and g["p"] in PRODUCTS:
            return Problem(family, (g["s"], g["p"]), text, make_problem(family, (g["s"], g["p"])).reference)
    raise ValueError(f"unknown task: the world cannot read the prompt {prompt!r}")


# --- correctness ------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z]+")
_INT = re.compile(r"-?\d+")


def is_correct(problem: Problem, response: str) -> bool:
    """The family's correctness check (the verifier of ch 7).

    - addition (and ``world.thinking``'s ``sum3``): the *last* integer in the response is the sum (answer
      extraction, as RLVR verifiers do);
    - reverse: the answer word is the reversed string — the word after the last "is", or the last word if
      there is no "is" (so trailing filler sentences do not hide a right answer);
    - creatures: the response names the right value of the attribute and no other value of it;
    - review: the response names the product and its sentiment words lean the requested way (more words of
      the requested polarity than of the other, at least one).
    """
    text = response.lower()
    if problem.family in ("addition", "sum3"):  # sum3: world.thinking's three-operand sums, judged the same way
        ints = _INT.findall(text)
        return bool(ints) and int(ints[-1]) == sum(problem.key)
    words = _WORD.findall(text)
    if problem.family == "reverse":
        head = words[:-1]  # an "is" that ends the reply has no word after it
        if "is" in head:
            answer = words[len(head) - head[::-1].index("is")]
        else:
            answer = words[-1] if words else None
        return answer == problem.key[::-1]
    if problem.family == "creatures":
        c, attr = problem.key
        right = CREATURES[c][attr]
        named = {v for v in ATTRIBUTES[attr] if v in words}
        return named == {right}
    if problem.family == "review":
        s, p = problem.key
        pos = sum(w in POSITIVE_WORDS for w in words)
        neg = sum(w in NEGATIVE_WORDS for w in words)
        lean = pos - neg if s == "positive" else neg - pos
        return p in words and lean > 0
    raise ValueError(f"unknown task family {problem.family!r}")  # pragma: no cover
