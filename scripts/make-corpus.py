#!/usr/bin/env python3
"""Rebuild data/corpus-en.txt, the bundled training corpus, from Debian's sword-text-web.

The World English Bible is in the public domain (see data/README.md). The corpus is committed,
so this script is only needed to reproduce or change it:

    apt-get install sword-text-web libsword-utils
    mod2imp engWEB2015eb | python3 scripts/make-corpus.py > data/corpus-en.txt

Output: one document per chapter, one document per line, ASCII punctuation, no markup.
"""
import re
import sys

PUNCT = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": " -- ",
         "\u2013": "-", "\u00a0": " ", "\u2026": "..."}


def clean(raw: str) -> str:
    # Footnotes sit between two words without a space: replace them by one.
    text = re.sub(r"<note\b.*?</note>", " ", raw)
    text = re.sub(r"<[^>]*>", "", text)
    for k, v in PUNCT.items():
        text = text.replace(k, v)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def main() -> None:
    chapters = {}
    order = []
    key = None
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("$$$"):
            ref = line[3:]
            m = re.match(r"^(.+) (\d+):(\d+)$", ref)
            key = None
            if m and m.group(2) != "0" and m.group(3) != "0":
                key = (m.group(1), int(m.group(2)))
                if key not in chapters:
                    chapters[key] = []
                    order.append(key)
            continue
        if key is not None and line.strip():
            verse = clean(line)
            if verse:
                chapters[key].append(verse)
    for key in order:
        body = " ".join(chapters[key])
        if body:
            print(f"{key[0]} {key[1]}. {body}")


if __name__ == "__main__":
    main()
