"""Byte corpora for the gated-RNN experiments: files, a deterministic split, an embedded corpus.

Everything is bytes (``uint8``), never decoded text: windows are byte-exact (upstream decoded
enwik8 as UTF-8 and cut windows in characters, reference note §2.1 and §7 item 11).

The embedded corpus (``"embedded"``) needs no download: :func:`embedded_corpus` generates it
deterministically from a fixed seed with a small hand-written English grammar (vocabulary,
sentence templates, numbered records and bracketed asides). It is our own text, under the
project's MIT licence. It has short-range structure (spelling, agreement) and longer-range
structure (a record's name repeated in its later lines, matching brackets and quotes), so a
model that uses its state beats one that does not.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rnnlab.errors import ConfigError

__all__ = [
    "ByteSplits",
    "embedded_corpus",
    "load_corpus",
    "ngram_conditional_entropies",
    "sample_windows",
    "split_bytes",
]

ENWIK8_HELP = (
    "enwik8 (the first 10^8 bytes of an English Wikipedia dump, used by the Hutter Prize) is "
    "not shipped. Get it with:\n"
    "  curl -O http://mattmahoney.net/dc/enwik8.zip && unzip enwik8.zip   # 100,000,000 bytes\n"
    "then pass --data enwik8 (any file works; the default is the embedded corpus)."
)

EMBEDDED_SIZE = 1_000_000
EMBEDDED_SEED = 20241101


def _words(text: str) -> list[str]:
    return text.split()


_NAMES = _words(
    "Ada Basil Clara Dmitri Elena Farid Greta Hugo Ines Jonas Kira Lars Mira Nils Olga Pavel "
    "Quinn Rosa Sven Tara Umar Vera Wim Xenia Yusuf Zora"
)
_NOUNS = _words(
    "river garden engine letter window market bridge signal lantern forest harbour theory "
    "machine picture station kettle ladder mirror orchard parcel rocket saddle tunnel violin"
)
_ADJECTIVES = _words(
    "quiet bright heavy narrow ancient silver patient sudden gentle hollow crooked golden "
    "distant careful restless humble"
)
_VERBS = (
    ("opens", "open"),
    ("carries", "carry"),
    ("watches", "watch"),
    ("repairs", "repair"),
    ("describes", "describe"),
    ("follows", "follow"),
    ("measures", "measure"),
    ("paints", "paint"),
    ("finds", "find"),
    ("remembers", "remember"),
)
_PLACES = ["Lisbon", "Oslo", "Krakow", "Tunis", "Quito", "Hanoi", "Perth", "Dakar", "Riga", "Cusco"]


def _noun_phrase(rng: random.Random, plural: bool) -> str:
    noun = rng.choice(_NOUNS) + ("s" if plural else "")
    if rng.random() < 0.5:
        noun = rng.choice(_ADJECTIVES) + " " + noun
    if rng.random() < 0.7:
        return "the " + noun
    if plural:
        return "some " + noun
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _sentence(rng: random.Random, subject: str, plural: bool) -> str:
    verb = rng.choice(_VERBS)[1 if plural else 0]
    text = f"{subject} {verb} {_noun_phrase(rng, rng.random() < 0.3)}"
    roll = rng.random()
    if roll < 0.2:
        text += f" in {rng.choice(_PLACES)}"
    elif roll < 0.35:
        text += f" ({_noun_phrase(rng, False)} and {_noun_phrase(rng, True)})"
    elif roll < 0.45:
        text += f', saying "{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"'
    return text[0].upper() + text[1:] + "."


def _record(rng: random.Random, number: int) -> str:
    name = rng.choice(_NAMES)
    place = rng.choice(_PLACES)
    lines = [f"== Record {number}: {name} of {place} =="]
    for _ in range(rng.randint(2, 5)):
        roll = rng.random()
        if roll < 0.4:
            lines.append(_sentence(rng, name, False))
        elif roll < 0.6:
            lines.append(_sentence(rng, f"{name} and {rng.choice(_NAMES)}", True))
        else:
            plural = rng.random() < 0.5
            lines.append(_sentence(rng, _noun_phrase(rng, plural), plural))
    lines.append(f"{name} returned to {place} in {1800 + rng.randint(0, 220)}.")
    return "\n".join(lines) + "\n\n"


@functools.lru_cache(maxsize=2)
def _embedded(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    pieces: list[str] = []
    total = 0
    number = 1
    while total < size:
        piece = _record(rng, number)
        pieces.append(piece)
        total += len(piece)
        number += 1
    return "".join(pieces).encode("ascii")[:size]


def embedded_corpus(size: int = EMBEDDED_SIZE, seed: int = EMBEDDED_SEED) -> NDArray[np.uint8]:
    """The embedded English-like corpus (ASCII bytes), generated deterministically."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise ConfigError(f"size: must be an integer >= 64, got {size!r}")
    return np.frombuffer(_embedded(size, seed), dtype=np.uint8).copy()


