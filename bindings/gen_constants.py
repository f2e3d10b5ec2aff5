#!/usr/bin/env python3
"""Generate the binding constants from the public C headers.

Reads every include/aether_cache/*.h (not sys/), collects the members of each
`typedef enum acache_x {...} acache_x;` and every `#define ACACHE_X <integer or
string literal>`, and writes:

  bindings/python/aether_cache/_constants.py (ACACHE_* names as in C, and one
      IntEnum per enum: TouchResult.CREATED, Status.ENOTFOUND)
  bindings/go/constants.go (Go names: TouchCreated, StatusNotFound, with a
      String() method per enum type)

Run it after changing a public header and commit the output.
`--check` writes nothing and exits 1 when a generated file is out of date (a
test runs it), so the bindings can never drift from the headers.
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INCLUDE = os.path.join(ROOT, "include", "aether_cache")
PY_OUT = os.path.join(HERE, "python", "aether_cache", "_constants.py")
GO_OUT = os.path.join(HERE, "go", "constants.go")

# Macros that are not constants a binding can use.
SKIP_DEFINES = {"ACACHE_EXTERN", "ACACHE_BEGIN_DECL", "ACACHE_END_DECL"}

ENUM_RE = re.compile(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", re.S)
DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(ACACHE_\w+)[ \t]+(.+?)[ \t]*$", re.M)
INT_RE = re.compile(r"^\(?\s*(-?(?:0x[0-9a-fA-F]+|\d+))[uUlL]*\s*\)?$")
STR_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"$')


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def parse(headers):
    """Return (enums, defines): enums is [(c_type, [(name, value)])],
    defines is [(name, value)] with int or str values, in header order."""
    enums, defines, seen = [], [], set()
    for path in headers:
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        for m in ENUM_RE.finditer(text):
            members, nxt = [], 0
            for item in m.group(2).split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, expr = item.partition("=")
                name = name.strip()
                if expr.strip():
                    nxt = int(expr.strip().rstrip("uUlL"), 0)
                members.append((name, nxt))
                seen.add(name)
                nxt += 1
            enums.append((m.group(3), members))
        for m in DEFINE_RE.finditer(text):
            name, body = m.group(1), m.group(2).strip()
            if name in SKIP_DEFINES or name in seen or name.endswith("_H"):
                continue
            im, sm = INT_RE.match(body), STR_RE.match(body)
            if im:
                defines.append((name, int(im.group(1), 0)))
            elif sm:
                defines.append((name, sm.group(1)))
            else:
                continue  # INIT initialisers, expressions: not constants
            seen.add(name)
    return enums, defines


# Go spells initialisms in one case (Effective Go, "MixedCaps"; the
# golint/staticcheck list): TargetAPIKey, ByID, StatusOK, not TargetApiKey.
GO_INITIALISMS = {"API", "HTTP", "ID", "JSON", "L1", "OK", "TLS", "TTL", "URI", "URL"}

# acache_status members drop their errno-style E prefix in Go and Python
# reads them from the C names: ACACHE_ENOTFOUND -> StatusNotFound.
GO_STATUS_NAMES = {
    "OK": "OK", "ERROR": "Error", "ENOTFOUND": "NotFound", "EINVALID": "Invalid",
    "ESTORE": "Store", "ECATALOG": "Catalog", "ECRYPTO": "Crypto", "ENOMEM": "NoMemory",
    "EUNSUPPORTED": "Unsupported",
}


def camel(s):
    """ACACHE-style snake or upper case -> Go MixedCaps with Go initialisms."""
    words = [w for w in s.split("_") if w]
    return "".join(w.upper() if w.upper() in GO_INITIALISMS else w[:1].upper() + w[1:].lower()
                   for w in words)


def go_type(c_type):
    return camel(c_type[len("acache_"):] if c_type.startswith("acache_") else c_type)


def go_member(c_type, name):
    suffix = name[len("ACACHE_"):]
    if c_type == "acache_status":
        # A status added later without an entry here: strip a leading E
        # (ACACHE_EFOO -> StatusFoo) so the name still reads as Go.
        if suffix in GO_STATUS_NAMES:
            return "Status" + GO_STATUS_NAMES[suffix]
        return "Status" + camel(suffix[1:] if suffix.startswith("E") else suffix)
    return camel(suffix)


def header_list():
    return sorted(
        os.path.join(INCLUDE, n) for n in os.listdir(INCLUDE) if n.endswith(".h")
    )


def py_member_prefix(members):
    """The longest common NAME_ prefix of an enum's members (ACACHE_TOUCH_):
    Python names the members without it (TouchResult.CREATED)."""
    names = [n for n, _ in members]
    words = [n.split("_") for n in names]
    common = []
    for group in zip(*words):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    # Never strip a whole name (a one-member enum keeps its last word).
    if any(len(w) == len(common) for w in words):
        common = common[:-1]
    return "_".join(common) + "_" if common else ""


def render_python(enums, defines):
    out = [
        "# Generated by bindings/gen_constants.py from include/aether_cache/*.h.",
        "# Do not edit: run `python3 bindings/gen_constants.py` after changing a header.",
        '"""Constants of the C headers: ACACHE_* integers and one IntEnum per C enum."""',
        "import enum",
        "",
    ]
    for c_type, members in enums:
        out.append("# enum %s" % c_type)
        for name, value in members:
            out.append("%s = %d" % (name, value))
        out.append("")
    out.append("# #define")
    for name, value in defines:
        out.append("%s = %r" % (name, value))
    out.append("")
    out.append("ENUMS = {")
    for c_type, members in enums:
        out.append("    %r: {%s}," % (c_type, ", ".join("%r: %d" % m for m in members)))
    out.append("}")
    # Enums as classes (not built at import time) so type checkers see them.
    for c_type, members in enums:
        prefix = py_member_prefix(members)
        out.append("")
        out.append("")
        out.append("class %s(enum.IntEnum):" % go_type(c_type))
        out.append('    """enum %s (values are ABI: only ever appended)."""' % c_type)
        out.append("")
        for name, value in members:
            out.append("    %s = %d" % (name[len(prefix):], value))
    return "\n".join(out) + "\n"


def render_go(enums, defines):
    # One declaration per line with its doc comment above, tabs in function
    # bodies: gofmt leaves that layout alone, so the output is gofmt-clean
    # without running gofmt (a test checks with gofmt -l when go is there).
    out = [
        "// Code generated by bindings/gen_constants.py from include/aether_cache/*.h. DO NOT EDIT.",
        "",
        "package aethercache",
        "",
        'import "strconv"',
        "",
    ]
    for c_type, members in enums:
        t = go_type(c_type)
        out.append("// %s mirrors enum %s." % (t, c_type))
        out.append("type %s int" % t)
        out.append("")
        for name, value in members:
            out.append("// %s is %s." % (go_member(c_type, name), name))
            out.append("const %s %s = %d" % (go_member(c_type, name), t, value))
            out.append("")
        # String() in the form the stringer tool writes: the constant's name,
        # T(n) for a value this binding does not know (enums only grow).
        out.append("// String returns the constant's Go name, or %s(n) for a value newer than"
                   % t)
        out.append("// this binding.")
        out.append("func (v %s) String() string {" % t)
        out.append("\tswitch v {")
        done = set()
        for name, value in members:
            if value in done:
                continue  # an alias: the first name wins
            done.add(value)
            out.append("\tcase %s:" % go_member(c_type, name))
            out.append('\t\treturn "%s"' % go_member(c_type, name))
        out.append("\t}")
        out.append('\treturn "%s(" + strconv.Itoa(int(v)) + ")"' % t)
        out.append("}")
        out.append("")
    for name, value in defines:
        g = camel(name[len("ACACHE_"):])
        v = '"%s"' % value if isinstance(value, str) else str(value)
        out.append("// %s is %s." % (g, name))
        out.append("const %s = %s" % (g, v))
        out.append("")
    return "\n".join(out[:-1]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if a generated file is out of date; write nothing")
    args = ap.parse_args()
    enums, defines = parse(header_list())
    wanted = {PY_OUT: render_python(enums, defines), GO_OUT: render_go(enums, defines)}
    stale = []
    for path, text in wanted.items():
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote %s" % os.path.relpath(path, ROOT))
    if stale:
        for p in stale:
            print("out of date: %s (run bindings/gen_constants.py)" % os.path.relpath(p, ROOT),
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
