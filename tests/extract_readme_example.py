#!/usr/bin/env python3
"""Extracts the C++ example that follows the '<!-- example: compiled and run by the tests -->'
marker in README.md, so the test suite builds and runs exactly what the README shows.
  extract_readme_example.py README.md OUT.cpp        write it to OUT.cpp
  extract_readme_example.py --check README.md FILE   fail unless it is FILE, line for line"""
import sys


def example(src):
    lines = open(src, encoding="utf-8").read().splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if "<!-- example: compiled and run by the tests -->" in l)
        begin = next(i for i in range(start, len(lines)) if lines[i].strip() == "```cpp")
        end = next(i for i in range(begin + 1, len(lines)) if lines[i].strip() == "```")
    except StopIteration:
        sys.exit(f"{src}: no ```cpp block after the example marker")
    return lines[begin + 1:end]


if sys.argv[1] == "--check":
    src, other = sys.argv[2], sys.argv[3]
    want = open(other, encoding="utf-8").read().splitlines()
    got = example(src)
    if got != want:
        diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        sys.exit(f"{src}: the example differs from {other} at line {diff + 1} of the example; copy the file "
                 f"into the README")
    print(f"{src}: the example is {other} ({len(got)} lines)")
else:
    src, dst = sys.argv[1], sys.argv[2]
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f"// Generated from {src} by tests/extract_readme_example.py; edit the README instead.\n")
        f.write("\n".join(example(src)) + "\n")
