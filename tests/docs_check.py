#!/usr/bin/env python3
"""The docs agree with the command on options.

Usage: docs_check.py PATH/TO/tally SOURCE_DIR

For every command (run, stress, bench, demo, list, shm):
  - every long option that `tally CMD --help` prints is in tally(1), in the
    command's SYNOPSIS lines or its entry under COMMANDS;
  - every option tally(1) gives there is one that `tally CMD --help` prints.
And every `tally CMD ...` command line shown in the READMEs (code blocks and
inline code) or in tally(1)'s EXAMPLES uses only options that
`tally CMD --help` prints.  Where man(1) is installed, both man pages also
render without a warning.  Prints every disagreement; exit 1 if any.
"""

import os
import re
import shutil
import subprocess
import sys

COMMANDS = ("run", "stress", "bench", "demo", "list", "shm")
# Every command takes these (tally(1), OPTIONS); --help prints neither.
GLOBAL = {"--help", "--version"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
DOCS = ("README.md", "bench/README.md", "tests/README.md",
        "src/python/README.md")

problems = []


def help_options(tally, cmd):
    out = subprocess.run([tally, cmd, "--help"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    # An option written after the word "cmake" is cmake's (stress names
    # `cmake --preset tsan`), not the command's.
    flat = " ".join(out.split())
    theirs = set(re.findall(r"cmake (--[a-z][a-z0-9-]*)", flat))
    return set(OPTION.findall(out)) - theirs


def man_sections(path):
    """tally(1) as {section name: [lines]}, with \\- read as -."""
    sections, name = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").replace("\\-", "-")
            if line.startswith(".SH "):
                name = line[4:].strip().strip('"')
                sections[name] = []
            elif name is not None:
                sections[name].append(line)
    return sections


def synopsis_options(lines, cmd):
    """Options of `tally CMD` in the SYNOPSIS: from its `.B tally CMD`
    line to the next `.br`."""
    found, inside = set(), False
    for line in lines:
        if re.match(r"\.B tally %s\b" % cmd, line):
            inside = True
        elif line.startswith(".br"):
            inside = False
        if inside:
            found |= set(OPTION.findall(line))
    return found


def command_entry_options(lines, cmd):
    """Options named in COMMANDS' `.TP` entries for CMD (`.B run`, `.B shm
    create ...`): each from its tag line to the next `.TP` or `.PP`, and for
    shm the paragraphs after its entries too."""
    found, inside = set(), False
    for i, line in enumerate(lines):
        if line.startswith(".TP"):
            tag = lines[i + 1] if i + 1 < len(lines) else ""
            inside = re.match(r"\.B %s\b" % cmd, tag) is not None
        elif line.startswith(".PP") and cmd != "shm":
            inside = False
        if inside:
            found |= set(OPTION.findall(line))
    return found


def command_lines(text):
    """(command, options, line) for each `tally CMD ...` in code blocks (a
    line ending in a backslash goes on) and in inline code (which may wrap
    within its paragraph)."""
    spans, block, joined, para = [], False, "", []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("```") or not line.strip() or block:
            spans += re.findall(r"`([^`]+)`", " ".join(para))
            para = []
        if line.lstrip().startswith("```"):
            block = not block
        elif block:
            joined += line.rstrip("\\").rstrip() + " "
            if not line.endswith("\\"):
                spans.append(joined)
                joined = ""
        else:
            para.append(line)
    shown = []
    for span in spans:
        span = " ".join(span.split())
        for m in re.finditer(r"(?:^|[\s/$])tally (%s)\b([^&|;#`]*)"
                             % "|".join(COMMANDS), span):
            shown.append((m.group(1), set(OPTION.findall(m.group(2))),
                          m.group(0).strip()))
    return shown


def man_example_lines(lines):
    text, inside = [], False
    for line in lines:
        if line.startswith(".EX"):
            inside = True
        elif line.startswith(".EE"):
            inside = False
        elif inside:
            text.append(line.replace("\\e", "\\"))
    return "```\n" + "\n".join(text) + "\n```\n"


def check_man_renders(src):
    man = shutil.which("man")
    if not man:
        print("note: man(1) not installed: rendering not checked")
        return
    for page in ("tools/tally.1", "src/tally.3"):
        r = subprocess.run([man, "--warnings", "-l", os.path.join(src, page)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANWIDTH="80"))
        if r.returncode != 0 or r.stderr.strip():
            problems.append("%s: man --warnings says: %s"
                            % (page, r.stderr.strip() or r.returncode))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tally, src = sys.argv[1], sys.argv[2]
    man = man_sections(os.path.join(src, "tools/tally.1"))
    helps = {c: help_options(tally, c) for c in COMMANDS}

    for cmd in COMMANDS:
        in_man = (synopsis_options(man["SYNOPSIS"], cmd)
                  | command_entry_options(man["COMMANDS"], cmd))
        for opt in sorted(helps[cmd] - in_man):
            problems.append("tally %s --help prints %s; tally.1 does not "
                            "give it (SYNOPSIS or COMMANDS)" % (cmd, opt))
        for opt in sorted(in_man - helps[cmd] - GLOBAL):
            problems.append("tally.1 gives %s for tally %s; tally %s --help "
                            "does not print it" % (opt, cmd, cmd))

    sources = [(d, open(os.path.join(src, d), encoding="utf-8").read())
               for d in DOCS if os.path.exists(os.path.join(src, d))]
    sources.append(("tools/tally.1 EXAMPLES",
                    man_example_lines(man["EXAMPLES"])))
    shown = 0
    for where, text in sources:
        for cmd, opts, line in command_lines(text):
            shown += 1
            for opt in sorted(opts - helps[cmd] - GLOBAL):
                problems.append("%s shows `%s`: tally %s has no %s"
                                % (where, line, cmd, opt))
    if shown == 0:
        problems.append("no `tally ...` command line found in the docs: "
                        "the check itself is broken")

    check_man_renders(src)
    for p in problems:
        print("FAIL:", p)
    print("%d command lines checked, %d disagreements" % (shown,
                                                          len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
