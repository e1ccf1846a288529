"""The HTML documentation that `make docs` builds into build/docs/: the front page and a
function's page as headless Chromium renders them, a page for every item of the header, and no
broken link between the pages. Run by `make test-docs` (part of `make test`) after `make docs`.
Also: no file of the repository points at documents that are not in it."""
import html.parser
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from urllib.parse import unquote, urlsplit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "build", "docs")
HEADER = os.path.join(ROOT, "include", "asyncloop.h")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]


class Links(html.parser.HTMLParser):
    """The links (href, src) and the anchors (id, name) of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.anchors = [], set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.links.append(v)
            elif k in ("id", "name") and v:
                self.anchors.add(v)


def render(path):
    """The DOM of a page after Chromium ran its scripts, and its visible text."""
    with tempfile.TemporaryDirectory(prefix="asyncloop-chromium-") as profile:
        r = subprocess.run([shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS,
                            f"--user-data-dir={profile}", "--dump-dom", "file://" + path],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, f"chromium failed on {path}: {r.stderr[-2000:]}"
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", r.stdout, flags=re.S)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))
    return r.stdout, re.sub(r" ([:;,.)])", r"\1", text)


def page_titled(title):
    """The file in build/docs whose <title> is `asyncloop: TITLE`."""
    want = f"<title>asyncloop: {title}</title>"
    for name in sorted(os.listdir(DOCS)):
        if name.endswith(".html"):
            with open(os.path.join(DOCS, name), encoding="utf-8") as f:
                if want in f.read(4096):
                    return os.path.join(DOCS, name)
    raise AssertionError(f"no page titled {title!r} in {DOCS}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def header_items():
    """Functions, macros and typedefs declared by the header."""
    code = re.sub(r"/\*.*?\*/", "", read(HEADER), flags=re.S)
    return {
        "function": set(re.findall(r"^[\w ]*?\**\s*\b(aloop_\w+)\(", code, flags=re.M)),
        "macro": set(re.findall(r"^#define\s+((?:ALOOP|aloop)_\w+)", code, flags=re.M)),
        "typedef": set(re.findall(r"\(\*\s*(aloop_\w+)\)", code))
        | set(re.findall(r"^typedef struct \w+ (aloop_\w+);", code, flags=re.M)),
    }


class Docs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(DOCS, "index.html")):
            raise unittest.SkipTest("build/docs/index.html is missing: run make docs first")

    def test_index_page_renders(self):
        dom, text = render(os.path.join(DOCS, "index.html"))
        self.assertIn("asyncloop gives C and C++ programs a fast server's machinery", text)
        for page in ("Getting started in C", "Getting started in C++", "The HTTP server",
                     "The HTTP client", "PostgreSQL", "Architecture", "The example programs"):
            self.assertIn(page, text)
        # The guides are linked, and so is the reference (the modules page).
        for target in ("md_docs_getting_started_c.html", "md_docs_architecture.html",
                       "md_docs_faults.html", "modules.html"):
            self.assertIn(f'href="{target}"', dom)
        # The navigation tree is built by the pages' scripts: it is there only if they ran.
        tree = dom[dom.find('id="nav-tree-contents"'):]
        self.assertIn("Getting started in C", tree[:20000])
        self.assertIn(">Modules<", dom)

    def test_function_page_renders(self):
        path = page_titled("aloop_http_respond")
        dom, text = render(path)
        # The signature, parameter by parameter, cross-linked to its types.
        self.assertRegex(text, r"int aloop_http_respond \( struct aloop_http_request_t \* req, "
                               r"int status, const struct aloop_http_header_t \* headers, "
                               r"size_t nheaders, const void \* body, size_t len\)")
        self.assertRegex(dom, r'<a class="el" href="[^"]+"[^>]*>aloop_http_request_t</a>')
        # Ownership and threads.
        self.assertIn("On success the request is consumed", text)
        self.assertIn("the client has gone: the request is consumed", text)
        self.assertIn("<b>Thread-safe</b>", dom)
        self.assertRegex(text, r"Thread-safe: from [^.]*thread[^.]*the response is copied")
        # The error codes link to their own pages.
        self.assertRegex(dom, r'<a class="el" href="group__errors_[^"]+"[^>]*>ALOOP_E_CANCELLED</a>')
        # The page belongs to its group, which lists it.
        group = page_titled("HTTP server")
        with open(group, encoding="utf-8") as f:
            self.assertIn(os.path.basename(path), f.read())

    def test_every_item_of_the_header_has_a_page(self):
        items = header_items()
        self.assertGreater(len(items["function"]), 80)
        titles = set()
        for name in os.listdir(DOCS):
            if name.endswith(".html"):
                with open(os.path.join(DOCS, name), encoding="utf-8") as f:
                    m = re.search(r"<title>asyncloop: (\w+)</title>", f.read(4096))
                    if m:
                        titles.add(m.group(1))
        for kind, names in items.items():
            with self.subTest(kind=kind):
                self.assertEqual(sorted(names - titles), [], f"{kind}s without a page")

    def test_no_internal_link_is_broken(self):
        pages = {}
        for dirpath, _, files in os.walk(DOCS):
            for name in files:
                if name.endswith(".html"):
                    path = os.path.join(dirpath, name)
                    p = Links()
                    with open(path, encoding="utf-8") as f:
                        p.feed(f.read())
                    pages[path] = p
        # The navigation tree's entries live in scripts.
        scripted = []
        for name in os.listdir(DOCS):
            if name.startswith("navtree") and name.endswith(".js") or name.endswith("_dup.js") \
                    or re.match(r"(group__|md_|dir_|asyncloop_8h|modules|files).*\.js$", name):
                with open(os.path.join(DOCS, name), encoding="utf-8") as f:
                    scripted += [(os.path.join(DOCS, name), l)
                                 for l in re.findall(r'"([\w.-]+\.html(?:#[\w-]+)?)"', f.read())]
        broken, checked = [], 0
        links = [(path, l) for path, p in pages.items() for l in p.links] + scripted
        for path, link in links:
            u = urlsplit(link)
            if u.scheme or link.startswith("//"):
                continue  # external (doxygen.org in the footer)
            target = os.path.normpath(os.path.join(os.path.dirname(path), unquote(u.path))) \
                if u.path else path
            checked += 1
            if not target.startswith(DOCS) or not os.path.exists(target):
                broken.append(f"{os.path.relpath(path, DOCS)}: {link}")
            elif u.fragment and target.endswith(".html"):
                if target not in pages:
                    broken.append(f"{os.path.relpath(path, DOCS)}: {link} (not a page)")
                elif u.fragment not in pages[target].anchors:
                    broken.append(f"{os.path.relpath(path, DOCS)}: {link} (no such anchor)")
        self.assertGreater(checked, 5000)
        self.assertEqual(broken, [])

    def test_the_docs_build_checks_for_undocumented_items(self):
        # make docs fails on any Doxygen warning; the log of the last build is empty.
        log = os.path.join(ROOT, "build", "docs-warnings.log")
        self.assertTrue(os.path.exists(log))
        self.assertEqual(read(log), "")
        doxyfile = read(os.path.join(ROOT, "docs", "Doxyfile"))
        self.assertRegex(doxyfile, r"(?m)^WARN_AS_ERROR\s*=\s*FAIL_ON_WARNINGS$")
        self.assertRegex(doxyfile, r"(?m)^WARN_IF_UNDOCUMENTED\s*=\s*YES$")


class NoOutsideReferences(unittest.TestCase):
    def test_no_file_points_at_documents_outside_the_repository(self):
        # The team's design and contract notes are not in the repository: what users read is.
        pattern = "(DESIGN|CONTRACT)" + r"\.md"
        r = subprocess.run(["git", "grep", "-n", "-E", pattern, "--", ".", ":!fuzz/corpus"],
                           cwd=ROOT, capture_output=True, text=True)
        self.assertEqual(r.returncode, 1, f"references to files outside the repository:\n{r.stdout}")


if __name__ == "__main__":
    unittest.main()
