"""The C and C++ programs of the guides (docs/*.md and README.md), extracted from their code
blocks so that the test compiles and runs exactly what a reader copies.

Every ```c or ```cpp block starts with a comment that names its program, e.g.
`/* hello_http.c: ... */` or `// hello.cpp: ...`; blocks that name the same program (a later
one says "continued") are joined in the order they appear. A C or C++ block without a name is
an error: no code in the guides goes unchecked.

Usage: python3 tests/docs/guide_programs.py OUTDIR   (writes the programs, lists them)
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp"}
NAME = re.compile(r"^\s*(?:/\*|//)\s*([A-Za-z0-9_-]+\.(c|cpp))\b")


def guide_files():
    docs = os.path.join(ROOT, "docs")
    pages = sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    return [os.path.join(ROOT, "README.md")] + pages


def code_blocks(path):
    """(line number, language, text) of every fenced block of the file."""
    blocks = []
    fence = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if fence is None:
                m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
                if m:
                    fence, lang, start, text = m.group(1), m.group(2).lower(), n, []
            elif line.strip().startswith(fence):
                blocks.append((start, lang, "".join(text)))
                fence = None
            else:
                text.append(line)
    return blocks


def extract():
    """{program name: (language, source, where)} and a list of errors."""
    programs, errors, pages = {}, [], {}
    for path in guide_files():
        rel = os.path.relpath(path, ROOT)
        for line, lang, text in code_blocks(path):
            if lang not in LANGS:
                continue
            first = next((l for l in text.splitlines() if l.strip()), "")
            m = NAME.match(first)
            if not m:
                errors.append(f"{rel}:{line}: a {lang} block must start with a comment naming "
                              f"its program (/* name.c: ... */)")
                continue
            name, ext = m.group(1), m.group(2)
            if ext != LANGS[lang]:
                errors.append(f"{rel}:{line}: {name} is in a {lang} block")
                continue
            if pages.setdefault(name, rel) != rel:
                errors.append(f"{rel}:{line}: {name} is also a program of {pages[name]}")
                continue
            where = programs.get(name, (None, "", f"{rel}:{line}"))[2]
            programs[name] = (LANGS[lang], programs.get(name, (None, "", None))[1] + text, where)
    return programs, errors


def write(outdir):
    programs, errors = extract()
    os.makedirs(outdir, exist_ok=True)
    for name, (_, source, _) in programs.items():
        with open(os.path.join(outdir, name), "w", encoding="utf-8") as f:
            f.write(source)
    return programs, errors


if __name__ == "__main__":
    progs, errs = write(sys.argv[1])
    for name, (lang, _, where) in sorted(progs.items()):
        print(f"{name}\t{lang}\t{where}")
    for e in errs:
        print(e, file=sys.stderr)
    sys.exit(1 if errs else 0)