def load_corpus(data: str | os.PathLike[str] | None) -> NDArray[np.uint8]:
    """The bytes of ``data``: ``None`` or ``"embedded"`` → :func:`embedded_corpus`, else a file."""
    if data is None or str(data) == "embedded":
        return embedded_corpus()
    path = Path(data)
    if not path.is_file():
        hint = (
            ENWIK8_HELP
            if "enwik" in path.name.lower()
            else ("pass an existing file, or leave --data out to use the embedded corpus")
        )
        raise ConfigError(f"data: no file at {str(path)!r}. {hint}")
    array = np.fromfile(path, dtype=np.uint8)
    if array.size < 64:
        raise ConfigError(f"data: {str(path)!r} has {array.size} bytes; need at least 64")
    return array


@dataclass(frozen=True)
class ByteSplits:
    """Contiguous train / validation / test parts of one corpus."""

    train: NDArray[np.uint8]
    validation: NDArray[np.uint8]
    test: NDArray[np.uint8]


def split_bytes(
    data: NDArray[np.uint8], fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
) -> ByteSplits:
    """Deterministic split into three contiguous parts (the first 90 %, next 5 %, last 5 %)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"split: three positive fractions summing to 1, got {fractions!r}")
    n = int(data.size)
    a = round(n * fractions[0])
    b = round(n * (fractions[0] + fractions[1]))
    return ByteSplits(data[:a], data[a:b], data[b:])


def sample_windows(
    data: NDArray[np.uint8], batch_size: int, window: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """``[batch_size, window]`` byte windows at uniform random starts (with replacement)."""
    if data.size < window + 1:
        raise ConfigError(
            f"window: {window} bytes do not fit in a split of {data.size} bytes; use a smaller "
            "window or a larger corpus"
        )
    starts = rng.integers(0, data.size - window + 1, size=batch_size)
    index = starts[:, None] + np.arange(window)[None, :]
    return data[index].astype(np.int64)


def ngram_conditional_entropies(data: NDArray[np.uint8], max_order: int = 3) -> dict[int, float]:
    """Plug-in conditional entropies ``H(X_t | X_{t-k}..X_{t-1})`` in nats, k = 0..max_order.

    Computed as ``H(context, next) − H(context)`` from the empirical counts over the positions
    that have a full k-byte context. Plug-in estimates are biased
    low when the number of distinct contexts approaches the data size (orders ≥ 3 on small
    corpora); they describe the data a model is trained on, not a held-out rate.
    """
    if not 0 <= max_order <= 7:
        raise ConfigError(f"max_order: must be between 0 and 7, got {max_order!r}")
    codes = np.asarray(data, dtype=np.uint64)

    def entropy_of(keys: NDArray[np.uint64]) -> float:
        _, counts = np.unique(keys, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())

    result: dict[int, float] = {}
    for order in range(max_order + 1):
        n = codes.size - order  # positions t = order..N-1, each with its full context
        if n < 1:
            raise ConfigError(f"data: {codes.size} bytes are too few for order {order}")
        context = np.zeros(n, dtype=np.uint64)
        for offset in range(order):
            context = context * np.uint64(256) + codes[offset : offset + n]
        joint = context * np.uint64(256) + codes[order : order + n]
        result[order] = entropy_of(joint) - (entropy_of(context) if order else 0.0)
    return result
