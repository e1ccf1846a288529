#!/usr/bin/env python3
"""Doxygen's input filter for the API reference (`make docs`, docs/Doxyfile).

Doxygen runs it on every input file and reads the result from stdout; the files themselves
stay as they are. It does three things, keeping every line where it was (so warnings point at
the right line):

- `name` in backticks, where name is a macro, typedef or function of include/asyncloop.h,
  becomes a link to its page (Doxygen only links those spans by itself for structs and for
  `name()`), in the header's comments and in the Markdown pages alike; fenced code blocks are
  left alone (Doxygen links the names in them itself).
- Each top-level item of the header joins a group (docs/api.dox defines them: event loop,
  timers, TCP, HTTP server, ...), chosen by its name, so the reference has a page per area.
- The header's first comment becomes its file documentation (`\\file`).
- "Thread-safe" and "Loop thread only" in the header's comments are set in bold, so that a
  function's page shows at a glance which threads may call it.
- In the Markdown pages, a link to the header (`../include/asyncloop.h`), which is the
  reference when the pages are read in the repository, leads to the reference's groups.

Usage (by Doxygen): doxygen-filter.py FILE
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
HEADER = os.path.join(ROOT, "include", "asyncloop.h")

# First match wins; the names come from the header, the groups from docs/api.dox.
GROUPS = [
    (r"ALOOP_E_|aloop_strerror$|aloop_err_name$", "errors"),
    (r"ALOOP_VERSION|aloop_version$|aloop_free_fn$", "basics"),
    (r"aloop_signal", "signal"),
    (r"aloop_loop|aloop_post_cb$|aloop_backend_name$|ALOOP_BACKEND_|ALOOP_RUN_", "loop"),
    (r"aloop_timer", "timer"),
    (r"aloop_poll|ALOOP_READABLE$|ALOOP_WRITABLE$", "poll"),
    (r"aloop_tls|ALOOP_TLS", "tls"),
    (r"aloop_tcp|aloop_listen|aloop_accept_cb$|aloop_listener_|aloop_connect_cb$|"
     r"aloop_read_cb$|aloop_write_cb$|aloop_unix", "tcp"),
    (r"aloop_http_client|aloop_http_response|aloop_http_chunk_cb$", "http_client"),
    (r"aloop_ws|ALOOP_WS_", "websocket"),
    (r"aloop_http", "http_server"),
    (r"aloop_pg|ALOOP_PG", "pg"),
]
DEFAULT_GROUP = "basics"

BACKTICK = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def api_names():
    """Macros, typedefs and functions declared by the header (structs link by themselves)."""
    try:
        text = open(HEADER, encoding="utf-8").read()
    except OSError:
        return set()
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    names = set(re.findall(r"#define\s+((?:ALOOP|aloop)_\w+)", code))
    names |= set(re.findall(r"\b(aloop_\w+)\s*\(", code))
    names |= set(re.findall(r"\(\*\s*(aloop_\w+)\)", code))
    names |= set(re.findall(r"typedef\s+struct\s+\w+\s+(aloop_\w+)\s*;", code))
    return names


THREAD_NOTES = re.compile(r"\b(Thread-safe|Not thread-safe|Loop thread only)\b")


def link_names(line, names):
    return BACKTICK.sub(lambda m: f"<code>#{m.group(1)}</code>" if m.group(1) in names
                        else m.group(0), line)


def emphasize_thread_notes(line):
    return THREAD_NOTES.sub(lambda m: f"<b>{m.group(1)}</b>", line)


def declared_name(lines, start):
    """The name declared by the code after a comment that ends on line `start - 1`."""
    decl = ""
    for line in lines[start:start + 12]:
        if line.strip() == "" and not decl:
            continue
        decl += line
        m = re.match(r"\s*#define\s+(\w+)", decl)
        if m:
            return m.group(1)
        m = re.search(r"\(\*\s*(\w+)\)", decl)
        if m:
            return m.group(1)
        m = re.match(r"\s*typedef\s+struct\s+(\w+)", decl)
        if m:
            return m.group(1)
        m = re.search(r"(\w+)\s*\(", decl)
        if m:
            return m.group(1)
    return None


def group_of(name):
    for pattern, group in GROUPS:
        if re.match(pattern, name):
            return group
    return DEFAULT_GROUP


def filter_header(lines, names):
    out = []
    in_comment = False
    first_comment = True
    for i, line in enumerate(lines):
        if not in_comment and line.lstrip().startswith("/*"):
            in_comment = True
            top_level = line.startswith("/**")
            if first_comment and line.startswith("/*"):
                # The file's opening comment documents the file.
                line = "/** \\file asyncloop.h" + line[len("/*"):].lstrip("*")
                first_comment, top_level = False, False
        if in_comment:
            line = emphasize_thread_notes(link_names(line, names))
            if "*/" in line:
                in_comment = False
                if top_level:
                    name = declared_name(lines, i + 1)
                    if name:
                        line = line.replace("*/", f"\\ingroup {group_of(name)} */", 1)
        out.append(line)
    return out


def filter_markdown(lines, names):
    out = []
    fence = None
    for line in lines:
        m = re.match(r"\s*(```+|~~~+)", line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif line.strip().startswith(fence):
                fence = None
            out.append(line)
            continue
        if not fence:
            line = link_names(line, names).replace("](../include/asyncloop.h)", "](modules.html)")
        out.append(line)
    return out


def main():
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    names = api_names()
    if path.endswith(".h"):
        lines = filter_header(lines, names)
    elif path.endswith(".md"):
        lines = filter_markdown(lines, names)
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
