"""Look-alike domain names: mixed scripts in a label, and equal confusable skeletons.

Input: domain names as the config stores them (IDNA A-labels, `xn--...`).
Output: the scripts a label mixes (`mixed_scripts`) and a skeleton
(`skeleton`) such that two names readers cannot tell apart have the same one.
Pure, standard library only.

This follows UTS #39 in shape, not in full data: a letter's script is the
first word of its Unicode name (LATIN, CYRILLIC, GREEK, CJK, ...), the mixes
UTS #39 calls "highly restrictive" (Latin with Han and Japanese kana, with
Han and Bopomofo, or with Han and Hangul) are allowed, and the skeleton maps
the Cyrillic, Greek and Armenian letters (and digits) that are drawn like
Latin ones, which is what homograph attacks on mail domains use.
"""

from __future__ import annotations

import contextlib
import unicodedata

# Letters drawn like a Latin letter (after lower-casing), from UTS #39 confusables.txt.
_PROTOTYPE = {
    # Cyrillic
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "\u00eb", "\u04bb": "h", "\u0456": "i",
    "\u0457": "\u00ef", "\u0458": "j",
    "\u043a": "k", "\u04cf": "l", "\u043c": "m", "\u043d": "h", "\u043e": "o", "\u0440": "p",
    "\u0441": "c", "\u051b": "q",
    "\u0455": "s", "\u0442": "t", "\u0443": "y", "\u04af": "y", "\u051d": "w", "\u0445": "x",
    "\u044c": "b", "\u0501": "d",
    "\u0261": "g", "\u050d": "g",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i", "\u03ba": "k",
    "\u03bd": "v", "\u03bf": "o",
    "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x", "\u03f2": "c", "\u03f3": "j",
    "\u03c9": "w",
    # Armenian
    "\u0585": "o", "\u057d": "u", "\u0570": "h", "\u0578": "n", "\u0581": "g", "\u0566": "q",
    "\u0561": "w",
    # Latin letters and digits drawn like other Latin letters
    "\u0131": "i", "\u0251": "a", "\u2113": "l", "0": "o", "1": "l",
}  # fmt: skip

_ASCII_PROTOTYPE = str.maketrans({k: v for k, v in _PROTOTYPE.items() if k.isascii()})

# Sequences drawn like one letter (UTS #39 maps m to rn).
_SEQUENCES = (("rn", "m"), ("vv", "w"))

# UTS #39 "highly restrictive": these mixes are normal writing, not tricks.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
)


def unicode_name(domain: str) -> str:
    """The domain with its A-labels decoded (`xn--pypal-4ve.test` -> p + Cyrillic a + ypal.test)."""
    if "xn--" not in domain:
        return domain
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def _script(ch: str) -> str | None:
    """The script of a letter (first word of its Unicode name); None for digits, '-', marks."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0].split("-", 1)[0] or None


def mixed_scripts(label: str) -> list[str] | None:
    """The scripts a label mixes when the mix is not normal writing, else None."""
    if label.isascii():
        return None  # ASCII letters are all Latin
    scripts = {s for s in map(_script, label) if s}
    if len(scripts) < 2 or any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        return None
    return sorted(scripts)


def skeleton(domain: str) -> str:
    """A form in which look-alike names are equal (paypal in Cyrillic and in Latin)."""
    if domain.isascii() and "xn--" not in domain:
        # NFKC leaves ASCII as it is, and of ASCII only 0 and 1 have prototypes.
        text = domain.lower().translate(_ASCII_PROTOTYPE)
    else:
        text = unicodedata.normalize("NFKC", unicode_name(domain)).lower()
        text = "".join(_PROTOTYPE.get(ch, ch) for ch in text)
    for seq, letter in _SEQUENCES:
        text = text.replace(seq, letter)
    return text
